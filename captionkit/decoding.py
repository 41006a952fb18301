"""Caption decoding written once over the model step interface: greedy, beam search and sampling, with a KV cache."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from captionkit.errors import ConfigError
from captionkit.models.base import CaptionModel, uncached_logits
from captionkit.models.precision import floating_dtype

BEAM_SCORINGS = ("default", "clipcap")
NEG_INF = float("-inf")


# DecodingConfig's fields a caller may set per request (CLI flags, server form fields, Captioner options).
DECODING_OPTIONS = (
    "num_beams",
    "max_new_tokens",
    "min_new_tokens",
    "length_penalty",
    "beam_scoring",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "seed",
)


@dataclass
class DecodingConfig:
    """How captions are decoded (written beside evaluation results as decoding.json).

    num_beams=1 without sampling is greedy search. Beam search scoring:
    - "default" (Hugging Face style): a finished caption scores sum(log p) / len ** length_penalty, len = generated
      tokens including EOS; `early_stopping` as in transformers: False stops an image once its best running beam,
      scored at the current length, cannot beat its worst of num_beams finished captions; True stops as soon as
      num_beams captions have finished; "never" uses the exact bound (the longest length when length_penalty > 0).
    - "clipcap": the original ClipCap search (rmokady/CLIP_prefix_caption): beams ranked by average log-prob, a beam
      that emits EOS is frozen, an image stops when all its beams have; length_penalty and early_stopping unused.
    """

    num_beams: int = 1
    do_sample: bool = False
    max_new_tokens: int = 30
    min_new_tokens: int = 0  # EOS is masked until this many tokens have been generated
    length_penalty: float = 1.0
    beam_scoring: str = "default"
    early_stopping: bool | str = False
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1.0: no nucleus filter
    repetition_penalty: float = 1.0  # CTRL-style: a generated token's logit is divided by it (if > 0) or multiplied
    seed: int | None = None  # sampling seed; None draws from torch's global generator
    use_cache: bool = True  # False: recompute the whole sequence every step (the reference path)

    def __post_init__(self) -> None:
        checks = [
            (self.num_beams >= 1, "num_beams must be >= 1"),
            (self.max_new_tokens >= 0, "max_new_tokens must be >= 0"),
            (0 <= self.min_new_tokens <= self.max_new_tokens, "min_new_tokens must be in [0, max_new_tokens]"),
            (self.beam_scoring in BEAM_SCORINGS, f"beam_scoring must be one of {list(BEAM_SCORINGS)}"),
            (self.early_stopping in (True, False, "never"), "early_stopping must be true, false or 'never'"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.top_k >= 0, "top_k must be >= 0 (0 disables it)"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.repetition_penalty > 0, "repetition_penalty must be > 0"),
            (not (self.do_sample and self.num_beams > 1), "do_sample works with num_beams=1 only"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"decoding: {message} (got {dataclasses.asdict(self)})")

    def replace(self, **overrides: Any) -> DecodingConfig:
        """A copy with `overrides` applied; an unknown name is an error that lists the valid ones."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"decoding: unknown option(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **overrides)


@dataclass
class BeamSearchOutput:
    sequences: list[list[int]]  # best caption per image, ids without EOS
    beams: list[list[list[int]]]  # every image's num_beams captions, best first
    scores: list[list[float]]  # their scores under the scoring used (best first)


def generate(
    model: CaptionModel,
    features: Tensor,
    eos_token_id: int | None,
    config: DecodingConfig | None = None,
    **overrides: Any,
) -> list[list[int]]:
    """Caption ids (without EOS) for each row of `features` (B, *feature_shape), decoded as `config` says."""
    config = (config or DecodingConfig()).replace(**overrides)
    common = dict(
        max_new_tokens=config.max_new_tokens,
        min_new_tokens=config.min_new_tokens,
        temperature=config.temperature,
        repetition_penalty=config.repetition_penalty,
        use_cache=config.use_cache,
    )
    if config.do_sample:
        return sample(model, features, eos_token_id, top_k=config.top_k, top_p=config.top_p, seed=config.seed, **common)
    if config.num_beams == 1:
        return greedy_search(model, features, eos_token_id, **common)
    return beam_search(
        model,
        features,
        eos_token_id,
        num_beams=config.num_beams,
        length_penalty=config.length_penalty,
        early_stopping=config.early_stopping,
        beam_scoring=config.beam_scoring,
        **common,
    ).sequences


