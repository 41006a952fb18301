"""Text tokenizers of the captioning models that are not GPT-2's (that one lives in the transformers seam,
`captionkit.models.hf`): the LSTM models' word vocabulary, built from the train captions."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from captionkit.errors import ModelDirError
from captionkit.registry import register_tokenizer

VOCAB_NAME = "vocab.json"
_WORD = re.compile(r"[\w']+")


def word_tokenize(text: str) -> list[str]:
    """Lowercased words for the word vocabulary: letters/digits/apostrophes; punctuation is dropped.

    "A man's dog ." -> ["a", "man's", "dog"]; Flickr8k's split possessive "man 's" -> ["man", "'s"].
    """
    return [t for t in _WORD.findall(text.lower()) if t.strip("'")]


@register_tokenizer("word")
class WordVocab:
    """A word vocabulary built from the train captions only (the LSTM models' tokenizer).

    Ids: <pad>=0 <bos>=1 <eos>=2 <unk>=3, then words by decreasing count (ties alphabetical, so the same
    captions always give the same ids). Saved as vocab.json in a model directory.
    """

    tokenizer_type: ClassVar[str]
    SPECIALS: ClassVar[tuple[str, ...]] = ("<pad>", "<bos>", "<eos>", "<unk>")
    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 2
    unk_token_id = 3

    def __init__(self, words: Sequence[str], min_count: int = 1) -> None:
        """`words`: the vocabulary in id order after the four special tokens."""
        self.itos: list[str] = [*self.SPECIALS, *words]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("WordVocab: repeated word in the vocabulary")
        self.min_count = min_count

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, max_size: int | None = None) -> WordVocab:
        """Words seen at least `min_count` times in `captions` (pass the train split only), at most `max_size`."""
        counts = Counter(w for caption in captions for w in word_tokenize(caption))
        words = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in cls.SPECIALS), key=lambda w: (-counts[w], w)
        )
        return cls(words[:max_size] if max_size is not None else words, min_count=min_count)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Ids of the caption's words (no <bos>/<eos>); unknown words -> <unk>."""
        return [self.stoi.get(w, self.unk_token_id) for w in word_tokenize(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Words joined by spaces; <pad>/<bos>/<eos> dropped, <unk> kept so a reader sees the gap."""
        skip = (self.pad_token_id, self.bos_token_id, self.eos_token_id)
        return " ".join(self.itos[i] if 0 <= i < len(self.itos) else "<unk>" for i in map(int, ids) if i not in skip)

    def save_pretrained(self, directory: str | Path) -> None:
        path = Path(directory) / VOCAB_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"tokenizer_type": "word", "min_count": self.min_count, "tokens": self.itos}
        path.write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> WordVocab:
        """Load vocab.json from a model directory (or the file itself)."""
        path = Path(directory)
        path = path / VOCAB_NAME if path.is_dir() else path
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
            tokens = data["tokens"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _vocab_error(path, str(exc)) from exc
        if not (
            isinstance(tokens, list)
            and all(isinstance(t, str) for t in tokens)
            and tuple(tokens[:4]) == cls.SPECIALS
            and len(set(tokens)) == len(tokens)
        ):
            raise _vocab_error(path, f"'tokens' must be distinct strings starting {list(cls.SPECIALS)}")
        return cls(tokens[4:], min_count=int(data.get("min_count", 1)))


def _vocab_error(path: Path, why: str) -> Exception:
    return ModelDirError(f"{path}: not a word vocabulary written by captionkit ({why})")
