"""A resumed run's JSON-lines log keeps only what happened before its checkpoint, even after a kill mid-line."""

import json

from captionkit.training.logging import read_jsonl, truncate_jsonl


def test_truncate_keeps_accepted_events_and_drops_a_line_cut_short(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo', encoding="utf-8")
    truncate_jsonl(log, lambda e: e["step"] <= 2)
    assert read_jsonl(log) == [{"step": 1}, {"step": 2}]
    assert log.read_text(encoding="utf-8").endswith("\n")  # the next event starts on its own line
    assert not list(tmp_path.glob(".*tmp"))


def test_truncating_a_log_that_does_not_exist_creates_nothing(tmp_path):
    truncate_jsonl(tmp_path / "log.jsonl", lambda e: True)
    assert not (tmp_path / "log.jsonl").exists()