def caption_targets(
    ids: list[list[int]], eos_token_id: int, pad_token_id: int, max_new_tokens: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Decoded ids (without EOS, as every function here returns them) -> (N, T) ids to score with the model's
    forward, EOS appended where the caption ended with it, padded; and (N, T) float mask, 1 on those tokens.

    A caption of max_new_tokens ids was cut at the limit, not ended: it gets no EOS (stopping was never chosen)."""
    rows = [list(seq) + ([eos_token_id] if len(seq) < max_new_tokens else []) for seq in ids]
    width = max([1] + [len(r) for r in rows])
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1.0
    return input_ids.to(device), mask.to(device)


@contextlib.contextmanager
def _decoding(model: CaptionModel) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd while decoding; the model's train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


class _Stepper:
    """Feeds tokens to the model: through its cache (start/step/reorder_state) or, with use_cache=False, by
    recomputing the whole sequence from `forward` each step (the reference the cache is tested against)."""

    def __init__(self, model: CaptionModel, features: Tensor, use_cache: bool) -> None:
        self.model, self.use_cache = model, use_cache
        # float features follow the model's dtype (a bfloat16 model reads bfloat16); scores are fp32 after the logits
        self.features = features.to(floating_dtype(model)) if features.is_floating_point() else features
        self.history = torch.zeros(features.size(0), 0, dtype=torch.long, device=features.device)  # (N, t)
        self.state: Any = None

    def start(self) -> Tensor:
        if self.use_cache:
            logits, self.state = self.model.start(self.features)
            return logits
        return uncached_logits(self.model, self.features, self.history)

    def step(self, tokens: Tensor) -> Tensor:
        if self.use_cache:
            logits, self.state = self.model.step(tokens, self.state)
            return logits
        self.history = torch.cat([self.history, tokens[:, None]], dim=1)
        return uncached_logits(self.model, self.features, self.history)

    def select(self, index: Tensor) -> None:
        """Keep/duplicate rows: row i becomes old row index[i] (beam reordering, dropping finished rows)."""
        if self.use_cache:
            self.state = self.model.reorder_state(self.state, index)
        else:
            self.features = self.features.index_select(0, index)
            self.history = self.history.index_select(0, index)


def _eos(eos_token_id: int | None, vocab_size: int) -> int | None:
    """The EOS id, or None when stopping is disabled (None or a negative id, e.g. for fixed-length benchmarks)."""
    if eos_token_id is None or eos_token_id < 0:
        return None
    if eos_token_id >= vocab_size:
        raise ConfigError(
            f"decoding: eos_token_id {eos_token_id} is outside the model's vocabulary "
            f"(size {vocab_size}); pass the tokenizer's eos_token_id"
        )
    return eos_token_id


def _next_token_scores(
    logits: Tensor,
    t: int,
    eos: int | None,
    min_new_tokens: int,
    temperature: float,
    repetition_penalty: float,
    history: Tensor | None,
) -> Tensor:
    """(N, V) logits for token t -> fp32 scores: repetition penalty, EOS masked before min_new_tokens, temperature.

    Every operation is out of place: the model's logits tensor is never modified.
    """
    scores = logits.float()
    if repetition_penalty != 1.0 and history is not None and history.size(1) > 0:
        seen = scores.gather(1, history)
        seen = torch.where(seen < 0, seen * repetition_penalty, seen / repetition_penalty)
        scores = scores.scatter(1, history, seen)
    if eos is not None and t < min_new_tokens:
        scores = scores.index_fill(1, torch.tensor([eos], device=scores.device), NEG_INF)
    if temperature != 1.0:
        scores = scores / temperature
    return scores


def _filter_top_k_top_p(scores: Tensor, top_k: int, top_p: float) -> Tensor:
    """Set to -inf every token outside the top_k best and outside the smallest set holding top_p of the mass."""
    if 0 < top_k < scores.size(-1):
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, NEG_INF)
    if top_p < 1.0:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass (the best one always stays)
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)
        scores = scores.masked_fill(drop, NEG_INF)
    return scores


def _row_search(
    model: CaptionModel,
    features: Tensor,
    eos_token_id: int | None,
    max_new_tokens: int,
    min_new_tokens: int,
    temperature: float,
    repetition_penalty: float,
    use_cache: bool,
    pick: Callable[[Tensor], Tensor],
) -> list[list[int]]:
    """One caption per row, `pick` choosing each next token from (N, V) scores; a row that emits EOS is dropped
    from the batch so later steps only compute the rows still running."""
    batch = features.size(0)
    if max_new_tokens == 0:
        return [[] for _ in range(batch)]
    device = features.device
    out = torch.zeros(batch, max_new_tokens, dtype=torch.long, device=device)
    lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)  # image index of each running row
    stepper = _Stepper(model, features, use_cache)
    logits = stepper.start()
    eos = _eos(eos_token_id, logits.size(-1))
    for t in range(max_new_tokens):
        history = out[rows, :t] if repetition_penalty != 1.0 else None
        tokens = pick(_next_token_scores(logits, t, eos, min_new_tokens, temperature, repetition_penalty, history))
        out[rows, t] = tokens
        if eos is not None:
            ended = tokens == eos
            if bool(ended.any()):
                lengths[rows[ended]] = t
                keep = (~ended).nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                rows, tokens = rows[keep], tokens[keep]
                stepper.select(keep)
        if t + 1 < max_new_tokens:
            logits = stepper.step(tokens)
    return [row[:n].tolist() for row, n in zip(out, lengths.tolist())]


def greedy_search(
    model: CaptionModel,
    features: Tensor,
    eos_token_id: int | None,
    *,
    max_new_tokens: int = 30,
    min_new_tokens: int = 0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.0,
    use_cache: bool = True,
) -> list[list[int]]:
    """The most likely next token at every step, all images decoded as one batch; ids without EOS."""
    with _decoding(model):
        return _row_search(
            model,
            features,
            eos_token_id,
            max_new_tokens,
            min_new_tokens,
            temperature,
            repetition_penalty,
            use_cache,
            pick=lambda scores: scores.argmax(dim=-1),
        )


def sample(
    model: CaptionModel,
    features: Tensor,
    eos_token_id: int | None,
    *,
    max_new_tokens: int = 30,
    min_new_tokens: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """Each next token drawn from softmax(logits / temperature) restricted to the top_k / top_p set.

    With a seed the draws come from a private torch.Generator, so the same call gives the same captions.
    """
    generator = None
    if seed is not None:
        generator = torch.Generator(device=features.device)
        generator.manual_seed(seed)

    def pick(scores: Tensor) -> Tensor:
        probs = _filter_top_k_top_p(scores, top_k, top_p).softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    with _decoding(model):
        return _row_search(
            model,
            features,
            eos_token_id,
            max_new_tokens,
            min_new_tokens,
            temperature,
            repetition_penalty,
            use_cache,
            pick,
        )


def beam_search(
    model: CaptionModel,
    features: Tensor,
    eos_token_id: int | None,
    *,
    num_beams: int = 5,
    max_new_tokens: int = 30,
    min_new_tokens: int = 0,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    beam_scoring: str = "default",
    temperature: float = 1.0,
    repetition_penalty: float = 1.0,
    use_cache: bool = True,
) -> BeamSearchOutput:
    """Beam search over all images at once: every step is one model call on (images x num_beams) rows.

    Scoring as in DecodingConfig. An image whose search is over leaves the batch.
    """
    if beam_scoring not in BEAM_SCORINGS or num_beams < 1:
        raise ConfigError(
            f"decoding: beam_scoring must be one of {list(BEAM_SCORINGS)} and num_beams >= 1, got "
            f"{beam_scoring!r} and {num_beams}"
        )
    with _decoding(model):
        search = _BeamSearch(
            model,
            features,
            eos_token_id,
            num_beams,
            max_new_tokens,
            min_new_tokens,
            length_penalty,
            early_stopping,
            beam_scoring == "clipcap",
            temperature,
            repetition_penalty,
            use_cache,
        )
        return search.run()


class _BeamSearch:
    """State of one batched beam search; tensors are (n, K, ...) over the n images still searching."""

    def __init__(
        self,
        model: CaptionModel,
        features: Tensor,
        eos_token_id: int | None,
        num_beams: int,
        max_new_tokens: int,
        min_new_tokens: int,
        length_penalty: float,
        early_stopping: bool | str,
        clipcap: bool,
        temperature: float,
        repetition_penalty: float,
        use_cache: bool,
    ) -> None:
        self.model, self.features, self.eos_token_id = model, features, eos_token_id
        self.K, self.max_new, self.min_new = num_beams, max_new_tokens, min_new_tokens
        self.length_penalty, self.early_stopping, self.clipcap = length_penalty, early_stopping, clipcap
        self.temperature, self.repetition_penalty, self.use_cache = temperature, repetition_penalty, use_cache
        batch, device, K = features.size(0), features.device, num_beams
        # results per image (all B images), best first: ids (EOS excluded), their lengths, scores
        self.final_seqs = torch.zeros(batch, K, max(max_new_tokens, 1), dtype=torch.long, device=device)
        self.final_lens = torch.zeros(batch, K, dtype=torch.long, device=device)
        self.final_scores = torch.full((batch, K), NEG_INF, device=device)

    def run(self) -> BeamSearchOutput:
        batch = self.features.size(0)
        if self.max_new > 0:
            self._search()
        seqs, lens, scores = self.final_seqs.tolist(), self.final_lens.tolist(), self.final_scores.tolist()
        beams = [[s[:n] for s, n in zip(seqs[i], lens[i])] for i in range(batch)]
        return BeamSearchOutput(sequences=[b[0] for b in beams], beams=beams, scores=scores)

    def _search(self) -> None:
        K, max_new, device = self.K, self.max_new, self.features.device
        images = torch.arange(self.features.size(0), device=device)  # original index of each searching image
        stepper = _Stepper(self.model, self.features, self.use_cache)
        logits = stepper.start()  # (B, V): every beam of an image starts from the same state
        vocab = logits.size(-1)
        eos = _eos(self.eos_token_id, vocab)
        expand = images.repeat_interleave(K)
        stepper.select(expand)
        logits = logits.index_select(0, expand)  # (B*K, V)
        n = images.numel()
        # only beam 0 is live at the first step, so the K copies cannot all pick the same token
        scores = torch.full((n, K), NEG_INF, device=device)
        scores[:, 0] = 0.0
        lengths = torch.zeros(n, K, device=device)  # clipcap: tokens counted per beam (frozen at EOS)
        stopped = torch.zeros(n, K, dtype=torch.bool, device=device)  # clipcap: beams that emitted EOS
        seqs = torch.zeros(n, K, max_new, dtype=torch.long, device=device)
        # a beam's candidates share its score and length, so only its best `width` tokens can rank among the
        # image's best K (clipcap) or 2K (default) continuations: ranking runs on (n, K, width), not (n, K, V)
        width = min(K if self.clipcap else 2 * K, vocab)
        for t in range(max_new):
            history = seqs[:, :, :t].reshape(n * K, t) if self.repetition_penalty != 1.0 else None
            logp, cand = _top_log_probs(
                _next_token_scores(logits, t, eos, self.min_new, self.temperature, self.repetition_penalty, history),
                width,
            )
            logp, cand = logp.view(n, K, width), cand.view(n, K, width)
            if self.clipcap:
                seqs, src, tokens, scores, lengths, stopped, done = self._clipcap_step(
                    logp, cand, seqs, scores, lengths, stopped, t, eos
                )
                self._store_clipcap(images, seqs, scores, lengths, stopped, final=t + 1 == max_new)
            else:
                seqs, src, tokens, scores, done = self._default_step(logp, cand, seqs, scores, t, eos, images)
            if t + 1 == max_new or bool(done.all()):
                return
            keep = (~done).nonzero().squeeze(1)  # images still searching
            rows = (keep[:, None] * K + src[keep]).reshape(-1)  # (n'*K,) source row of each next beam
            images, scores, seqs, tokens = images[keep], scores[keep], seqs[keep], tokens[keep]
            lengths, stopped = lengths[keep], stopped[keep]
            n = images.numel()
            stepper.select(rows)
            logits = stepper.step(tokens.reshape(-1))

    def _default_step(
        self, logp: Tensor, cand: Tensor, seqs: Tensor, scores: Tensor, t: int, eos: int | None, images: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Hugging Face style step: of the 2K best continuations, those ending (EOS, or the length limit) among the
        top K join the finished captions; the best K others continue. logp, cand: (n, K, width) candidates."""
        n, K, width = logp.shape
        length = t + 1  # generated tokens, EOS included
        total = (scores[:, :, None] + logp).view(n, K * width)
        top, index = total.topk(min(2 * K, K * width), dim=-1)  # (n, 2K) best first
        src, tokens = index // width, cand.view(n, K * width).gather(1, index)
        cand_seqs = _extend(seqs, src, tokens, t)
        is_eos = tokens == eos if eos is not None else torch.zeros_like(tokens, dtype=torch.bool)
        ending = is_eos | (length == self.max_new)
        rank_ok = torch.arange(top.size(1), device=top.device) < K  # HF: only the top K may finish
        finished = torch.where(ending & rank_ok, top / length**self.length_penalty, NEG_INF)
        self._merge_final(images, finished, cand_seqs, torch.where(is_eos, t, length))
        running, pick = top.masked_fill(ending, NEG_INF).topk(K, dim=-1)
        seqs = cand_seqs.gather(1, pick[:, :, None].expand(-1, -1, cand_seqs.size(2)))
        worst = self.final_scores[images, -1]  # -inf until K captions have finished
        if self.early_stopping is True:
            done = worst > NEG_INF
        else:
            best_len = self.max_new if (self.early_stopping == "never" and self.length_penalty > 0) else length
            done = running[:, 0] / best_len**self.length_penalty <= worst
        return seqs, src.gather(1, pick), tokens.gather(1, pick), running, done

    def _merge_final(self, images: Tensor, scores: Tensor, seqs: Tensor, lens: Tensor) -> None:
        """Keep each image's K best finished captions among the stored ones and the new candidates."""
        all_scores = torch.cat([self.final_scores[images], scores], dim=1)
        best, pick = all_scores.topk(self.K, dim=-1)
        width = self.final_seqs.size(2)
        all_seqs = torch.cat([self.final_seqs[images], seqs[:, :, :width]], dim=1)
        self.final_seqs[images] = all_seqs.gather(1, pick[:, :, None].expand(-1, -1, width))
        self.final_lens[images] = torch.cat([self.final_lens[images], lens], dim=1).gather(1, pick)
        self.final_scores[images] = best

    def _clipcap_step(
        self,
        logp: Tensor,
        cand: Tensor,
        seqs: Tensor,
        scores: Tensor,
        lengths: Tensor,
        stopped: Tensor,
        t: int,
        eos: int | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The original ClipCap step: K best continuations by average log-prob over all beams' candidates; a
        stopped beam offers only itself (score and length unchanged). logp, cand: (n, K, width) candidates."""
        n, K, width = logp.shape
        if eos is not None and bool(stopped.any()):
            frozen = torch.full((width,), NEG_INF, device=logp.device)
            frozen[0] = 0.0  # the one candidate of a stopped beam: itself, emitting EOS again at no cost
            logp = torch.where(stopped[:, :, None], frozen, logp)
            cand = cand.masked_fill(stopped[:, :, None], eos)
        new_len = lengths + (~stopped).float()
        average = (scores[:, :, None] + logp) / new_len[:, :, None]
        top, index = average.view(n, K * width).topk(K, dim=-1)
        src, tokens = index // width, cand.view(n, K * width).gather(1, index)
        lengths = new_len.gather(1, src)
        scores = top * lengths  # the original keeps sums as average * length
        stopped = stopped.gather(1, src)
        if eos is not None:
            stopped = stopped | (tokens == eos)
        return _extend(seqs, src, tokens, t), src, tokens, scores, lengths, stopped, stopped.all(dim=1)

    def _store_clipcap(
        self, images: Tensor, seqs: Tensor, scores: Tensor, lengths: Tensor, stopped: Tensor, final: bool
    ) -> None:
        """Record the beams of images whose search ends now (all stopped, or the last step), sorted by average."""
        ending = stopped.all(dim=1) | final
        if not bool(ending.any()):
            return
        average = scores[ending] / lengths[ending]
        order = average.argsort(dim=1, descending=True)
        lens = lengths[ending].long() - stopped[ending].long()  # ids kept: EOS excluded
        width = self.final_seqs.size(2)
        done_images = images[ending]
        self.final_seqs[done_images] = seqs[ending].gather(1, order[:, :, None].expand(-1, -1, width))
        self.final_lens[done_images] = lens.gather(1, order)
        self.final_scores[done_images] = average.gather(1, order)


def _top_log_probs(scores: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """(N, V) scores -> the `width` best tokens of each row and their log-softmax values, both (N, width), without
    writing the (N, V) log-softmax."""
    top, tokens = scores.topk(width, dim=-1)
    return top - torch.logsumexp(scores, dim=-1, keepdim=True), tokens


def _extend(seqs: Tensor, src: Tensor, tokens: Tensor, t: int) -> Tensor:
    """(n, K, L) ids -> (n, C, L) ids of C continuations: source beam `src`'s ids with `tokens` (n, C) at t."""
    out = seqs.gather(1, src[:, :, None].expand(-1, -1, seqs.size(2)))
    out[:, :, t] = tokens
    return out
