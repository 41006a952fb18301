"""Time `captionkit data check` on the real Flickr8k files (issue 2 asks for under 10 s) and print/write a table."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "flickr8k"
RESULTS = REPO / "benchmarks" / "results"
REPEATS = 3


def timed(command: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    cli = [sys.executable, "-m", "captionkit.cli"]
    cases = {
        "check token layout (decode 69 images)": cli + ["data", "check", str(FIXTURE), "--json"],
        "check token layout --no-decode": cli + ["data", "check", str(FIXTURE), "--json", "--no-decode"],
        "check captions.txt (decode 69 images)": cli + ["data", "check", str(FIXTURE / "captions.txt"), "--json"],
    }
    rows = []
    for name, command in cases.items():
        times, report = [], {}
        for _ in range(REPEATS):
            seconds, report = timed(command)
            times.append(seconds)
        rows.append(
            {
                "case": name,
                "best_s": round(min(times), 2),
                "median_s": round(sorted(times)[REPEATS // 2], 2),
                "images_total": report["images_total"],
                "images_found": report["images_found"],
                "images_missing": report["images_missing"],
                "splits": report["splits"],
                "bogus_keys": report["bogus_keys"],
            }
        )
    header = "| case | best s | median s | images | found | missing | splits | bogus |"
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        splits = "/".join(str(v) for v in r["splits"].values())
        lines.append(
            f"| {r['case']} | {r['best_s']} | {r['median_s']} | {r['images_total']} | {r['images_found']} | "
            f"{r['images_missing']} | {splits} | {r['bogus_keys']} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data_check.json").write_text(json.dumps({"repeats": REPEATS, "rows": rows}, indent=2) + "\n")
    (RESULTS / "data_check.md").write_text(
        f"# captionkit data check on ../shared/fixtures/flickr8k (whole CLI process, {REPEATS} runs)\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
