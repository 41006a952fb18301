"""Contrastive CLIP pretraining on a caption dataset: adapts (or, for the offline demo, creates) the frozen image
encoder that ClipCap reads, exactly as ClipCap uses a pretrained CLIP."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from captionkit.config import to_dict
from captionkit.data.formats import load_dataset
from captionkit.data.images import load_image
from captionkit.errors import ConfigError, DatasetError
from captionkit.models import hf
from captionkit.training.config import TrainConfig
from captionkit.training.engine import Engine, TrainerState
from captionkit.training.pretrain_objectives import Contrastive, ContrastiveCLIP
from captionkit.training.pretrain_run import PretrainJob, mark_done, run_pretraining

log = logging.getLogger(__name__)


@dataclass
class ClipPretrainConfig:
    init: str | None = None  # hub id / dir of a pretrained CLIP to adapt; None = a new model of the sizes below
    # LiT (Zhai et al. 2022, "locked-image tuning"): a CLIP directory whose image side (vision tower + image
    # projection, e.g. pretrained as a classifier by `encoder pretrain`) is loaded and locked; only a new text tower
    # learns, contrastively, to meet its embeddings. None: both towers train from `init` or from scratch.
    image_tower: str | None = None
    image_size: int = 96
    patch_size: int = 16
    width: int = 128  # hidden size of both towers
    layers: int = 4
    heads: int = 4
    projection_dim: int = 128
    tokenizer_merges: int = 1000  # BPE merges learnt from the train captions when no tokenizer comes with `init`
    max_text_tokens: int = 32
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    seed: int = 0
    mixed_precision: str = "no"  # "bf16": autocast (GPUs, and CPUs with AVX-512 BF16 or AMX); "fp16": GPUs
    extra: dict[str, Any] = field(default_factory=dict)  # more CLIPConfig fields, merged into the new model's config


def _bytes_to_unicode() -> list[str]:
    """CLIP's (and GPT-2's) byte -> printable character table: the base alphabet of its BPE vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def train_clip_tokenizer(captions: list[str], num_merges: int, directory: Path) -> Any:
    """Learn a BPE in CLIP's own file format (lower-cased words, `</w>` end-of-word suffix, vocab = 256 byte chars,
    their `</w>` forms, merges, start/end tokens) so the standard CLIP tokenizer reads it. Hand-written because
    the `tokenizers` trainer does not emit CLIP's vocabulary layout."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    base = _bytes_to_unicode()
    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=2 * len(base) + num_merges, end_of_word_suffix="</w>", initial_alphabet=base, show_progress=False
    )
    tok.train_from_iterator(captions, trainer)
    with tempfile.TemporaryDirectory() as tmp:
        tok.model.save(tmp)
        merges = [
            ln
            for ln in Path(tmp, "merges.txt").read_text(encoding="utf-8").splitlines()
            if ln and not ln.startswith("#")
        ]
    tokens = base + [c + "</w>" for c in base] + [m.replace(" ", "") for m in merges]
    tokens = list(dict.fromkeys(tokens)) + ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return hf.clip_tokenizer(str(directory))


def _new_model(
    cfg: ClipPretrainConfig,
    tokenizer: Any,
    vision_config: dict[str, Any] | None = None,
    projection_dim: int | None = None,
) -> torch.nn.Module:
    vocab = tokenizer.get_vocab()
    tower = {
        "hidden_size": cfg.width,
        "intermediate_size": 4 * cfg.width,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
    }
    config = {
        "projection_dim": projection_dim or cfg.projection_dim,
        "text_config": {
            **tower,
            "vocab_size": len(vocab),
            "max_position_embeddings": cfg.max_text_tokens,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        "vision_config": vision_config or {**tower, "image_size": cfg.image_size, "patch_size": cfg.patch_size},
        **cfg.extra,
    }
    return hf.new_clip_model(config)


def pretrain_clip(
    dataset: str | Path,
    out: str | Path,
    config: ClipPretrainConfig | None = None,
    progress: bool = True,
    dataset_format: str = "auto",
    dataset_options: dict[str, Any] | None = None,
) -> Path:
    """Train CLIP contrastively on the train split of `dataset` (read as `dataset_format` with `dataset_options`)
    on the training engine; write a CLIP directory to `out` (loadable as encoder `clip:OUT`). A finished `out` is
    reused and an interrupted one resumes from its last checkpoint, in both cases only if it was started with the
    same dataset and settings."""
    cfg = config or ClipPretrainConfig()
    out = Path(out)
    settings = {"dataset": str(Path(dataset).expanduser().resolve()), **to_dict(cfg)}  # one dataset, one spelling
    if dataset_format != "auto" or dataset_options:  # named only when given: earlier runs keep matching
        settings.update(dataset_format=dataset_format, dataset_options=dict(dataset_options or {}))
    job = ClipPretrainJob(cfg, str(dataset), dataset_format, dict(dataset_options or {}), out, settings)
    train = TrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        schedule="cosine",
        weight_decay=cfg.weight_decay,
        max_grad_norm=1.0,
        mixed_precision=cfg.mixed_precision,
        seed=cfg.seed,
        num_workers=0,  # the images are preprocessed once, in memory
        keep_last_n=1,
    )
    run_pretraining(job, train, "clip pretrain", progress)
    return out


class ClipPretrainJob(PretrainJob):
    """Contrastive CLIP training as an engine job: every image preprocessed once, one caption per image per epoch,
    image -> text retrieval on (up to 256) dev images after every epoch."""

    def __init__(
        self,
        cfg: ClipPretrainConfig,
        dataset: str,
        dataset_format: str,
        dataset_options: dict[str, Any],
        out: Path,
        settings: dict[str, Any],
    ) -> None:
        self.cfg, self.dataset, self.format, self.options = cfg, dataset, dataset_format, dataset_options
        self.out, self.settings = out, settings
        self.record: dict[str, Any] = {}

    def setup(self, engine: Engine, checkpoint: Path | None) -> None:
        cfg = self.cfg
        data = load_dataset(self.dataset, self.format, **self.options)
        train = data.with_images(data.split("train"))
        self.dev = data.with_images(data.split("dev"))[:256]
        if not train:
            raise DatasetError(f"{self.dataset}: no train images found; clip pretrain needs a train split with images")
        clip, self.processor, self.tokenizer = _build(
            cfg, [c for r in train for c in r.captions], self.out, resumed=checkpoint is not None
        )
        clip.to(engine.accelerator.device)
        features = self._pixels(train)  # (N, 3, S, S): every image preprocessed once, not once per epoch
        if cfg.image_tower:  # a locked image side gives every image one fixed embedding: computed once
            features = _image_embeds(clip, features).cpu()
        self.dev_pixels = self._pixels(self.dev) if self.dev else None
        self.model = ContrastiveCLIP(clip, locked_image=bool(cfg.image_tower))
        self.saved = self.tokenizer
        self.objective = Contrastive(self.tokenizer, cfg.max_text_tokens)
        self.train_data = self.objective.train_data(train, features)

    def _pixels(self, records: list) -> torch.Tensor:
        return torch.stack([hf.clip_preprocess(self.processor, load_image(r.image_path)) for r in records])

    def evaluate(self, engine: Engine, state: TrainerState, train_stats: dict[str, float], epoch_end: bool) -> None:
        if not epoch_end:
            return
        self.record = {f"train_{k}": v for k, v in train_stats.items()}
        if self.dev_pixels is not None:
            clip = engine.unwrapped.clip
            self.record["dev_retrieval_top1"] = retrieval_top1(
                clip, self.tokenizer, self.dev_pixels, self.dev, self.cfg
            )
        engine.logger.event("epoch", epoch=state.epoch, step=state.global_step, **self.record)
        engine.logger.scalars(state.global_step, {k.replace("_", "/", 1): v for k, v in self.record.items()})
        engine.logger.message(" ".join([f"epoch {state.epoch}:"] + [f"{k}={v:.4f}" for k, v in self.record.items()]))

    def finish(self, engine: Engine, state: TrainerState) -> None:
        if engine.accelerator.is_main_process:
            clip = engine.unwrapped.clip.eval()
            hf.save_clip(self.out, clip, self.processor, self.tokenizer)
            mark_done(self.out, {"epoch": state.epoch, "step": state.global_step, **self.record})


def _build(cfg: ClipPretrainConfig, captions: list[str], out: Path, resumed: bool) -> tuple[Any, Any, Any]:
    """(model, image processor, tokenizer): the CLIP to adapt, or a new one with a BPE learnt from `captions`
    (read back from OUT/tokenizer on a resume, so the token ids are those the checkpoint was trained with)."""
    if cfg.init:
        model, processor, tokenizer = hf.load_clip(cfg.init)
        if tokenizer is None:
            raise ConfigError(f"init={cfg.init}: no CLIP tokenizer files there; a CLIP to adapt needs its tokenizer")
        return model, processor, tokenizer
    if resumed:
        tokenizer = hf.clip_tokenizer(str(out / "tokenizer"))
    else:
        tokenizer = train_clip_tokenizer(captions, cfg.tokenizer_merges, out / "tokenizer")
    if cfg.image_tower:
        locked, processor, _ = hf.load_clip(cfg.image_tower)
        model = _new_model(
            cfg,
            tokenizer,
            vision_config=hf.clip_vision_config(locked),
            projection_dim=int(locked.config.projection_dim),
        )
        hf.copy_clip_image_side(locked, model)
        model.requires_grad_(False)
        for p in hf.clip_text_parameters(model):
            p.requires_grad_(True)
        return model, processor, tokenizer
    return _new_model(cfg, tokenizer), hf.new_clip_image_processor(cfg.image_size), tokenizer


@torch.no_grad()
def _image_embeds(model: torch.nn.Module, pixels: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """(N, 3, S, S) -> (N, projection_dim) embeddings of the (locked) image side, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    embeds = torch.cat(
        [hf.clip_image_embeds(model, pixels[i : i + batch].to(device)) for i in range(0, len(pixels), batch)]
    )
    model.train(was_training)
    return embeds


@torch.no_grad()
def retrieval_top1(
    model: torch.nn.Module, tokenizer: Any, pixel_values: torch.Tensor, records: list, cfg: ClipPretrainConfig
) -> float:
    """Share of images whose own first caption is the nearest of all captions in the set (image -> text)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids, mask = hf.clip_tokenize(tokenizer, [r.captions[0] for r in records], cfg.max_text_tokens)
    img = torch.nn.functional.normalize(hf.clip_image_embeds(model, pixel_values.to(device)), dim=-1)
    txt = torch.nn.functional.normalize(hf.clip_text_embeds(model, ids.to(device), mask.to(device)), dim=-1)
    hits = (img @ txt.T).argmax(dim=1).cpu() == torch.arange(len(records))
    model.train(was_training)
    return round(hits.float().mean().item(), 4)
