"""Contrastive CLIP pretraining on a caption dataset: adapts (or, for the offline demo, creates) the frozen image
encoder that ClipCap reads, exactly as ClipCap uses a pretrained CLIP."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from captionkit.config import to_dict, write_resolved_config
from captionkit.data.formats import load_dataset
from captionkit.data.images import load_image
from captionkit.errors import CheckpointError, ConfigError
from captionkit.models import hf
from captionkit.training.checkpoint import capture_rng, restore_rng
from captionkit.training.logging import truncate_jsonl

log = logging.getLogger(__name__)
DONE_MARKER = "pretrain_done.json"
CONFIG_NAME = "pretrain_config.json"
RESUME_NAME = "resume.pt"  # model, optimizer, schedule and RNG after the last finished epoch


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
    dataset: str | Path, out: str | Path, config: ClipPretrainConfig | None = None, progress: bool = True
) -> Path:
    """Train CLIP contrastively on the train split of `dataset`; write a CLIP directory to `out`
    (loadable as encoder `clip:OUT`). A finished `out` is reused and an interrupted one resumes from its last
    finished epoch, in both cases only if it was started with the same dataset and settings."""
    cfg = config or ClipPretrainConfig()
    out = Path(out)
    settings = {"dataset": str(Path(dataset).expanduser().resolve()), **to_dict(cfg)}  # one dataset, one spelling
    _check_same_settings(out, settings)
    if (out / DONE_MARKER).is_file():
        log.info("clip pretrain: %s is already trained, reusing it", out)
        return out
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    data = load_dataset(dataset)
    train = data.with_images(data.split("train"))
    dev = data.with_images(data.split("dev"))
    if not train:
        raise FileNotFoundError(f"{dataset}: no train images found; clip pretrain needs a train split with images")
    resume = _read_resume_state(out)
    model, processor, tokenizer = _build(cfg, [c for r in train for c in r.captions], out, resumed=resume is not None)

    def pixels(records: list) -> torch.Tensor:  # (N, 3, S, S): every image preprocessed once, not once per epoch
        return torch.stack([hf.clip_preprocess(processor, load_image(r.image_path)) for r in records])

    train_pixels = pixels(train)
    dev_pixels = pixels(dev[:256]) if dev else None
    # a locked image side gives every image one fixed embedding: computed once, not once per step
    train_embeds = _image_embeds(model, train_pixels) if cfg.image_tower else None
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)),
    )
    first_epoch = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["scheduler"])
        restore_rng(resume["rng"])
        first_epoch = resume["epoch"] + 1
        log.info("clip pretrain: resuming %s after epoch %d of %d", out, first_epoch, cfg.epochs)
    write_resolved_config(settings, out, CONFIG_NAME)
    log_path = out / "pretrain_log.jsonl"
    truncate_jsonl(log_path, lambda e: e["epoch"] < first_epoch)  # later epochs are trained (and logged) again
    model.train()
    bar = tqdm(
        total=total, initial=first_epoch * steps_per_epoch, desc="clip pretrain", unit="step", disable=not progress
    )
    started = time.time()
    record: dict[str, Any] = resume["record"] if resume is not None else {}
    for epoch in range(first_epoch, cfg.epochs):
        order = torch.randperm(len(train))
        for start in range(0, len(train), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            ids, mask = hf.clip_tokenize(
                tokenizer, [random.choice(train[i].captions) for i in idx.tolist()], cfg.max_text_tokens
            )
            if train_embeds is not None:
                loss = hf.clip_contrastive_loss_from_image_embeds(model, train_embeds[idx], ids, mask)
            else:
                loss = hf.clip_contrastive_loss(model, train_pixels[idx], ids, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        record = {"epoch": epoch, "train_loss": loss.item(), "time": round(time.time() - started, 1)}
        if dev_pixels is not None:
            record["dev_retrieval_top1"] = retrieval_top1(model, tokenizer, dev_pixels, dev[:256], cfg)
        with log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        _save_resume_state(
            out,
            {
                "epoch": epoch,
                "record": record,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict(),
                "rng": capture_rng(),
            },
        )
    bar.close()
    model.eval()
    hf.save_clip(out, model, processor, tokenizer)
    (out / DONE_MARKER).write_text(json.dumps(record) + "\n", encoding="utf-8")
    (out / RESUME_NAME).unlink(missing_ok=True)  # the finished model supersedes it
    return out


def _build(cfg: ClipPretrainConfig, captions: list[str], out: Path, resumed: bool) -> tuple[Any, Any, Any]:
    """(model, image processor, tokenizer): the CLIP to adapt, or a new one with a BPE learnt from `captions`
    (read back from OUT/tokenizer on a resume, so the token ids are those the checkpoint was trained with)."""
    if cfg.init:
        model, processor, tokenizer = hf.load_clip(cfg.init)
        if tokenizer is None:
            raise FileNotFoundError(f"{cfg.init}: no CLIP tokenizer files; cannot adapt it")
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
    embeds = torch.cat([hf.clip_image_embeds(model, pixels[i : i + batch]) for i in range(0, len(pixels), batch)])
    model.train(was_training)
    return embeds


def _check_same_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to reuse or resume an OUT that was started with another dataset or other settings."""
    path = out / CONFIG_NAME
    if not path.is_file() or not ((out / DONE_MARKER).is_file() or (out / RESUME_NAME).is_file()):
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    changed = sorted(k for k in {*before, *settings} if before.get(k) != settings.get(k))
    if changed:
        key = changed[0]
        raise ConfigError(
            f"{out} was trained with {key}={before.get(key)!r}, now {key}={settings.get(key)!r} "
            f"({len(changed)} setting(s) differ: {', '.join(changed)}); pass another --out, or "
            f"delete {out} to train it again"
        )


def _read_resume_state(out: Path) -> dict[str, Any] | None:
    path = out / RESUME_NAME
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable resume state ({exc}); delete it to start over") from exc


def _save_resume_state(out: Path, state: dict[str, Any]) -> None:
    """Written to a temporary file and renamed over the old one: an interruption leaves the previous epoch's."""
    tmp = out / f".{RESUME_NAME}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / RESUME_NAME)


@torch.no_grad()
def retrieval_top1(
    model: torch.nn.Module, tokenizer: Any, pixel_values: torch.Tensor, records: list, cfg: ClipPretrainConfig
) -> float:
    """Share of images whose own first caption is the nearest of all captions in the set (image -> text)."""
    was_training = model.training
    model.eval()
    ids, mask = hf.clip_tokenize(tokenizer, [r.captions[0] for r in records], cfg.max_text_tokens)
    img = torch.nn.functional.normalize(hf.clip_image_embeds(model, pixel_values), dim=-1)
    txt = torch.nn.functional.normalize(hf.clip_text_embeds(model, ids, mask), dim=-1)
    hits = (img @ txt.T).argmax(dim=1) == torch.arange(len(records))
    model.train(was_training)
    return round(hits.float().mean().item(), 4)
