"""Decoding paths that must agree: cached == uncached, beam size 1 == greedy, batched == one image at a time."""

from __future__ import annotations

import pytest
import torch
from decoding_toys import EOS, toy_features

from captionkit.decoding import beam_search, generate

MAX = 12
SETTINGS = {
    "greedy": {},
    "greedy-min-penalty": {"min_new_tokens": 3, "repetition_penalty": 1.3},
    "beam": {"num_beams": 3},
    "beam-lp0-never": {"num_beams": 4, "length_penalty": 0.0, "early_stopping": "never"},
    "beam-early": {"num_beams": 3, "early_stopping": True, "min_new_tokens": 2},
    "beam-clipcap": {"num_beams": 3, "beam_scoring": "clipcap"},
    "beam-clipcap-temp": {"num_beams": 5, "beam_scoring": "clipcap", "temperature": 0.7, "repetition_penalty": 1.2},
    "sample": {"do_sample": True, "seed": 3},
    "sample-topk-topp": {"do_sample": True, "seed": 4, "top_k": 5, "top_p": 0.8, "temperature": 1.5},
}


def test_toy_captions_end_at_varied_lengths(toy_model):
    # precondition of the tests below: some captions stop at EOS, others run to the limit
    lengths = {len(ids) for ids in generate(toy_model, toy_features(8), EOS, max_new_tokens=MAX)}
    assert MAX in lengths and len(lengths) >= 3


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_cached_equals_uncached(toy_model, name):
    features = toy_features(8)
    cached = generate(toy_model, features, EOS, max_new_tokens=MAX, **SETTINGS[name])
    uncached = generate(toy_model, features, EOS, max_new_tokens=MAX, use_cache=False, **SETTINGS[name])
    assert cached == uncached


@pytest.mark.parametrize("scoring", ["default", "clipcap"])
def test_cached_equals_uncached_for_every_beam_and_score(toy_model, scoring):
    features = toy_features(5)
    kwargs = dict(num_beams=4, max_new_tokens=MAX, beam_scoring=scoring)
    cached = beam_search(toy_model, features, EOS, **kwargs)
    uncached = beam_search(toy_model, features, EOS, use_cache=False, **kwargs)
    assert cached.beams == uncached.beams
    torch.testing.assert_close(torch.tensor(cached.scores), torch.tensor(uncached.scores))


def test_beam_size_one_equals_greedy_without_eos(toy_model):
    features = toy_features(8)
    greedy = generate(toy_model, features, -1, max_new_tokens=MAX)
    assert all(len(ids) == MAX for ids in greedy)  # EOS disabled: every caption runs to the limit
    assert beam_search(toy_model, features, -1, num_beams=1, max_new_tokens=MAX).sequences == greedy


@pytest.mark.parametrize(
    "extra", [{"early_stopping": True}, {"beam_scoring": "clipcap"}], ids=["early-stopping", "clipcap"]
)
def test_beam_size_one_equals_greedy_with_eos(toy_model, extra):
    # a single beam that stops at its first EOS is greedy search (with early_stopping=False the default scoring
    # may keep searching past the first EOS for a longer caption with a better length-normalised score)
    features = toy_features(8)
    greedy = generate(toy_model, features, EOS, max_new_tokens=MAX)
    beam = beam_search(toy_model, features, EOS, num_beams=1, max_new_tokens=MAX, **extra).sequences
    assert beam == greedy


@pytest.mark.parametrize("name", [n for n in sorted(SETTINGS) if not n.startswith("sample")])
def test_batched_equals_one_at_a_time(toy_model, name):
    features = toy_features(8)
    batched = generate(toy_model, features, EOS, max_new_tokens=MAX, **SETTINGS[name])
    single = [
        generate(toy_model, features[i : i + 1], EOS, max_new_tokens=MAX, **SETTINGS[name])[0]
        for i in range(len(features))
    ]
    assert batched == single


@pytest.mark.parametrize("scoring", ["default", "clipcap"])
def test_batched_beam_search_keeps_each_images_beams_and_scores(toy_model, scoring):
    features = toy_features(6)
    batched = beam_search(toy_model, features, EOS, num_beams=3, max_new_tokens=MAX, beam_scoring=scoring)
    for i in range(len(features)):
        single = beam_search(toy_model, features[i : i + 1], EOS, num_beams=3, max_new_tokens=MAX, beam_scoring=scoring)
        assert batched.beams[i] == single.beams[0]
        assert batched.scores[i] == pytest.approx(single.scores[0], abs=1e-6)
        assert batched.scores[i] == sorted(batched.scores[i], reverse=True)
