"""Build the one-file HTML report comparing runs: metrics, training curves, decoding settings, example captions."""

from __future__ import annotations

import base64
import datetime
import io
import logging
import os
from collections import Counter
from collections.abc import Sequence
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from captionkit.data.scene_grammar import kind_counts, parse_objects
from captionkit.report.charts import PALETTE, line_chart
from captionkit.report.runs import RunData, data_mismatch, load_dataset_view, load_runs, unique_names

log = logging.getLogger(__name__)

METRIC_ORDER = [
    "Bleu_1",
    "Bleu_2",
    "Bleu_3",
    "Bleu_4",
    "METEOR",
    "ROUGE_L",
    "CIDEr",
    "SPICE",
    "CLIPScore",
    "RefCLIPScore",
    "object_f1",
]
THUMB_PX = 224  # longest side of embedded thumbnails


def _asset(name: str) -> str:
    return resources.files("captionkit.report").joinpath(name).read_text(encoding="utf-8")


def thumbnail_data_uri(path: Path, size: int = THUMB_PX) -> str | None:
    """A JPEG thumbnail as a data: URI (the report embeds its images: one file, works offline)."""
    from captionkit.data.images import load_image
    from captionkit.errors import ImageLoadError

    try:
        image = load_image(path)
    except (ImageLoadError, OSError) as exc:
        log.warning("report: image %s skipped (%s)", path, exc)
        return None
    image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _metric_names(runs: Sequence[RunData]) -> list[str]:
    names = {m for run in runs for m in run.metrics}
    return [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))


def metrics_table(runs: Sequence[RunData], base: Path) -> str:
    """Model x metric table with each row's dataset (its path shown relative to `base`) and image count; cells
    carry the exact value in data-value, the best of each column among the rows scored on the same data is
    marked."""
    names = _metric_names(runs)
    group = {run.name: (run.dataset_key, run.split, frozenset(run.predictions)) for run in runs}
    best = {
        (g, m): max((r.metrics[m] for r in runs if m in r.metrics and group[r.name] == g), default=None)
        for g in set(group.values())
        for m in names
    }
    peers = {g: sum(1 for r in runs if group[r.name] == g) for g in set(group.values())}
    head = "".join(f'<th data-sort="num">{escape(m)}</th>' for m in names)
    rows = []
    for run in runs:
        cells = []
        for m in names:
            if m not in run.metrics:
                cells.append('<td class="na">-</td>')
                continue
            v = run.metrics[m]
            g = group[run.name]
            cls = ' class="best"' if peers[g] > 1 and v == best[(g, m)] else ""
            cells.append(f'<td data-metric="{escape(m)}" data-value="{v!r}"{cls}>{v:.4f}</td>')
        rows.append(
            f'<tr data-run="{escape(run.name)}"><th scope="row">{escape(run.name)}</th>'
            f'<td>{escape(run.model_type)}</td><td class="small">{escape(run.encoder)}</td>'
            f'<td class="dataset" title="{escape(shown_path(run.dataset_path, base))}">{escape(run.dataset_name)}</td>'
            f'<td>{escape(run.split)}</td><td class="images">{len(run.predictions)}</td>{"".join(cells)}</tr>'
        )
    return (
        f'<table id="metrics" class="sortable"><thead><tr><th data-sort="text">model</th><th data-sort="text">'
        f'type</th><th data-sort="text">encoder</th><th data-sort="text">dataset</th><th>split</th>'
        f'<th data-sort="num">images</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def shown_path(path: str | Path | None, base: Path) -> str:
    """`path` as the page shows it: relative to the report's folder `base` (a moved or shared runs/ folder then
    shows no machine's absolute paths), or as given when it has no relative form (another drive)."""
    if not path:
        return "not recorded"
    try:
        return os.path.relpath(Path(path).resolve(), base)
    except ValueError:
        return str(path)


def curves_section(runs: Sequence[RunData], colors: dict[str, str]) -> str:
    """One chart per quantity (train loss, dev loss, each dev metric), every run a line."""
    quantities = []
    for run in runs:
        quantities += [q for q in run.curves if q not in quantities]
    order = sorted(quantities, key=lambda q: (q != "train_loss", q != "dev_loss", q))
    charts = []
    for q in order:
        series = {run.name: run.curves[q] for run in runs if run.curves.get(q)}
        title = q.replace("_", " ") if q.endswith("loss") else f"dev {q[4:]}"
        charts.append(line_chart(series, title, colors=colors))
    if not charts:
        return '<p class="note">No training log (log.jsonl) with epoch events in these runs.</p>'
    return f'<div class="charts">{"".join(charts)}</div>'


def decoding_table(runs: Sequence[RunData]) -> str:
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.decoding if k not in keys]
    if not keys:
        return '<p class="note">No decoding.json found.</p>'
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    rows = "".join(
        f'<tr><th scope="row">{escape(r.name)}</th>'
        + "".join(f"<td>{escape(str(r.decoding.get(k, '-')))}</td>" for k in keys)
        + "</tr>"
        for r in runs
    )
    notes = "".join(
        f"<li>{escape(r.name)}: metrics tokenized with {escape(str(r.scoring.get('tokenizer', '?')))}</li>"
        for r in runs
        if r.scoring
    )
    skipped = list(dict.fromkeys(s for r in runs for s in (r.scoring.get("skipped") or {}).values()))
    notes += "".join(f"<li>{escape(s)}</li>" for s in skipped)  # the same note for every run: said once
    return f'<table id="decoding"><thead><tr><th>model</th>{head}</tr></thead><tbody>{rows}</tbody></table>' + (
        f'<ul class="note">{notes}</ul>' if notes else ""
    )


