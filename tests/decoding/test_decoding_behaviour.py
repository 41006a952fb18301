"""What each decoding option does, on scripted bigram models whose caption probabilities are known by hand."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from decoding_toys import EOS, bigram, make_toy, one_hot, toy_features

from captionkit.config import from_dict, to_dict
from captionkit.decoding import DecodingConfig, beam_search, generate, greedy_search, sample
from captionkit.errors import ConfigError

A, B, C, D, X, Y = 2, 3, 4, 5, 6, 7  # token ids (EOS is 1)


def test_greedy_stops_at_eos_and_finished_rows_leave_the_batch():
    model = bigram([{A: 1.0}, {B: 1.0}], {A: {EOS: 1.0}, B: {B: 1.0}})
    ids = greedy_search(model, one_hot([0, 1], 2), EOS, max_new_tokens=5)
    assert ids == [[A], [B] * 5]  # EOS itself is not returned
    assert model.step_rows == [2, 1, 1, 1]  # image 0 stopped after its EOS: later steps compute one row


def test_beam_search_images_leave_the_batch_when_their_search_is_over():
    model = bigram([{A: 0.5, C: 0.5}, {B: 1.0}], {A: {EOS: 1.0}, C: {EOS: 1.0}, B: {B: 1.0}})
    out = beam_search(model, one_hot([0, 1], 2), EOS, num_beams=2, max_new_tokens=5, early_stopping=True)
    assert sorted(out.beams[0]) == [[A], [C]]
    assert out.sequences[1] == [B] * 5
    assert model.step_rows == [4, 2, 2, 2]  # image 0 had its 2 finished captions after 2 tokens


@pytest.mark.parametrize(
    "options",
    [{}, {"num_beams": 3}, {"num_beams": 3, "beam_scoring": "clipcap"}, {"do_sample": True, "seed": 0}],
    ids=["greedy", "beam", "clipcap", "sample"],
)
def test_min_new_tokens_masks_eos_until_reached(options):
    model = bigram({A: 0.9, EOS: 0.1}, {A: {EOS: 0.9, A: 0.1}})
    assert generate(model, one_hot([0], 1), EOS, max_new_tokens=6, **options) in ([[]], [[A]])
    out = generate(model, one_hot([0, 0, 0, 0], 1), EOS, max_new_tokens=6, min_new_tokens=3, **options)
    assert all(3 <= len(ids) <= 6 for ids in out)
    assert [A, A, A] in out or options.get("do_sample")


def test_max_new_tokens_bounds_every_caption(toy_model):
    for options in ({}, {"num_beams": 3}, {"do_sample": True, "seed": 1}):
        assert all(len(ids) <= 4 for ids in generate(toy_model, toy_features(6), -1, max_new_tokens=4, **options))
    assert generate(toy_model, toy_features(2), EOS, max_new_tokens=0, num_beams=2) == [[], []]


def test_beam_search_finds_a_caption_greedy_misses():
    # greedy takes A (0.6) then at best 0.34; B (0.4) then D (0.9) is more likely overall
    model = bigram({A: 0.6, B: 0.4}, {A: {X: 0.34, Y: 0.33, C: 0.33}, B: {D: 0.9, EOS: 0.1}})
    features = one_hot([0], 1)
    assert generate(model, features, -1, max_new_tokens=2) == [[A, X]]
    out = beam_search(model, features, -1, num_beams=2, max_new_tokens=2, length_penalty=0.0)
    assert out.sequences == [[B, D]]
    assert out.scores[0][0] == pytest.approx(math.log(0.4 * 0.9), abs=1e-6)


# [A] EOS has the best total log-prob; B C C C C (cut at 5 tokens) the best average per token
LENGTH_MODEL = ({A: 0.6, B: 0.4}, {A: {EOS: 0.55, C: 0.45}, B: {C: 0.9, EOS: 0.1}, C: {C: 0.9, EOS: 0.1}})
SHORT_SUM = math.log(0.6 * 0.55)
LONG_SUM = math.log(0.4 * 0.9**4)
A_LONG_SUM = math.log(0.6 * 0.45 * 0.9**3)  # A C C C C


@pytest.mark.parametrize("early_stopping", [False, "never"])
def test_length_penalty_trades_total_log_prob_for_length(early_stopping):
    model = bigram(*LENGTH_MODEL)
    features = one_hot([0], 1)
    kwargs = dict(num_beams=2, max_new_tokens=5, early_stopping=early_stopping)
    plain = beam_search(model, features, EOS, length_penalty=0.0, **kwargs)
    assert plain.sequences == [[A]] and plain.scores[0][0] == pytest.approx(SHORT_SUM, abs=1e-6)
    normalised = beam_search(model, features, EOS, length_penalty=1.0, **kwargs)
    assert normalised.sequences == [[B, C, C, C, C]]
    # score = sum log p / len ** length_penalty, len counting EOS ([A] EOS has length 2)
    assert normalised.beams[0] == [[B, C, C, C, C], [A, C, C, C, C]]
    assert normalised.scores[0] == pytest.approx([LONG_SUM / 5, A_LONG_SUM / 5], abs=1e-6)
    assert SHORT_SUM / 2 < A_LONG_SUM / 5


def test_clipcap_scoring_ranks_by_average_log_prob_and_freezes_finished_beams():
    model = bigram(*LENGTH_MODEL)
    out = beam_search(model, one_hot([0], 1), EOS, num_beams=2, max_new_tokens=5, beam_scoring="clipcap")
    # at step 2 [A] EOS (average -0.55) beat A C (-0.65); it stayed in its slot, frozen, so A C C C C never came
    assert out.beams[0] == [[B, C, C, C, C], [A]]
    assert out.scores[0] == pytest.approx([LONG_SUM / 5, SHORT_SUM / 2], abs=1e-6)
    assert model.step_rows == [2, 2, 2, 2]  # the search runs on while one beam is still open


def test_clipcap_search_ends_when_all_beams_stopped():
    model = bigram({A: 0.6, B: 0.4}, {A: {EOS: 1.0}, B: {EOS: 1.0}})
    out = beam_search(model, one_hot([0], 1), EOS, num_beams=2, max_new_tokens=8, beam_scoring="clipcap")
    assert out.beams[0] == [[A], [B]]
    assert model.step_rows == [2]


def test_sampling_is_reproducible_with_a_seed(toy_model):
    features = toy_features(8)
    first = generate(toy_model, features, EOS, max_new_tokens=10, do_sample=True, seed=7)
    assert generate(toy_model, features, EOS, max_new_tokens=10, do_sample=True, seed=7) == first
    others = [generate(toy_model, features, EOS, max_new_tokens=10, do_sample=True, seed=s) for s in (8, 9)]
    assert any(o != first for o in others)
    torch.manual_seed(0)  # seed=None draws from torch's global generator
    unseeded = generate(toy_model, features, EOS, max_new_tokens=10, do_sample=True)
    torch.manual_seed(0)
    assert generate(toy_model, features, EOS, max_new_tokens=10, do_sample=True) == unseeded


@pytest.mark.parametrize("options", [{"top_k": 1}, {"top_p": 1e-6}, {"top_k": 1, "temperature": 5.0}])
def test_sampling_with_one_candidate_is_greedy(toy_model, options):
    features = toy_features(8)
    greedy = generate(toy_model, features, EOS, max_new_tokens=10)
    for seed in (0, 1):
        assert generate(toy_model, features, EOS, max_new_tokens=10, do_sample=True, seed=seed, **options) == greedy


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, {A: 0.5, B: 0.3, C: 0.2}),
        ({"top_k": 2}, {A: 0.5 / 0.8, B: 0.3 / 0.8}),
        ({"top_p": 0.6}, {A: 0.5 / 0.8, B: 0.3 / 0.8}),  # A alone holds 0.5 < 0.6, so B joins; C is outside
        ({"top_p": 0.4}, {A: 1.0}),
        ({"temperature": 0.5}, {A: 0.25 / 0.38, B: 0.09 / 0.38, C: 0.04 / 0.38}),  # p ** 2, renormalised
    ],
)
def test_sampled_frequencies_follow_the_filtered_distribution(options, expected):
    model = bigram({A: 0.5, B: 0.3, C: 0.2}, {})
    n = 4000
    ids = sample(model, one_hot([0] * n, 1), EOS, max_new_tokens=1, seed=0, **options)
    counts = Counter(row[0] for row in ids)
    assert set(counts) == set(expected)
    for tok, p in expected.items():
        assert counts[tok] / n == pytest.approx(p, abs=0.03)


def test_repetition_penalty_discourages_repeats():
    model = bigram({A: 1.0}, {A: {A: 0.6, B: 0.4}, B: {A: 0.6, B: 0.4}})
    assert generate(model, one_hot([0], 1), -1, max_new_tokens=3) == [[A, A, A]]
    assert generate(model, one_hot([0], 1), -1, max_new_tokens=3, repetition_penalty=2.0)[0][1] == B


def test_decoding_restores_the_models_training_mode(toy_model):
    toy_model.train()
    generate(toy_model, toy_features(2), EOS, max_new_tokens=3, num_beams=2)
    assert toy_model.training


@pytest.mark.parametrize(
    "bad",
    [
        {"num_beams": 0},
        {"top_p": 0.0},
        {"temperature": 0.0},
        {"min_new_tokens": 40},
        {"beam_scoring": "hf"},
        {"do_sample": True, "num_beams": 2},
        {"top_k": -1},
        {"early_stopping": "sometimes"},
    ],
)
def test_invalid_settings_are_refused_with_the_reason(bad):
    with pytest.raises(ConfigError, match="decoding:"):
        DecodingConfig(**bad)


def test_generate_refuses_unknown_options_and_eos_outside_the_vocabulary():
    model = make_toy("gru")
    with pytest.raises(ConfigError, match="unknown option.*num_beam"):
        generate(model, toy_features(1), EOS, num_beam=3)
    with pytest.raises(ConfigError, match="eos_token_id 99"):
        generate(model, toy_features(1), 99)


def test_decoding_config_round_trips_through_plain_data():
    config = DecodingConfig(num_beams=5, beam_scoring="clipcap", early_stopping="never", seed=3)
    assert from_dict(DecodingConfig, to_dict(config)) == config
    assert generate(make_toy("gru"), toy_features(3), EOS, config, max_new_tokens=4) == generate(
        make_toy("gru"), toy_features(3), EOS, num_beams=5, beam_scoring="clipcap", max_new_tokens=4
    )
