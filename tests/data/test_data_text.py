"""Caption text: normalisation, the word vocabulary, training ids + EOS, padding with -100; real GPT-2 BPE."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from captionkit.data.text import collate_captions, encode_for_training, normalize_caption
from captionkit.errors import ModelDirError
from captionkit.models.base import IGNORE_INDEX, TextTokenizer
from captionkit.models.tokenizers import WordVocab, word_tokenize
from captionkit.registry import get_tokenizer_class


def test_normalize_caption_options():
    text = "  A  Dog's\tball, red!  ."
    assert normalize_caption(text) == "A Dog's ball, red! ."
    assert normalize_caption(text, lowercase=True) == "a dog's ball, red! ."
    assert normalize_caption(text, strip_punctuation=True) == "A Dog s ball red"
    assert normalize_caption("A dog runs .", final_period=False) == "A dog runs"
    assert normalize_caption("A dog runs.", final_period=True) == "A dog runs ."
    assert normalize_caption("A dog runs", final_period=True) == "A dog runs ."
    assert normalize_caption("A  dog", collapse_whitespace=False) == "A  dog"


def test_word_tokenize():
    assert word_tokenize("A man's dog , running .") == ["a", "man's", "dog", "running"]
    assert word_tokenize("a racer 's motorbike") == ["a", "racer", "'s", "motorbike"]
    assert word_tokenize("Café au lait !") == ["café", "au", "lait"]
    assert word_tokenize(" . , ' ") == []


def test_word_vocab_build_ids_and_round_trip(tmp_path):
    vocab = WordVocab.build(["A dog runs .", "a dog sits", "The cat"], min_count=2)
    assert vocab.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "dog"]
    assert (vocab.pad_token_id, vocab.bos_token_id, vocab.eos_token_id, vocab.unk_token_id) == (0, 1, 2, 3)
    assert vocab.vocab_size == len(vocab) == 6
    assert vocab.encode("A dog barks .") == [4, 5, 3]
    assert vocab.decode([1, 4, 5, 3, 2, 0, 0]) == "a dog <unk>"
    assert vocab.tokenizer_type == "word" and get_tokenizer_class("word") is WordVocab
    assert isinstance(vocab, TextTokenizer)
    vocab.save_pretrained(tmp_path / "model")
    data = json.loads((tmp_path / "model" / "vocab.json").read_text())
    assert data["tokens"] == vocab.itos and data["tokenizer_type"] == "word"
    loaded = WordVocab.from_pretrained(tmp_path / "model")
    assert loaded.itos == vocab.itos and loaded.encode("a dog") == [4, 5] and loaded.min_count == 2


def test_word_vocab_order_is_deterministic():
    captions = ["b a c", "c b", "c"]
    assert WordVocab.build(captions).itos[4:] == ["c", "b", "a"]
    assert WordVocab.build(reversed(captions)).itos == WordVocab.build(captions).itos
    assert WordVocab.build(captions, max_size=2).itos[4:] == ["c", "b"]


def test_word_vocab_from_train_split_only(fixture_token):
    ds = fixture_token.dataset
    train_words = {w for r in ds.split("train") for c in r.captions for w in word_tokenize(c)}
    test_only = sorted({w for r in ds.split("test") for c in r.captions for w in word_tokenize(c)} - train_words)
    assert test_only  # the real test split has words train never uses
    vocab = WordVocab.build([c for r in ds.split("train") for c in r.captions], min_count=5)
    assert test_only[0] not in vocab.stoi
    assert vocab.encode(test_only[0]) == [vocab.unk_token_id]
    counts = {}
    for r in ds.split("train"):
        for c in r.captions:
            for w in word_tokenize(c):
                counts[w] = counts.get(w, 0) + 1
    assert set(vocab.itos[4:]) == {w for w, n in counts.items() if n >= 5}


def test_from_pretrained_rejects_other_files(tmp_path):
    with pytest.raises(ModelDirError, match="vocab.json: not a word vocabulary"):
        WordVocab.from_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"tokens": ["a", "b"]}))
    with pytest.raises(ModelDirError, match="must be distinct strings starting"):
        WordVocab.from_pretrained(tmp_path)


def test_encode_for_training_appends_eos_and_truncates_keeping_it():
    vocab = WordVocab.build(["one two three four five"])
    assert encode_for_training(vocab, "one two three", 10) == [*vocab.encode("one two three"), 2]
    assert encode_for_training(vocab, "one two three four five", 3) == [*vocab.encode("one two"), 2]
    assert encode_for_training(vocab, "one two", 1) == [2]
    with pytest.raises(ValueError, match="max_length"):
        encode_for_training(vocab, "one", 0)


def test_collate_pads_inputs_and_masks_labels():
    input_ids, labels = collate_captions([[5, 6, 2], [7, 2], [2]], pad_token_id=0)
    assert input_ids.dtype == labels.dtype == torch.long
    assert input_ids.tolist() == [[5, 6, 2], [7, 2, 0], [2, 0, 0]]
    assert labels.tolist() == [[5, 6, 2], [7, 2, IGNORE_INDEX], [2, IGNORE_INDEX, IGNORE_INDEX]]


class GPT2Wrapper:
    """A tiny stand-in for the "gpt2" tokenizer of models/hf.py, over the real GPT-2 BPE files."""

    tokenizer_type: ClassVar[str] = "gpt2-test"

    def __init__(self, directory: Path) -> None:
        from transformers import GPT2TokenizerFast

        # positional: in transformers 5 the keyword form (vocab_file=, merges_file=) silently builds an empty vocabulary
        self.tok = GPT2TokenizerFast(str(directory / "vocab.json"), str(directory / "merges.txt"))
        self.eos_token_id = self.tok.eos_token_id
        self.pad_token_id = self.tok.eos_token_id
        self.vocab_size = len(self.tok)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def save_pretrained(self, directory: str) -> None:
        self.tok.save_pretrained(directory)


def test_gpt2_keeps_flickr_trailing_period_and_appends_eos(gpt2_tokenizer_dir):
    tok = GPT2Wrapper(gpt2_tokenizer_dir)
    assert tok.eos_token_id == 50256
    caption = "A dog runs through the grass ."
    ids = encode_for_training(tok, caption, 40)
    assert ids[-1] == 50256
    assert tok.tok.convert_ids_to_tokens(ids[-2]) == "Ġ."  # " ." is its own token, not the "." of "grass."
    assert ids[-2] != tok.tok.encode(".")[0]
    assert tok.decode(ids) == caption
    short = encode_for_training(tok, caption, 4)
    assert len(short) == 4 and short[-1] == 50256 and short[:3] == ids[:3]
    input_ids, labels = collate_captions([ids, short], tok.pad_token_id)
    assert input_ids.shape == labels.shape == (2, len(ids))
    assert input_ids[1, 4:].eq(50256).all() and labels[1, 4:].eq(IGNORE_INDEX).all()
    assert labels[0].tolist() == ids  # a real EOS is a label; only padding is ignored


def test_encode_for_training_with_the_registered_gpt2_tokenizer(gpt2_tokenizer_dir):
    from captionkit.errors import UnknownNameError

    try:
        cls = get_tokenizer_class("gpt2")
    except UnknownNameError:
        pytest.skip("the gpt2 tokenizer (models/hf.py) is not registered in this checkout")
    tok = cls.from_pretrained(str(gpt2_tokenizer_dir))
    reference = GPT2Wrapper(gpt2_tokenizer_dir)
    caption = "Two dogs play in the snow ."
    assert encode_for_training(tok, caption, 30) == encode_for_training(reference, caption, 30)
    assert encode_for_training(tok, caption, 30)[-2:] == [764, 50256]  # " ." then EOS


@pytest.mark.parametrize(
    ("raw", "tidy"),
    [
        ("a dog , running .", "a dog, running."),
        ("two red circles", "two red circles."),
        ("a man 's hat . .", "a man's hat."),
        ("is it ?", "is it?"),
        ("  a   dog .", "a dog."),
        ("", ""),
    ],
)
def test_tidy_caption_detokenises_and_ends_in_one_period(raw, tidy):
    from captionkit.data.text import tidy_caption

    assert tidy_caption(raw) == tidy
