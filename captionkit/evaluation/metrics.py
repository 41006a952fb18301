"""Caption metrics with the coco-caption protocol: pycocoevalcap's scorers after its PTB tokenizer, corpus + per item.

`score(references, candidates)` returns BLEU-1..4, METEOR, ROUGE-L and CIDEr (pycocoevalcap's Cider is CIDEr-D) keyed
by pycocoevalcap's names, exactly as `COCOEvalCap.evaluate` computes them; SPICE when asked for by name (it needs
Stanford CoreNLP jars that pycocoevalcap downloads). Metric sets: "default" (the above), "fast" (without METEOR,
whose JVM start dominates a small evaluation), "coco" (the default and SPICE).

- Tokenization: pycocoevalcap's PTBTokenizer jar (Stanford CoreNLP 3.4.1), references and candidates each lexed as
  one stream in the same order pycocoevalcap uses, in ONE Java process for both (`-ioFileList`). Without Java, the
  pure-Python `ptb_tokenizer` gives the same strings (tested on every Flickr8k caption), METEOR (Java only) and SPICE
  are skipped with a one-line reason, and `Scores.tokenizer` says which tokenizer ran.
- METEOR's JVM starts once per `score` call, not once per caption (pycocoevalcap's `Meteor` keeps one process).

Corpus vs per-item semantics (they differ on purpose, as in coco-caption):
- BLEU-n corpus is computed from n-gram counts and lengths summed over all items (one brevity penalty for the
  corpus); per-item BLEU-n is that formula on one item alone (its own brevity penalty, pycocoevalcap's smoothing of
  zero counts). Corpus BLEU is therefore NOT the mean of per-item BLEU.
- METEOR corpus is computed from the summed alignment statistics, not the mean of per-item METEOR.
- ROUGE-L, CIDEr(-D), SPICE, CLIPScore, RefCLIPScore and object_f1 corpus scores are the mean of per-item scores.
  CIDEr-D's per-item scores depend on the whole evaluation set (its document frequencies come from all references).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError
from captionkit.evaluation import ptb_tokenizer

COCO_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
CLIP_METRICS = ("CLIPScore", "RefCLIPScore")
OBJECT_METRICS = ("object_f1",)
ALL_METRICS = COCO_METRICS + CLIP_METRICS + OBJECT_METRICS
DEFAULT_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
FAST_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr")  # no JVM but the tokenizer's (~0.2 s)
JAVA_TOKENIZER, PYTHON_TOKENIZER = "ptb-java", "ptb-python"
_ALIASES = {
    "default": DEFAULT_METRICS,
    "fast": FAST_METRICS,
    "coco": COCO_METRICS,
    "bleu": ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"),
    "rouge": ("ROUGE_L",),
    "rouge_l": ("ROUGE_L",),
    "cider": ("CIDEr",),
    "cider-d": ("CIDEr",),
    "meteor": ("METEOR",),
    "spice": ("SPICE",),
    "clipscore": ("CLIPScore",),
    "refclipscore": ("RefCLIPScore",),
    "clip": CLIP_METRICS,
}


@dataclass
class Scores:
    """What `score` returns. Unpacks like the pair the contract names: `corpus, per_item = score(...)`.

    corpus: {metric: float} keyed by pycocoevalcap's names; per_item: {image id: {metric: float}};
    tokenizer: "ptb-java", "ptb-python" or "none" (only CLIP/object metrics);
    skipped: {metric: one-line reason} for metrics asked for but not run.
    """

    corpus: dict[str, float]
    per_item: dict[Hashable, dict[str, float]]
    tokenizer: str
    skipped: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.corpus, self.per_item))

    def info(self) -> dict[str, Any]:
        """How the scores were computed, for a results file beside the scores."""
        return {
            "tokenizer": self.tokenizer,
            "skipped": dict(self.skipped),
            "items": len(self.per_item),
            "protocol": "pycocoevalcap 1.2 (coco-caption): PTB tokenization, BLEU closest ref length, CIDEr-D",
        }


def resolve_metrics(metrics: str | Sequence[str] | None) -> list[str]:
    """Metric names (case-insensitive; "bleu" = Bleu_1..4, "clip" = CLIPScore + RefCLIPScore, "fast" = the default
    without METEOR, "coco" = the default and SPICE) -> canonical names.

    None means the default set, the coco-caption metrics but SPICE (SPICE, the CLIP and the object metrics need
    extra data or jars: ask for them by name or pass that data to `score`)."""
    if metrics is None:
        return list(DEFAULT_METRICS)
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    canonical = {m.lower(): m for m in ALL_METRICS}
    out: list[str] = []
    for name in metrics:
        key = name.strip().lower()
        found = _ALIASES.get(key) or ((canonical[key],) if key in canonical else None)
        if found is None:
            raise ConfigError(
                f"unknown metric {name!r}; valid: {', '.join(ALL_METRICS)} "
                "(or the sets fast, default, coco; bleu, rouge, cider, clip)"
            )
        out.extend(m for m in found if m not in out)
    return out


@functools.lru_cache(maxsize=1)
def java_available() -> bool:
    """True when a working `java` is on PATH (pycocoevalcap's tokenizer, METEOR and SPICE need it)."""
    java = shutil.which("java")
    if java is None:
        return False
    try:
        return subprocess.run([java, "-version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _package_dir() -> Path:
    import pycocoevalcap  # a namespace package in 1.2: no __file__

    return Path(next(iter(pycocoevalcap.__path__)))


def spice_unavailable_reason() -> str | None:
    """None when SPICE can run here; else why not. Checked without touching pycocoevalcap's Spice class, whose
    constructor downloads Stanford CoreNLP 3.6.0 when the jars are missing."""
    if not java_available():
        return "SPICE skipped: needs Java"
    lib = _package_dir() / "spice" / "lib"
    missing = [
        p.name
        for p in (lib / "stanford-corenlp-3.6.0.jar", lib / "stanford-corenlp-3.6.0-models.jar")
        if not p.is_file()
    ]
    if missing:
        return (
            f"SPICE skipped: {', '.join(missing)} missing in {lib} (pycocoevalcap downloads Stanford CoreNLP "
            "3.6.0 on first use; put the two jars there to enable SPICE offline)"
        )
    return None


def java_ptb_tokenize(*streams: Sequence[str]) -> list[list[str]]:
    """Run pycocoevalcap's PTBTokenizer jar once over several caption streams, each lexed on its own as
    pycocoevalcap lexes one `tokenize` call (`-preserveLines -lowerCase`, then PUNCTUATIONS removed).

    Unlike pycocoevalcap this writes its temporary files outside site-packages (which may be read-only) and turns
    every Java line-break character of a caption into a space, so lines cannot shift onto the wrong image."""
    jar = _package_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    with tempfile.TemporaryDirectory(prefix="captionkit-ptb-") as tmp:
        pairs = []
        for i, stream in enumerate(streams):
            src, dst = Path(tmp, f"in{i}.txt"), Path(tmp, f"out{i}.txt")
            src.write_text("\n".join(ptb_tokenizer.clean_line(c) for c in stream), encoding="utf-8")
            pairs.append((src, dst))
        listing = Path(tmp, "files.txt")
        listing.write_text("".join(f"{s} {d}\n" for s, d in pairs), encoding="utf-8")
        cmd = [
            "java",
            "-cp",
            str(jar),
            "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines",
            "-lowerCase",
            "-ioFileList",
            str(listing),
        ]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"PTBTokenizer failed ({' '.join(cmd)}): {proc.stderr.decode(errors='replace')[-500:]}")
        out = []
        for (_src, dst), stream in zip(pairs, streams):
            lines = dst.read_text(encoding="utf-8").split("\n") if stream else []
            if len(lines) < len(stream):
                raise RuntimeError(f"PTBTokenizer returned {len(lines)} lines for {len(stream)} captions")
            out.append(
                [
                    " ".join(w for w in line.rstrip().split(" ") if w not in ptb_tokenizer.PUNCTUATIONS)
                    for line in lines[: len(stream)]
                ]
            )
    return out


def _check_inputs(
    references: Mapping[Hashable, Sequence[str]], candidates: Mapping[Hashable, str | Sequence[str]]
) -> dict[Hashable, str]:
    """Candidates as {id: caption} in the references' id order; both sides must have the same ids."""
    missing = [k for k in references if k not in candidates]
    extra = [k for k in candidates if k not in references]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} reference id(s) without a candidate, e.g. {missing[:3]}")
        if extra:
            parts.append(f"{len(extra)} candidate id(s) without references, e.g. {extra[:3]}")
        raise ValueError("; ".join(parts))
    out = {}
    for key in references:
        refs, cand = references[key], candidates[key]
        if isinstance(refs, str) or not refs:
            raise ValueError(f"image id {key!r}: references must be a non-empty list of captions")
        if not isinstance(cand, str):
            if len(cand) != 1:
                raise ValueError(f"image id {key!r}: expected one candidate caption, got {len(cand)}")
            cand = cand[0]
        out[key] = cand
    return out


def _tokenize(
    references: Mapping[Hashable, Sequence[str]], candidates: dict[Hashable, str], tokenizer: str
) -> tuple[dict, dict, str]:
    if tokenizer not in ("auto", "java", "python"):
        raise ConfigError(f"tokenizer {tokenizer!r}: expected auto, java or python")
    if tokenizer == "java" and not java_available():
        raise ConfigError(
            "tokenizer 'java' asked for but no working `java` is on PATH; install a JRE "
            "(e.g. apt-get install default-jre-headless) or use tokenizer 'python'"
        )
    use_java = tokenizer == "java" or (tokenizer == "auto" and java_available())
    ref_lines = [c for refs in references.values() for c in refs]
    cand_lines = list(candidates.values())
    if use_java:
        ref_tok, cand_tok = java_ptb_tokenize(ref_lines, cand_lines)
    else:
        ref_tok, cand_tok = ptb_tokenizer.tokenize_lines(ref_lines), ptb_tokenizer.tokenize_lines(cand_lines)
    gts: dict[Hashable, list[str]] = {}
    i = 0
    for key, refs in references.items():
        gts[key] = ref_tok[i : i + len(refs)]
        i += len(refs)
    res = {key: [tok] for key, tok in zip(candidates, cand_tok)}
    return gts, res, JAVA_TOKENIZER if use_java else PYTHON_TOKENIZER


def _coco_scores(
    gts: dict,
    res: dict,
    wanted: list[str],
    skipped: dict[str, str],
    corpus: dict[str, float],
    per_item: dict[Hashable, dict[str, float]],
) -> None:
    """Run pycocoevalcap's scorers on tokenized captions, filling `corpus` and `per_item`."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    keys = list(gts)

    def put(name: str, total: Any, items: Sequence[Any]) -> None:
        corpus[name] = float(total)
        for key, value in zip(keys, items):
            per_item[key][name] = float(value)

    bleu = [m for m in wanted if m.startswith("Bleu_")]
    if bleu:
        n = max(int(m[-1]) for m in bleu)
        totals, items = Bleu(n).compute_score(gts, res, verbose=0)
        for i in range(n):
            if f"Bleu_{i + 1}" in bleu:
                put(f"Bleu_{i + 1}", totals[i], items[i])
    if "METEOR" in wanted:
        if java_available():
            from pycocoevalcap.meteor.meteor import Meteor

            total, items = Meteor().compute_score(gts, res)  # one JVM for all captions
            put("METEOR", total, items)
        else:
            skipped["METEOR"] = "METEOR skipped: needs Java (pycocoevalcap runs meteor-1.5.jar)"
    if "ROUGE_L" in wanted:
        total, items = Rouge().compute_score(gts, res)
        put("ROUGE_L", total, items)
    if "CIDEr" in wanted:
        total, items = Cider().compute_score(gts, res)
        put("CIDEr", total, items)
    if "SPICE" in wanted:
        reason = spice_unavailable_reason()
        if reason:
            skipped["SPICE"] = reason
        else:
            from pycocoevalcap.spice.spice import Spice

            total, items = Spice().compute_score(gts, res)
            put("SPICE", total, [item["All"]["f"] for item in items])


def score(
    references: Mapping[Hashable, Sequence[str]],
    candidates: Mapping[Hashable, str | Sequence[str]],
    metrics: str | Sequence[str] | None = None,
    tokenizer: str = "auto",
    *,
    images: Mapping[Hashable, str | os.PathLike] | None = None,
    clip: str | None = None,
    scenes: Mapping[Hashable, dict] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> Scores:
    """Score candidate captions against references.

    references: {image id: [reference caption, ...]}; candidates: {image id: caption or [caption]}, same ids.
    metrics: names or a comma-separated string (see `resolve_metrics`); None = the default set (no SPICE), plus
    CLIPScore/RefCLIPScore when `images` and `clip` are given and object_f1 when `scenes` is given.
    tokenizer: "auto" (Java when installed), "java" or "python".
    images: {image id: image path} and clip (hub id or local CLIP directory) for CLIPScore/RefCLIPScore;
    scenes: {image id: scene} of the synthetic dataset for object_f1 (captionkit.evaluation.object_f1).
    """
    wanted = resolve_metrics(metrics)
    if metrics is None:
        wanted += list(CLIP_METRICS) if images is not None and clip else []
        wanted += list(OBJECT_METRICS) if scenes is not None else []
    cands = _check_inputs(references, candidates)
    skipped: dict[str, str] = {}
    corpus: dict[str, float] = {}
    per_item: dict[Hashable, dict[str, float]] = {key: {} for key in references}
    coco = [m for m in wanted if m in COCO_METRICS]
    used = "none"  # no text metric asked for: nothing was tokenized
    if coco:
        gts, res, used = _tokenize(references, cands, tokenizer)
        _coco_scores(gts, res, coco, skipped, corpus, per_item)
    clip_wanted = [m for m in wanted if m in CLIP_METRICS]
    if clip_wanted:
        if images is None or not clip:
            raise ConfigError(
                f"{', '.join(clip_wanted)} need images and a CLIP model (e.g. openai/clip-vit-base-patch32)"
            )
        from captionkit.evaluation.clipscore import clip_scores

        clip_result = clip_scores(
            clip,
            {k: images[k] for k in references},
            cands,
            references if "RefCLIPScore" in clip_wanted else None,
            batch_size=batch_size,
            device=device,
        )
        for name in clip_wanted:
            total, items = clip_result[name]
            corpus[name] = total
            for key in references:
                per_item[key][name] = items[key]
    if "object_f1" in wanted:
        if scenes is None:
            raise ConfigError("object_f1 needs the scenes of a synthetic dataset (its scenes.json)")
        from captionkit.evaluation.object_f1 import score_object_f1

        total, items = score_object_f1(scenes, cands)
        corpus["object_f1"] = float(total)
        for key in references:
            per_item[key]["object_f1"] = float(items[key])
    ordered = {m: corpus[m] for m in ALL_METRICS if m in corpus}
    return Scores(corpus=ordered, per_item=per_item, tokenizer=used, skipped=skipped)
