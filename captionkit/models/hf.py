"""The transformers seam: every GPT-2 and CLIP call of captionkit lives here (transformers' API moves between
versions)."""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from captionkit.errors import ConfigError, UnknownNameError
from captionkit.models.encoders import ImageEncoder
from captionkit.pretrained import packaged_path
from captionkit.registry import register_encoder, register_tokenizer

PACKAGED_PREFIX = "captionkit:"  # `captionkit:tiny-gpt2` names captionkit/presets/hf/tiny-gpt2.json
EOS_TOKEN = "<|endoftext|>"  # GPT-2's end-of-text token (id 50256 in the real vocabulary)
INIT_SEED = 0  # models built from a bare config are seeded: the same spec always gives the same weights


# ----------------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class HFSource:
    """Where a transformers model comes from: a hub id or local directory (`from_pretrained`, one code path for
    both), or an architecture config (a `.json` file or a packaged tiny config) for a seeded random init."""

    text: str  # as the user wrote it
    config: dict[str, Any] | None = None  # set for config sources

    @property
    def is_config(self) -> bool:
        return self.config is not None


def packaged_configs() -> list[str]:
    """Names of the tiny configs shipped in captionkit/presets/hf (usable as `captionkit:NAME`)."""
    folder = resources.files("captionkit.presets").joinpath("hf")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def resolve_source(source: str) -> HFSource:
    """`captionkit:NAME` or `PATH.json` -> a config source; shipped weights (captionkit/pretrained) and anything
    else -> a hub id or directory."""
    shipped = packaged_path("clip", source)
    if shipped is not None:
        return HFSource(str(shipped))
    if source.startswith(PACKAGED_PREFIX):
        name = source[len(PACKAGED_PREFIX) :]
        if name not in packaged_configs():
            raise UnknownNameError(
                f"unknown packaged config {source!r}; valid: "
                f"{', '.join(PACKAGED_PREFIX + n for n in packaged_configs())}"
            )
        text = resources.files("captionkit.presets").joinpath("hf", f"{name}.json").read_text(encoding="utf-8")
        return HFSource(source, json.loads(text))
    if source.endswith(".json"):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(
                f"{source}: config file not found (a .json source is an architecture config for a "
                "randomly initialised model; give a hub id or a directory for pretrained weights)"
            )
        try:
            return HFSource(source, json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from exc
    return HFSource(source)


_WEIGHTS_FOLLOW: ContextVar[bool] = ContextVar("captionkit_weights_follow", default=False)


@contextmanager
def weights_follow() -> Iterator[None]:
    """Inside: transformers models built from a config skip their random initialisation, because weights are
    loaded into every parameter right after (a model directory's safetensors, checked for missing keys). Measured:
    a GPT-2 124M builds in ~0.05 s instead of ~3-10 s (benchmarks/results/cold_start.md)."""
    token = _WEIGHTS_FOLLOW.set(True)
    try:
        yield
    finally:
        _WEIGHTS_FOLLOW.reset(token)


def _seeded(build: Any, *args: Any) -> Any:
    """Build a module from the seeded RNG without disturbing the caller's RNG state (inside `weights_follow`:
    uninitialised, its tied weights tied)."""
    if _WEIGHTS_FOLLOW.get():
        try:  # transformers 5
            from transformers.initialization import no_init_weights
        except ImportError:  # transformers 4
            from transformers.modeling_utils import no_init_weights
        with no_init_weights():
            model = build(*args)
        model.tie_weights()  # init_weights ties GPT-2's LM head to its token embedding; no_init_weights skips it
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        return build(*args)


HUB_PROBE_TIMEOUT_S = 3.0  # one TCP connect: a reachable hub answers in well under this


@cache
def _hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached (None when it can, or when offline mode is set): probed once per
    process with one TCP connection, so an offline machine fails at once instead of after ~25 s of retries."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None  # transformers then reads the local cache only, without network calls
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{url.hostname}:{port} {exc.strerror or type(exc).__name__}"


def _from_pretrained(cls: Any, source: str, what: str, **kwargs: Any) -> Any:
    if not Path(source).exists():  # a hub id: a directory never needs the network
        unreachable = _hub_unreachable()
        if unreachable is not None:
            try:  # a model already in the local hub cache still loads
                return cls.from_pretrained(source, local_files_only=True, **kwargs)
            except OSError:
                raise ConfigError(
                    f"{what} {source!r}: the Hugging Face hub cannot be reached ({unreachable}) and {source!r} is "
                    "not in the local hub cache. Pass a local directory written by save_pretrained, or set "
                    "HF_HUB_OFFLINE=1 to use only the cache"
                ) from None
    try:
        return cls.from_pretrained(source, **kwargs)
    except OSError as exc:  # not a directory, not on the hub, or offline
        reason = " ".join(str(exc).split())  # one line: the CLI prints user errors as one line
        raise ConfigError(
            f"{what} {source!r}: cannot load ({reason}). Give a local directory written by "
            "save_pretrained, a hub id (needs network or the hub cache), a config .json, or "
            f"one of {', '.join(PACKAGED_PREFIX + n for n in packaged_configs())}"
        ) from None


# ----------------------------------------------------------------------------------------------------- GPT-2
def gpt2_architecture(source: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full GPT-2 config dict of `source` without loading weights (`config` wins when given)."""
    from transformers import GPT2Config

    if config is None:
        src = resolve_source(source)
        config = src.config if src.is_config else gpt2_config_dict(_from_pretrained(GPT2Config, source, "GPT-2"))
    return gpt2_config_dict(GPT2Config(**config))


def gpt2_config_dict(model_or_config: Any) -> dict[str, Any]:
    """JSON-ready full GPT-2 config (a model directory stores it so it rebuilds without the hub; every field is
    written, so a later transformers with other defaults rebuilds the same architecture)."""
    config = getattr(model_or_config, "config", model_or_config)
    return json.loads(config.to_json_string(use_diff=False))


def load_gpt2(source: str, pretrained: bool = True, config: dict[str, Any] | None = None) -> nn.Module:
    """GPT-2 LM (`GPT2LMHeadModel`) from a hub id or directory (its weights when `pretrained`), or a seeded random
    init from a config .json / packaged config. `config` (a stored architecture) is used whenever no weights are
    loaded, so a saved model rebuilds without the hub or the original .json."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if pretrained and not resolve_source(source).is_config:
        return _from_pretrained(GPT2LMHeadModel, source, "GPT-2")
    return _seeded(GPT2LMHeadModel, GPT2Config(**gpt2_architecture(source, config)))


def gpt2_modules(model: nn.Module) -> list[nn.Module]:
    """The GPT-2 language models inside `model` (ClipCap's decoder), outermost first; [] for other families."""
    from transformers import GPT2LMHeadModel

    return [m for m in model.modules() if isinstance(m, GPT2LMHeadModel)]


def conv1d_to_linear(model: nn.Module) -> nn.Module:
    """Replace transformers' Conv1D layers (GPT-2's x @ W + b with W stored (in, out)) by equal nn.Linear layers
    (weight (out, in)), in place, so torch's quantization, which knows nn.Linear only, covers them."""
    from transformers.pytorch_utils import Conv1D

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                linear = nn.Linear(child.nx, child.nf, device=child.weight.device, dtype=child.weight.dtype)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.T)
                    linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
    return model


def gpt2_embedding_size(model: nn.Module) -> int:
    return int(model.config.n_embd)


def gpt2_vocab_size(model: nn.Module) -> int:
    return int(model.config.vocab_size)


def gpt2_embed(model: nn.Module, input_ids: Tensor) -> Tensor:
    """(B, T) token ids -> (B, T, E) input embeddings (GPT-2's `wte`, tied to the LM head)."""
    return model.get_input_embeddings()(input_ids)


def gpt2_logits(model: nn.Module, hidden: Tensor) -> Tensor:
    """(..., E) final hidden states -> (..., V) next-token logits."""
    return model.get_output_embeddings()(hidden)


@cache
def _cache_kwarg(model_cls: type) -> str:
    """transformers 5 renames `past_key_values` to `cache`: use whichever this version's forward takes."""
    params = inspect.signature(model_cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def gpt2_hidden(
    model: nn.Module, inputs_embeds: Tensor, attention_mask: Tensor | None = None, cache: Any = None
) -> tuple[Tensor, Any]:
    """Run GPT-2's transformer on (B, T, E) embeddings -> ((B, T, E) final hidden states, cache).

    With `cache` (from `new_kv_cache`) the keys/values of these positions are appended to it, in place, and
    positions continue after the cached ones; without it nothing is cached (training). `attention_mask` (B, past+T)
    is 1 for real positions, 0 for padding.
    """
    body = model.transformer  # GPT2Model: hidden states only, the LM head runs on the positions that need it
    kwargs = {_cache_kwarg(type(body)): cache} if cache is not None else {}
    out = body(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        use_cache=cache is not None,
        return_dict=True,
        **kwargs,
    )
    new_cache = out.cache if hasattr(out, "cache") else out.past_key_values
    return out.last_hidden_state, new_cache


def new_kv_cache(model: nn.Module) -> Any:
    """An empty key/value cache for `gpt2_hidden` (a transformers DynamicCache)."""
    from transformers import DynamicCache

    if "config" in inspect.signature(DynamicCache.__init__).parameters:
        return DynamicCache(config=model.config)
    return DynamicCache()


def reorder_kv_cache(cache: Any, index: Tensor) -> Any:
    """Row i of the result is row index[i] of `cache` (beam search: select/duplicate rows). Done in place on the
    cache object (no extra copy of the whole cache per step); the returned object is the one to use."""
    cache.reorder_cache(index.to(torch.long))
    return cache


def kv_cache_length(cache: Any) -> int:
    """Number of positions held in the cache."""
    return int(cache.get_seq_length())


# ----------------------------------------------------------------------------------------------------- GPT-2 BPE
@register_tokenizer("gpt2")
class GPT2BPETokenizer:
    """GPT-2's byte-level BPE (the real 50,257-token vocabulary, or a small one trained on captions for tiny
    models). Captions are encoded as GPT-2 does (no prefix space: "A dog ." -> ["A", " dog", " ."]); EOS is
    `<|endoftext|>`; padded *inputs* use EOS (labels use IGNORE_INDEX). Stored as vocab.json + merges.txt."""

    tokenizer_type = "gpt2"

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer  # a transformers GPT2TokenizerFast
        vocab = tokenizer.get_vocab()
        if EOS_TOKEN not in vocab:
            raise ConfigError(f"GPT-2 tokenizer has no {EOS_TOKEN} token; its vocab.json is not a GPT-2 BPE")
        self.eos_token_id = int(vocab[EOS_TOKEN])
        self.bos_token_id = self.eos_token_id  # GPT-2 uses one token for both
        self.pad_token_id = self.eos_token_id
        self.vocab_size = len(tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def save_pretrained(self, directory: str) -> None:
        """Write vocab.json + merges.txt (the files GPT-2 ships, readable by any BPE implementation)."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        self._tok.backend_tokenizer.model.save(str(directory))

    @classmethod
    def from_pretrained(cls, source: str) -> GPT2BPETokenizer:
        """From a directory holding vocab.json + merges.txt, or a hub id."""
        from transformers import GPT2TokenizerFast

        path = Path(source)
        if path.is_dir():
            vocab, merges = path / "vocab.json", path / "merges.txt"
            if not (vocab.is_file() and merges.is_file()):
                raise ConfigError(f"{source}: no GPT-2 tokenizer here (expected vocab.json and merges.txt)")
            return cls(GPT2TokenizerFast(str(vocab), str(merges)))
        return cls(_from_pretrained(GPT2TokenizerFast, source, "GPT-2 tokenizer"))

    @classmethod
    def train(cls, captions: Iterable[str], vocab_size: int) -> GPT2BPETokenizer:
        """A byte-level BPE of at most `vocab_size` tokens learnt from `captions` (deterministic), with GPT-2's
        pre-tokenisation and EOS, so a tiny GPT-2 gets ids < its vocab size that decode to real words."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOS_TOKEN],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(list(captions), trainer)
        with tempfile.TemporaryDirectory() as tmp:  # reload through the same path a saved model dir takes
            tok.model.save(tmp)
            return cls.from_pretrained(tmp)


# ----------------------------------------------------------------------------------------------------- CLIP
def _image_processor_class() -> type:
    try:  # transformers 5: the PIL backend (the default one needs torchvision)
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    except ImportError:  # transformers 4
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


def new_clip_model(config: dict[str, Any]) -> nn.Module:
    """A randomly initialised (seeded) `CLIPModel` from a CLIPConfig dict (text_config, vision_config,
    projection_dim): the starting point of contrastive pretraining on small data."""
    from transformers import CLIPConfig, CLIPModel

    return _seeded(CLIPModel, CLIPConfig(**config))


def new_clip_image_processor(image_size: int) -> Any:
    """CLIP's preprocessing (resize shortest side, centre crop, CLIP mean/std) at `image_size` pixels."""
    return _image_processor_class()(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


def clip_tokenizer(source: str) -> Any:
    """CLIP's BPE tokenizer from a directory (vocab.json + merges.txt, or tokenizer.json) or a hub id."""
    from transformers import CLIPTokenizer

    path = Path(source)
    vocab, merges = path / "vocab.json", path / "merges.txt"
    if vocab.is_file() and merges.is_file():
        # Positionally: in transformers 5 the keyword form silently gives garbage ids.
        return CLIPTokenizer(str(vocab), str(merges))
    return _from_pretrained(CLIPTokenizer, source, "CLIP tokenizer")


def load_clip(source: str, tokenizer: str | None = None) -> tuple[nn.Module, Any, Any]:
    """(CLIPModel in eval mode, image processor, tokenizer or None) from a hub id or directory (pretrained) or a
    config .json / `captionkit:tiny-clip` (seeded random init). The tokenizer comes from `tokenizer` when given,
    else from `source` when it is a hub id or a directory with tokenizer files; config sources have none."""
    from transformers import CLIPModel

    src = resolve_source(source)
    if src.is_config:
        model = new_clip_model(src.config)
        processor = new_clip_image_processor(int(model.config.vision_config.image_size))
    else:
        source = src.text  # a shipped name resolves to its folder
        # fp32 whatever the file holds (shipped weights are fp16 on disk to keep the package small)
        model = _load_saved_clip(Path(source))
        if model is None:  # not a directory we wrote: transformers' own loader
            model = _from_pretrained(CLIPModel, source, "CLIP").float()
        processor = _from_pretrained(_image_processor_class(), source, "CLIP image processor")
    tok = clip_tokenizer(tokenizer) if tokenizer is not None else load_clip_tokenizer(source)
    return model.eval(), processor, tok


def _load_saved_clip(directory: Path) -> nn.Module | None:
    """A CLIPModel from a directory in save_pretrained's single-file layout, built uninitialised and its
    safetensors copied straight in (as fp32). None for anything else (a hub id, sharded or .bin weights, key names
    of another transformers version): from_pretrained handles those. Why: from_pretrained spends ~0.3 s per load
    on key-conversion machinery a directory we wrote never needs, a tenth of a one-image `caption`."""
    config_file, weights = directory / "config.json", directory / "model.safetensors"
    if not (config_file.is_file() and weights.is_file()):
        return None
    from safetensors.torch import load_file
    from transformers import CLIPConfig, CLIPModel

    with weights_follow():
        model = _seeded(CLIPModel, CLIPConfig.from_json_file(str(config_file)))
    incompatible = model.load_state_dict(load_file(str(weights)), strict=False)
    if incompatible.missing_keys or incompatible.unexpected_keys:
        return None
    return model


def load_clip_tokenizer(source: str) -> Any:
    """The tokenizer of a CLIP hub id or directory with tokenizer files; None for a config source (no files)."""
    if not resolve_source(source).is_config and (not Path(source).is_dir() or _has_tokenizer_files(Path(source))):
        return clip_tokenizer(source)
    return None


def _has_tokenizer_files(path: Path) -> bool:
    return (path / "tokenizer.json").is_file() or (path / "vocab.json").is_file()


def save_clip(directory: str | Path, model: nn.Module, image_processor: Any, tokenizer: Any = None) -> Path:
    """Write a CLIP directory that `load_clip` and the `clip:DIR` encoder read back (save_pretrained layout)."""
    directory = Path(directory)
    model.save_pretrained(str(directory))
    image_processor.save_pretrained(str(directory))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return directory


def clip_tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[Tensor, Tensor]:
    """Texts -> (input_ids, attention_mask), both (B, L), padded to the longest and cut at `max_length`."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def clip_preprocess(image_processor: Any, image: Image.Image) -> Tensor:
    """RGB PIL image -> (3, H, W) float pixels (resize, centre crop, CLIP normalisation)."""
    return image_processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]


def _embeds(output: Any) -> Tensor:
    """transformers 5 returns an output object from get_*_features (projection in `.pooler_output`); 4.x a tensor."""
    return output if isinstance(output, Tensor) else output.pooler_output


def clip_image_embeds(model: nn.Module, pixel_values: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, projection_dim) projected image embeddings (not normalised)."""
    return _embeds(model.get_image_features(pixel_values=pixel_values))


def clip_image_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of CLIP's image side: the vision tower and the image projection."""
    return [*model.vision_model.parameters(), *model.visual_projection.parameters()]


def clip_text_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of CLIP's text side and the shared temperature: what LiT trains."""
    return [*model.text_model.parameters(), *model.text_projection.parameters(), model.logit_scale]


def clip_vision_config(model: nn.Module) -> dict[str, Any]:
    """The vision tower's architecture as a CLIPVisionConfig dict (to build another CLIP around the same tower)."""
    return {
        k: v
        for k, v in model.config.vision_config.to_dict().items()
        if k
        in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "image_size",
            "patch_size",
            "num_channels",
            "hidden_act",
            "layer_norm_eps",
            "projection_dim",
        )
    }


def copy_clip_image_side(source: nn.Module, target: nn.Module) -> None:
    """Copy the vision tower and image projection of one CLIPModel into another of the same vision shapes."""
    target.vision_model.load_state_dict(source.vision_model.state_dict())
    target.visual_projection.load_state_dict(source.visual_projection.state_dict())


def clip_contrastive_loss_from_image_embeds(
    model: nn.Module, image_embeds: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None
) -> Tensor:
    """CLIP's symmetric InfoNCE loss with the image embeddings given (a locked image side computes them once):
    cosine similarities scaled by the learnt temperature, pairs on the diagonal."""
    text = nn.functional.normalize(clip_text_embeds(model, input_ids, attention_mask), dim=-1)
    image = nn.functional.normalize(image_embeds, dim=-1)
    logits = model.logit_scale.exp() * image @ text.T  # (B, B) image -> text
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels))


def clip_text_embeds(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """(B, L) CLIP token ids -> (B, projection_dim) projected text embeddings (not normalised)."""
    return _embeds(model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def clip_contrastive_loss(
    model: nn.Module, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None
) -> Tensor:
    """CLIP's symmetric image-text InfoNCE loss over the batch (pairs on the diagonal), with its learnt scale."""
    return model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask, return_loss=True).loss


class CLIPImageEncoder(ImageEncoder):
    """CLIP's projected image embedding (512-d for ViT-B/32), preprocessed by CLIP's own image processor."""

    def __init__(self, source: str, model: nn.Module, image_processor: Any) -> None:
        super().__init__()
        self.spec = f"clip:{source}"
        self.model = model
        self.image_processor = image_processor
        self.feature_shape = (int(model.config.projection_dim),)

    def preprocess(self, image: Image.Image) -> Tensor:
        """RGB PIL image -> (3, H, W) float pixels (resize, centre crop, CLIP normalisation)."""
        return clip_preprocess(self.image_processor, image)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return clip_image_embeds(self.model, pixel_values).float()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "preprocessing": json.loads(self.image_processor.to_json_string())}


@register_encoder("clip")
def clip_encoder(source: str, **options: Any) -> CLIPImageEncoder:
    """`clip:<hub id | dir | config.json | captionkit:tiny-clip>` -> CLIP image encoder."""
    if options:
        raise ConfigError(f"clip encoder: unknown option(s) {sorted(options)}")
    model, processor, _ = load_clip(source, tokenizer=None)
    return CLIPImageEncoder(source, model, processor)


def save_gpt2(directory: str | Path, model: nn.Module) -> Path:
    """Write a GPT-2 LM in the save_pretrained layout (loadable by `load_gpt2(directory)`, like a hub id)."""
    model.save_pretrained(str(directory))
    return Path(directory)
