"""Do the demo's models generalise? Each finished demo model is evaluated on the test split of a freshly generated
demo dataset (another seed: other scenes, other pictures, other wordings) beside its own test-split result.

    python benchmarks/demo_generalisation.py [RUN_DIR] [SEED]     # default runs/demo, seed 1; writes results/

Results go to RUN_DIR/generalisation/ (never over the run's own eval/ files).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tables import markdown_table

from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.demo import DemoConfig, run_names
from captionkit.evaluation.evaluate import evaluate_model, results_dir_for

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "runs" / "demo")
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    cfg = DemoConfig()
    fresh = write_synthetic_dataset(
        run / "generalisation" / f"data-seed{seed}", images=cfg.images, seed=seed, size=cfg.size
    )
    rows = []
    for name in run_names(cfg):
        own_dir = results_dir_for(run / name / "model", run / "data", cfg.split, cfg.decoding)
        own = json.loads((own_dir / "metrics.json").read_text(encoding="utf-8"))
        other = evaluate_model(
            run / name / "model",
            fresh,
            cfg.split,
            cfg.decoding,
            metrics=["Bleu_4", "CIDEr"],
            out_dir=run / "generalisation" / name,
            progress=False,
        ).corpus
        rows.append(
            {
                "model": name,
                "object_f1 (demo test)": round(own["object_f1"], 3),
                f"object_f1 (seed {seed} test)": round(other["object_f1"], 3),
                "difference": round(other["object_f1"] - own["object_f1"], 3),
                "CIDEr (demo test)": round(own["CIDEr"], 3),
                f"CIDEr (seed {seed} test)": round(other["CIDEr"], 3),
            }
        )
        print(rows[-1], flush=True)
    header = list(rows[0])
    table = markdown_table(header, rows)
    text = (
        f"`python benchmarks/demo_generalisation.py` on {run}: each model on the test split of a new demo dataset "
        f"(seed {seed}, {cfg.images} images; its {cfg.split} split) beside its own demo {cfg.split} split; greedy.\n\n"
        + table
        + "\n"
    )
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "demo_generalisation.md").write_text(text, encoding="utf-8")
    (RESULTS / "demo_generalisation.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
