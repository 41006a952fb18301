"""The HTML report: rendered in headless Chromium, no console errors, table numbers == metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from captionkit.cli import main
from captionkit.report.charts import line_chart, nice_ticks
from captionkit.report.runs import read_curves


@pytest.fixture()
def report(runs, tmp_path) -> tuple[Path, list[Path]]:
    dirs, _ = runs
    out = tmp_path / "out" / "report.html"
    assert main(["report", *map(str, dirs), "--out", str(out), "--examples", "4", "--extremes", "2"]) == 0
    return out, dirs


def test_report_renders_in_chromium_with_the_metrics_json_numbers(report, browser, tmp_path):
    html, dirs = report
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests)  # self-contained: nothing fetched
    for run in dirs:
        expected = json.loads((run / "eval" / "test" / "metrics.json").read_text())
        cells = page.locator(f'#metrics tr[data-run="{run.name}"] td[data-metric]')
        shown = {
            cells.nth(i).get_attribute("data-metric"): (
                cells.nth(i).get_attribute("data-value"),
                cells.nth(i).inner_text(),
            )
            for i in range(cells.count())
        }
        assert set(shown) == set(expected)
        for metric, value in expected.items():
            raw, text = shown[metric]
            assert float(raw) == value and text == f"{value:.4f}"
    assert page.locator("svg.chart").count() == 4  # train loss, dev loss, dev Bleu_4, dev CIDEr
    loaded = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    assert loaded and all(loaded)
    assert page.locator("#examples .card").count() == 4
    assert "run_b says <b>dog</b> 0" in page.locator("#examples").inner_text()  # captions are escaped text
    first = page.locator("#metrics tbody tr").first
    page.locator("#metrics th", has_text="CIDEr").click()  # sortable: descending CIDEr puts run_b first
    assert first.get_attribute("data-run") == "run_b"
    page.close()


def test_report_sections_and_examples(report, runs):
    html, _ = report
    text = html.read_text()
    for part in (
        "Metrics",
        "Training curves",
        "Decoding settings",
        "Examples",
        "Best and worst: run_a",
        "Best and worst: run_b",
        "reference 0 of image 0",
        "ptb-java",
        "CIDEr 1.550",
    ):
        assert part in text
    assert "<b>dog</b>" not in text and "&lt;b&gt;dog&lt;/b&gt;" in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no CDN or remote asset


def test_report_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    assert main(["report", str(tmp_path / "empty_run"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "no eval/<split>/metrics.json" in err and err.count("\n") == 1


def test_curves_from_log_jsonl(runs):
    dirs, _ = runs
    curves = read_curves(dirs[0] / "log.jsonl")
    assert curves["train_loss"] == [(1.0, 3.95), (2.0, 1.95), (3.0, pytest.approx(4 / 3 - 0.05))]
    assert curves["dev_CIDEr"] == [(1.0, 0.2), (2.0, 0.4), (3.0, pytest.approx(0.6))]
    assert set(curves) == {"train_loss", "dev_loss", "dev_CIDEr", "dev_Bleu_4"}


def test_chart_helpers():
    assert nice_ticks(0.13, 0.87) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(1, 1) == [1.0, 1.5, 2.0] or nice_ticks(1, 1)[0] <= 1
    svg = line_chart({"a": [(1, 0.5), (2, 0.7)], "b": [(1, 0.4)]}, "dev CIDEr")
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "dev CIDEr" in svg
    assert line_chart({}, "empty") == ""


def test_examples_show_the_true_scene_and_mark_wrong_objects(tmp_path):
    """On synthetic data every card says what is really in the image and what each caption gets wrong."""
    from captionkit.report.render import build_report

    (tmp_path / "data").mkdir()
    scene = {
        "background": {"colour": "grey", "texture": "plain"},
        "relations": [],
        "objects": [
            {"shape": "circle", "colour": "red"},
            {"shape": "circle", "colour": "red"},
            {"shape": "star", "colour": "blue"},
        ],
    }
    (tmp_path / "data" / "scenes.json").write_text(json.dumps({"synth_000000.jpg": scene}))
    captions = {"good": "two red circles and a blue star .", "bad": "two red squares and a blue star ."}
    for name, caption in captions.items():
        run = tmp_path / name
        (run / "eval" / "test").mkdir(parents=True)
        (run / "resolved_config.json").write_text(
            json.dumps({"dataset": str(tmp_path / "data"), "encoder": f"clip:{tmp_path / 'clip'}"})
        )
        (run / "eval" / "test" / "metrics.json").write_text(json.dumps({"CIDEr": 1.0}))
        (run / "eval" / "test" / "predictions.json").write_text(
            json.dumps([{"image_id": "synth_000000.jpg", "caption": caption}])
        )
    page = build_report([tmp_path / "good", tmp_path / "bad"], tmp_path / "r.html").read_text()
    assert "<b>true scene</b>: 1 blue star, 2 red circle" in page
    assert page.count("objects right") == 1  # the good caption's tick
    assert 'class="wrong"' in page and "&#10007; 2 red square" in page and "missed: 2 red circle" in page
    assert "clip:../clip" in page and str(tmp_path) + "/clip" not in page  # no machine's absolute path shown


def test_legends_keep_long_run_names_whole():
    svg = line_chart({"demo-show-tell-merge": [(1, 0.5), (2, 0.7)]}, "dev CIDEr")
    assert ">demo-show-tell-merge</text>" in svg