def _item_cider(run: RunData, image_id: str) -> str:
    value = run.per_item.get(image_id, {}).get("CIDEr")
    return "" if value is None else f'<span class="score" title="per-item CIDEr">CIDEr {value:.3f}</span>'


def _figure(image_id: str, uri: str | None) -> str:
    img = (
        f'<img src="{uri}" alt="{escape(image_id)}" loading="lazy">'
        if uri
        else '<div class="noimg">image not available</div>'
    )
    return f'{img}<div class="imgid">{escape(image_id)}</div>'


def _refs(refs: list[str]) -> str:
    if not refs:
        return ""
    return (
        '<details><summary>references</summary><ol class="refs">'
        + "".join(f"<li>{escape(r)}</li>" for r in refs)
        + "</ol></details>"
    )


def _objects_text(objects: Counter) -> str:
    return ", ".join(f"{n} {colour or '?'} {shape}" for (colour, shape), n in sorted(objects.items(), key=str))


def _scene_line(scene: dict[str, Any] | None) -> str:
    if scene is None:
        return ""
    return f'<div class="scene"><b>true scene</b>: {escape(_objects_text(kind_counts(scene)))}</div>'


def _object_check(caption: str | None, scene: dict[str, Any] | None) -> str:
    """What the caption gets wrong against the true scene: objects it names that are not there (or too many of),
    and objects it misses; a tick when it names exactly the scene's objects."""
    if scene is None or caption is None:
        return ""
    named, actual = parse_objects(caption), kind_counts(scene)
    wrong, missed = named - actual, actual - named
    if not wrong and not missed:
        return '<span class="objects ok" title="names exactly the objects in the scene">&#10003; objects right</span>'
    parts = (
        [f'<span class="wrong" title="named but not in the scene">&#10007; {escape(_objects_text(wrong))}</span>']
        if wrong
        else []
    ) + (
        [f'<span class="missed" title="in the scene but not named">missed: {escape(_objects_text(missed))}</span>']
        if missed
        else []
    )
    return f'<span class="objects">{" ".join(parts)}</span>'


def examples_grid(
    runs: Sequence[RunData],
    ids: list[str],
    refs: dict[str, list[str]],
    thumbs: dict[str, str | None],
    colors: dict[str, str],
    scenes: dict[str, dict[str, Any]] | None = None,
) -> str:
    """A card per image: the picture, every run's caption (and, on synthetic data, the true scene with each
    caption's wrong and missed objects marked), the references."""
    scenes = scenes or {}
    cards = []
    for image_id in ids:
        scene = scenes.get(image_id)
        captions = "".join(
            f'<li><span class="swatch" style="background:{colors[r.name]}"></span><b>{escape(r.name)}</b>: '
            f"{escape(r.predictions.get(image_id, '-'))} {_item_cider(r, image_id)}"
            f"{_object_check(r.predictions.get(image_id), scene)}</li>"
            for r in runs
        )
        cards.append(
            f'<div class="card" data-image="{escape(image_id)}">{_figure(image_id, thumbs.get(image_id))}'
            f'{_scene_line(scene)}<ul class="captions">{captions}</ul>{_refs(refs.get(image_id, []))}</div>'
        )
    return f'<div class="grid">{"".join(cards)}</div>'


