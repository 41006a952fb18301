"""The main job on the built-in demo data: make data, align a CLIP text tower to the shipped image tower, train both
model families on the shipped pretrained encoders, evaluate, compare with a blind baseline, write the report.
Every step reuses its finished output when run again.

The encoders are pretrained, as real captioners' are: VGG16 on ImageNet labels and CLIP on web image-text pairs.
Offline, their analogues are a VGG16-bn-layout network and a CLIP image tower trained as multi-label classifiers on
a labelled stream of generated scenes (`data/scene_stream.py`, never the caption dataset's images), shipped in
`captionkit/pretrained/` and made by `captionkit demo --pretrain-encoders` (`pretrain_demo_encoders`)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captionkit.config import to_dict, write_resolved_config
from captionkit.errors import UnknownNameError
from captionkit.registry import get_preset
from captionkit.rundir import LAYOUT_VERSION, METRICS, MODEL, PREDICTIONS
from captionkit.training.clip_pretrain import ClipPretrainConfig

log = logging.getLogger(__name__)

# Demo presets in training order, each with the --set overrides that point it at what earlier steps made:
# {vgg_fc2}, {vgg_conv4_3} = the pretrained VGG's features (shipped weights: `vgg16-bn-small:fc2@demo`);
# {clip} = the CLIP whose text tower the demo aligns to the shipped image tower (LiT);
# {gpt2} = the GPT-2 the MLP run fine-tunes, frozen in the transformer run the way ClipCap freezes pretrained GPT-2.
DEMO_MODELS: dict[str, list[str]] = {
    "demo-show-tell-merge": ["encoder={vgg_fc2}"],
    "demo-show-attend-tell": ["encoder={vgg_conv4_3}"],
    "demo-clipcap-mlp": ["encoder=clip:{clip}"],
    "demo-clipcap-transformer": ["encoder=clip:{clip}", "model.gpt2={gpt2}", "model.tokenizer={gpt2}"],
}
NEEDS = {"{gpt2}": "demo-clipcap-mlp"}
# Self-critical fine-tuning (CIDEr-D reward) of a trained demo model: its preset, and the row it adds
SCST_PRESETS = {
    "demo-show-tell-merge": "show-tell-merge-scst",
    "demo-show-attend-tell": "show-attend-tell-scst",
    "demo-clipcap-mlp": "clipcap-mlp-scst",
    "demo-clipcap-transformer": "clipcap-transformer-scst",
}
SCST_SUFFIX = "+scst"
SHIPPED_CLIP_IMAGE_TOWER = "captionkit:demo-clip-vision"


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    images: int = 1500  # synthetic images; 80/10/10 train/dev/test
    size: int = 128  # image side in pixels
    seed: int = 0
    models: list[str] = field(default_factory=lambda: list(DEMO_MODELS))
    vgg_kind: str = "vgg16-bn-small"
    vgg_weights: str = "demo"  # shipped; a path to other weights; "" = random (tests)
    # LiT: a text tower learns from the demo captions to meet the shipped, locked CLIP image tower
    clip: ClipPretrainConfig = field(
        default_factory=lambda: ClipPretrainConfig(
            image_tower=SHIPPED_CLIP_IMAGE_TOWER, epochs=15, lr=1e-3, warmup_steps=50
        )
    )
    scst: list[str] = field(default_factory=lambda: ["demo-clipcap-mlp", "demo-show-attend-tell"])  # fine-tuned
    scst_settings: list[str] = field(
        default_factory=lambda: [
            "train.epochs=3",
            "train.lr=5e-5",
            "train.batch_size=32",
            "train.num_workers=0",
            "eval.max_images=150",
        ]
    )
    split: str = "test"
    decoding: dict[str, Any] = field(default_factory=dict)  # captionkit.decoding.DecodingConfig fields
    overrides: dict[str, list[str]] = field(default_factory=dict)  # preset name -> ["train.epochs=1", ...]


class Steps:
    """Runs named steps once: a finished step leaves a marker file with its key and is skipped when the demo runs
    again with the same key. A step whose key changed (its settings, or those of a step it builds on) is stale:
    its outputs are removed and it runs again, so a rerun never mixes old models into new results."""

    def __init__(self, root: Path) -> None:
        self.root = root / ".steps"
        self.root.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, fn: Callable[[], Any], key: Any = None, outputs: tuple[Path, ...] = ()) -> None:
        marker = self.root / f"{name}.json"
        stamp = json.dumps(key, sort_keys=True, default=str)
        if marker.is_file():
            if json.loads(marker.read_text(encoding="utf-8")).get("key") == stamp:
                log.info("[demo] %s: done before, reusing it", name)
                return
            log.info("[demo] %s: settings changed since it ran, redoing it", name)
            marker.unlink()  # first: an interruption from here on leaves an unfinished step, resumed next time
            for path in outputs:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        log.info("[demo] %s ...", name)
        started = time.time()
        fn()
        seconds = round(time.time() - started, 1)
        marker.write_text(json.dumps({"key": stamp, "seconds": seconds}) + "\n", encoding="utf-8")
        log.info("[demo] %s: %.1f s", name, seconds)


def run_demo(config: DemoConfig | None = None) -> dict[str, Any]:
    """Run every step; returns the content written to OUT/metrics.json."""
    cfg = config or DemoConfig()
    out = Path(cfg.out)
    steps = Steps(out)
    write_resolved_config(cfg, out, "demo_config.json")
    data = out / "data"
    data_key = [cfg.images, cfg.size, cfg.seed]
    steps.run("data", lambda: _make_data(data, cfg), key=data_key)
    made = {"{clip}": (out / "clip").resolve(), "{gpt2}": (out / "gpt2").resolve()}
    encoders = {
        f"{{vgg_{f}}}": cfg.vgg_kind + f":{f}" + (f"@{cfg.vgg_weights}" if cfg.vgg_weights else "")
        for f in ("fc2", "conv4_3")
    }
    made_by: dict[str, Any] = {p: [spec, _weights_stamp(spec)] for p, spec in encoders.items()}
    log.info(
        "[demo] pretrained encoders: %s and the CLIP image tower %s%s",
        ", ".join(encoders.values()),
        cfg.clip.image_tower,
        " (shipped in captionkit/pretrained, made by `captionkit demo --pretrain-encoders`)"
        if cfg.vgg_weights == "demo"
        else "",
    )
    models = _ordered(cfg.models)
    if any("{clip}" in o for m in models for o in DEMO_MODELS[m]):
        from captionkit.training.clip_pretrain import pretrain_clip

        made_by["{clip}"] = [
            data_key,
            to_dict(cfg.clip),
            _weights_stamp(f"clip:{cfg.clip.image_tower}") if cfg.clip.image_tower else "",
        ]
        steps.run(
            "clip-pretrain",
            lambda: pretrain_clip(data, made["{clip}"], cfg.clip),
            key=made_by["{clip}"],
            outputs=(made["{clip}"],),
        )
    for name in models:
        run_dir = out / name
        overrides = [_fill(o, made, encoders) for o in DEMO_MODELS[name]] + list(cfg.overrides.get(name, []))
        uses = [made_by[p] for p in made_by if any(p in o for o in DEMO_MODELS[name])]
        train_key = [data_key, get_preset(name), overrides, uses]  # a changed preset is a changed step
        steps.run(f"train-{name}", lambda: _train(name, data, run_dir, overrides), key=train_key, outputs=(run_dir,))
        if name == NEEDS["{gpt2}"]:
            made_by["{gpt2}"] = train_key
            steps.run("export-gpt2", lambda: _export_gpt2(run_dir, made["{gpt2}"]), key=train_key)
        steps.run(
            f"evaluate-{name}",
            lambda: _evaluate(run_dir, data, cfg),
            key=[train_key, cfg.split, cfg.decoding, LAYOUT_VERSION],
        )
        made_by[name] = train_key
    for parent in cfg.scst:
        name, run_dir = parent + SCST_SUFFIX, out / (parent + SCST_SUFFIX)
        if parent not in made_by:
            raise UnknownNameError(f"scst: {parent!r} is not among the demo models trained ({', '.join(models)})")
        overrides = list(cfg.scst_settings) + list(cfg.overrides.get(name, []))
        train_key = [made_by[parent], get_preset(SCST_PRESETS[parent]), overrides]
        steps.run(
            f"train-{name}",
            lambda: _train(SCST_PRESETS[parent], data, run_dir, overrides, init_from=out / parent / MODEL),
            key=train_key,
            outputs=(run_dir,),
        )
        steps.run(
            f"evaluate-{name}",
            lambda: _evaluate(run_dir, data, cfg),
            key=[train_key, cfg.split, cfg.decoding, LAYOUT_VERSION],
        )
    results = _collect(out, data, cfg)
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    _report(out, data, cfg)
    return results


def _fill(override: str, made: dict[str, Path], encoders: dict[str, str]) -> str:
    for placeholder, value in [*made.items(), *encoders.items()]:
        override = override.replace(placeholder, str(value))
    return override


def _weights_stamp(spec: str) -> str:
    """Names, sizes and times of the weight files an encoder spec reads: shipped weights made anew redo every step
    that used the old ones."""
    from captionkit.training.data import local_weights_stamp

    return local_weights_stamp(spec)


def _ordered(models: list[str]) -> list[str]:
    """The asked-for models plus the runs they build on, in DEMO_MODELS order."""
    unknown = [m for m in models if m not in DEMO_MODELS]
    if unknown:
        raise UnknownNameError(f"unknown demo model(s) {unknown}; valid: {', '.join(DEMO_MODELS)}")
    wanted = set(models) | {NEEDS[p] for m in models for p in NEEDS if any(p in o for o in DEMO_MODELS[m])}
    return [m for m in DEMO_MODELS if m in wanted]


def _make_data(data: Path, cfg: DemoConfig) -> None:
    from captionkit.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(data, images=cfg.images, seed=cfg.seed, size=cfg.size)


def _train(preset: str, data: Path, run_dir: Path, overrides: list[str], init_from: Path | None = None) -> None:
    from captionkit.training import load_run_config, train

    config = load_run_config(
        preset=preset,
        overrides=overrides,
        dataset=str(data),
        out=str(run_dir),
        init_from=str(init_from) if init_from else None,
    )
    train(config, resume=True)  # resumes an interrupted demo run; starts fresh when there is no checkpoint


def _export_gpt2(run_dir: Path, out: Path) -> None:
    """Save the MLP run's fine-tuned GPT-2 and tokenizer as a GPT-2 directory (the demo's "pretrained GPT-2")."""
    from captionkit.models import hf
    from captionkit.models.model_dir import load_model_dir

    loaded = load_model_dir(run_dir / MODEL)
    hf.save_gpt2(out, loaded.model.gpt)
    loaded.tokenizer.save_pretrained(str(out))


def _evaluate(run_dir: Path, data: Path, cfg: DemoConfig) -> None:
    from captionkit.evaluation.evaluate import evaluate_model

    evaluate_model(run_dir / MODEL, data, cfg.split, cfg.decoding, progress=True)


def _results(run_dir: Path, data: Path, cfg: DemoConfig) -> Path:
    """The demo's own evaluation of a run (other evaluations of the run, on other data, may sit beside it)."""
    from captionkit.evaluation.evaluate import results_dir_for

    return results_dir_for(run_dir / MODEL, data, cfg.split, cfg.decoding)


