"""The HTML report: rendered in headless Chromium, no console errors, table numbers == metrics.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from captionkit import rundir
from captionkit.cli import main
from captionkit.report.charts import line_chart, nice_ticks
from captionkit.report.render import build_report
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
        (results,) = rundir.find_results(run)
        expected = json.loads((results / "metrics.json").read_text())
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
    assert "no evaluation results" in err and err.count("\n") == 1
    assert f"--out {tmp_path / 'empty_run'}` first, then `captionkit report {tmp_path / 'empty_run'}`" in err


def test_refusal_hints_name_commands_that_exist(runs, tmp_path, capsys):
    """Issue 16: `report RUN/model` suggested `RUN/model/model`; an unevaluated run named a wrong command."""
    dirs, _ = runs
    (dirs[0] / "model").mkdir()
    assert main(["report", str(dirs[0] / "model"), "--out", str(tmp_path / "r.html")]) == 0  # RUN/model = RUN
    assert "run_a says" in (tmp_path / "r.html").read_text()
    fresh = tmp_path / "fresh"
    (fresh / "model").mkdir(parents=True)
    (fresh / "model" / "config.json").write_text("{}")
    for target, evaluate in [(fresh, fresh / "model"), (fresh / "model", fresh / "model")]:
        assert main(["report", str(target), "--out", str(tmp_path / "r.html")]) == 2
        err = capsys.readouterr().err
        assert f"`captionkit evaluate {evaluate} --dataset DATA --split test`" in err and "model/model" not in err


def _jpeg(path: Path, colour: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)


def test_rows_on_other_data_show_their_dataset_their_images_and_a_warning(runs, tmp_path, caplog):
    """Issue 16: a model evaluated on a fresh dataset was shown with the demo dataset's image of the same name,
    and ranked against results on other data with no dataset column."""
    from captionkit.report.render import thumbnail_data_uri

    dirs, data = runs
    name = sorted(p.name for p in (data / "Images").glob("*.jpg"))[0]
    other = tmp_path / "other_data"
    _jpeg(other / "Images" / name, "purple")  # the same file name, another picture
    (other / "Text").mkdir()
    (other / "Text" / "Flickr8k.token.txt").write_text(f"{name}#0\tthree purple circles .\n")
    (other / "Text" / "Flickr_8k.testImages.txt").write_text(name + "\n")
    run = tmp_path / "run_c"
    identity = rundir.dataset_identity(other)
    ev = rundir.results_dir(run, "test", identity["id"], "greedy-000000")
    ev.mkdir(parents=True)
    (ev / "metrics.json").write_text(json.dumps({"CIDEr": 9.0}))
    (ev / "predictions.json").write_text(json.dumps([{"image_id": name, "caption": "stars and crosses"}]))
    (ev / "scoring.json").write_text(json.dumps({"split": "test", "dataset": rundir.dataset_entry(identity, run)}))
    out = tmp_path / "r.html"
    assert main(["report", *map(str, dirs), str(run), "--out", str(out), "--examples", "5"]) == 0
    page = out.read_text()
    assert 'id="data-warning"' in page and "different data" in page
    assert "report: warning: the rows were scored on different data" in caplog.text  # and on stderr (logging)
    rows = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr ")[1:]
    cells = {r.split('"', 2)[1]: r for r in rows}
    assert 'class="dataset"' in cells["run_c"] and ">other_data<" in cells["run_c"]
    assert '<td class="images">1</td>' in cells["run_c"] and '<td class="images">5</td>' in cells["run_a"]
    assert 'class="best"' not in cells["run_c"]  # alone on its data: never "best" against other data
    theirs, ours = thumbnail_data_uri(other / "Images" / name), thumbnail_data_uri(data / "Images" / name)
    sections = page.split("<section ")
    (other_section,) = [s for s in sections if s.startswith('id="examples') and "Examples: other_data" in s]
    assert theirs in other_section and ours not in other_section  # the image of the captions' own dataset
    (tiny_section,) = [s for s in sections if s.startswith('id="examples') and "Examples: tiny" in s]
    assert "stars and crosses" not in tiny_section


def test_evaluations_of_one_run_on_two_datasets_are_two_labelled_rows(runs, tmp_path):
    dirs, data = runs
    (first,) = rundir.find_results(dirs[0])
    second = first.parent / "beam3-000000"
    shutil.copytree(first, second)
    page = build_report([dirs[0]], tmp_path / "r.html").read_text()
    assert page.count('<tr data-run="run_a [tiny test, ') == 2 and "different data" not in page


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
        (run / "eval" / "test").mkdir(parents=True)  # the layout before results were keyed by dataset: still read
        (run / "resolved_config.json").write_text(json.dumps({"encoder": f"clip:{tmp_path / 'clip'}"}))
        (run / "eval" / "test" / "scoring.json").write_text(json.dumps({"dataset": str(tmp_path / "data")}))
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


def test_the_page_shows_paths_relative_to_its_folder(runs, tmp_path):
    """A report inside the runs folder names the runs and datasets from there, not with this machine's absolute
    paths (issue 10: runs/demo must read the same when moved or shared)."""
    dirs, _ = runs
    out = build_report(dirs, tmp_path / "report.html", examples=2, extremes=0)
    text = out.read_text()
    assert str(tmp_path) not in text
    assert 'title="tiny"' in text and "tiny (tiny), test split" in text