def best_worst(run: RunData, k: int) -> tuple[list[str], list[str]]:
    """Image ids of the run's k best and k worst per-item CIDEr (ties broken by id, so the report is stable)."""
    scored = sorted(
        ((v["CIDEr"], i) for i, v in run.per_item.items() if "CIDEr" in v and i in run.predictions),
        key=lambda t: (-t[0], t[1]),
    )
    worst = sorted(scored, key=lambda t: (t[0], t[1]))[:k]
    return [i for _, i in scored[:k]], [i for _, i in worst]


def _grid_ids(runs: Sequence[RunData], examples: int) -> list[str]:
    """`examples` image ids every row captioned, spread over the sorted ids instead of the first few."""
    common = sorted(set.intersection(*(set(r.predictions) for r in runs))) if runs else []
    step = max(len(common) // examples, 1) if examples else 1
    return common[::step][:examples]


def build_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    split: str | None = None,
    examples: int = 12,
    extremes: int = 3,
    title: str = "captionkit report",
) -> Path:
    """Write one self-contained HTML page comparing the evaluations in `run_dirs` (run directories: every
    evaluation of `split`; or results folders). Each row's examples use the dataset it was scored on; rows scored on
    different data are flagged in the page and on stderr."""
    base = Path(out).resolve().parent  # paths on the page are shown relative to it
    runs = load_runs(list(run_dirs), split)
    unique_names(runs)
    colors = {run.name: PALETTE[i % len(PALETTE)] for i, run in enumerate(runs)}
    groups: dict[tuple[str, str], list[RunData]] = {}  # (dataset, split) -> rows: one example grid each
    for run in runs:
        groups.setdefault((run.dataset_key, run.split), []).append(run)
    views = {key: load_dataset_view(rows[0]) for (key, _), rows in groups.items()}
    mismatch = data_mismatch(runs)
    if mismatch:
        log.warning("report: warning: %s", mismatch)
    extremes_ids = {run.name: best_worst(run, extremes) for run in runs}
    thumbs: dict[str, dict[str, str | None]] = {}
    for (key, _), rows in groups.items():
        view = views[key]
        wanted = set(_grid_ids(rows, examples)) | {i for r in rows for i in sum(extremes_ids[r.name], [])}
        thumbs.setdefault(key, {}).update(
            {i: thumbnail_data_uri(view.image_paths[i]) for i in sorted(wanted) if i in view.image_paths}
        )
    warning = f'<p class="warning" id="data-warning">&#9888; {escape(mismatch)}</p>' if mismatch else ""
    sections = [
        (
            "metrics",
            "Metrics",
            warning
            + metrics_table(runs, base)
            + '<p class="note">Click a column header to sort. Corpus scores from each evaluation\'s metrics.json '
            "(pycocoevalcap protocol); the best of each column among rows scored on the same data is bold.</p>",
        ),
        ("curves", "Training curves", curves_section(runs, colors)),
        ("decoding", "Decoding settings", decoding_table(runs)),
    ]
    for (key, split_name), rows in groups.items():
        view = views[key]
        head = "Examples" if len(groups) == 1 else f"Examples: {view.name} {split_name}"
        where = f"{view.name} ({shown_path(view.path, base)}), {split_name} split"
        body = (
            f'<p class="note">Images and references of {escape(where)}.</p>'
            + (f'<p class="note">{escape(view.note)}</p>' if view.note else "")
            + examples_grid(rows, _grid_ids(rows, examples), view.references, thumbs[key], colors, view.scenes)
        )
        sections.append(("examples" if len(sections) == 3 else f"examples-{len(sections)}", head, body))
    for run in runs:
        best, worst = extremes_ids[run.name]
        view, thumb = views[run.dataset_key], thumbs[run.dataset_key]
        if best:
            body = (
                f"<h3>Best {len(best)}</h3>"
                + examples_grid([run], best, view.references, thumb, colors, view.scenes)
                + f"<h3>Worst {len(worst)}</h3>"
                + examples_grid([run], worst, view.references, thumb, colors, view.scenes)
            )
            sections.append((f"extremes-{len(sections)}", f"Best and worst: {run.name}", body))
    nav = "".join(f'<a href="#{sid}">{escape(head)}</a>' for sid, head, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(head)}</h2>{html}</section>' for sid, head, html in sections)
    page = Template(_asset("template.html")).substitute(
        title=escape(title),
        css=_asset("report.css"),
        js=_asset("report.js"),
        nav=nav,
        body=body,
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        runs=escape(", ".join(shown_path(d, base) for d in run_dirs)),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