def blind_baseline(data: Path, split: str) -> dict[str, float]:
    """Every test image gets the most frequent training caption: what a model that ignores the image can score."""
    from captionkit.data.formats import load_dataset
    from captionkit.evaluation.metrics import score
    from captionkit.evaluation.object_f1 import load_scenes

    dataset = load_dataset(data)
    counts = Counter(c for r in dataset.split("train") for c in r.captions)
    caption = counts.most_common(1)[0][0]
    records = dataset.split(split)
    scenes = load_scenes(data)
    result = score(
        {r.image_id: list(r.captions) for r in records},
        {r.image_id: caption for r in records},
        scenes={r.image_id: scenes[r.image_id] for r in records},
    )
    return {**result.corpus, "caption": caption}


def run_names(cfg: DemoConfig) -> list[str]:
    """The demo's rows: every model, then every self-critical fine-tuning of one."""
    return [*cfg.models, *(parent + SCST_SUFFIX for parent in cfg.scst)]


def _collect(out: Path, data: Path, cfg: DemoConfig) -> dict[str, Any]:
    models = {}
    from captionkit.evaluation.diversity import caption_statistics

    for name in run_names(cfg):
        folder = _results(out / name, data, cfg)
        predictions = json.loads((folder / PREDICTIONS).read_text(encoding="utf-8"))
        models[name] = {
            **json.loads((folder / METRICS).read_text(encoding="utf-8")),
            **caption_statistics(p["caption"] for p in predictions),
        }
    return {"split": cfg.split, "models": models, "baselines": {"blind": blind_baseline(data, cfg.split)}}


def _report(out: Path, data: Path, cfg: DemoConfig) -> None:
    from captionkit.report import build_report

    build_report([_results(out / name, data, cfg) for name in run_names(cfg)], out / "report.html")


def format_table(
    results: dict[str, Any],
    columns: tuple[str, ...] = ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "object_f1", "mean_length", "distinct_2"),
) -> str:
    """Markdown table of the demo's models and baselines."""
    rows = [("model", *columns), ("---", *("---:" for _ in columns))]
    entries = {**results["models"], **{f"baseline: {k}": v for k, v in results["baselines"].items()}}
    for name, scores in entries.items():
        rows.append((name, *(f"{scores[c]:.3f}" if isinstance(scores.get(c), float) else "-" for c in columns)))
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)
