"""Shapes, cached == recomputed decoding, beam reordering and the attention regulariser of the LSTM captioners."""

from __future__ import annotations

import pytest
import torch
from lstm_helpers import BUILDERS, EOS, GRID, VOCAB, batch_of, features_for, merge_model, sat_model

from captionkit.decoding import generate
from captionkit.errors import ConfigError
from captionkit.models.base import IGNORE_INDEX, build_model, caption_loss, uncached_logits
from captionkit.models.show_attend_tell import ShowAttendTellConfig, attention_for, attention_regularizer
from captionkit.models.show_tell import ShowTellMergeConfig
from captionkit.registry import get_model_class

CAPTIONS = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]


@pytest.mark.parametrize("name", BUILDERS)
def test_forward_shapes_and_loss(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    input_ids, labels = batch_of(CAPTIONS)
    out = model({"features": features_for(model, 3), "input_ids": input_ids, "labels": labels})
    assert out.logits.shape == (3, 6, VOCAB)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    no_labels = model({"features": features_for(model, 3), "input_ids": input_ids})
    assert no_labels.loss is None
    torch.testing.assert_close(no_labels.logits, out.logits)


@pytest.mark.parametrize("name", BUILDERS)
def test_registered_and_built_from_plain_config(name):
    model = BUILDERS[name]()
    assert get_model_class(name) is type(model)
    rebuilt = build_model({"type": name, **{k: getattr(model.config, k) for k in vars(model.config)}})
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    assert model.input_kind == "features"


@pytest.mark.parametrize(
    "name, config_class", [("show-tell-merge", ShowTellMergeConfig), ("show-attend-tell", ShowAttendTellConfig)]
)
def test_vocab_size_must_come_from_the_tokenizer(name, config_class):
    with pytest.raises(ConfigError, match="vocab_size is 0"):
        get_model_class(name)(config_class())  # presets leave vocab_size at 0 for config_for_tokenizer to fill


@pytest.mark.parametrize("name", BUILDERS)
def test_logits_do_not_see_later_tokens(name):
    """Teacher forcing in one pass must stay causal: changing token t leaves logits[:, :t+1] unchanged."""
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    feats = features_for(model, 1)
    a = torch.tensor([[5, 6, 7, 8, 2]])
    b = torch.tensor([[5, 6, 9, 9, 2]])
    la, lb = model({"features": feats, "input_ids": a}).logits, model({"features": feats, "input_ids": b}).logits
    torch.testing.assert_close(la[:, :3], lb[:, :3])
    assert not torch.allclose(la[:, 3], lb[:, 3])


@pytest.mark.parametrize("name", BUILDERS)
def test_cached_state_equals_recomputed_at_every_step(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    feats = features_for(model, 3)
    with torch.no_grad():
        logits, state = model.start(feats)
        history = torch.zeros(3, 0, dtype=torch.long)
        for _ in range(7):
            torch.testing.assert_close(logits, uncached_logits(model, feats, history), rtol=1e-5, atol=1e-5)
            # sample rather than argmax so the three rows follow different, non-degenerate paths
            tokens = torch.multinomial(logits.softmax(-1), 1, generator=torch.Generator().manual_seed(1))[:, 0]
            history = torch.cat([history, tokens[:, None]], dim=1)
            logits, state = model.step(tokens, state)


@pytest.mark.parametrize("name", BUILDERS)
def test_reorder_state_selects_and_duplicates_rows(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    feats = features_for(model, 3)
    tokens = torch.tensor([5, 6, 7])
    index = torch.tensor([2, 2, 0])
    with torch.no_grad():
        _, state = model.start(feats)
        logits, _ = model.step(tokens[index], model.reorder_state(state, index))
        _, direct_state = model.start(feats[index])
        expected, _ = model.step(tokens[index], direct_state)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(logits[0], logits[1])


def test_attention_weights_are_a_distribution_over_locations():
    torch.manual_seed(0)
    model = sat_model().eval()
    input_ids, labels = batch_of(CAPTIONS)
    out = model({"features": features_for(model, 3), "input_ids": input_ids, "labels": labels})
    attention = out.extras["attention"]
    assert attention.shape == (3, 6, GRID)
    assert (attention >= 0).all()
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, 6))


def test_doubly_stochastic_regulariser_matches_a_direct_computation():
    torch.manual_seed(0)
    lam = 0.7
    model = sat_model(attention_reg=lam).eval()
    input_ids, labels = batch_of(CAPTIONS)
    out = model({"features": features_for(model, 3), "input_ids": input_ids, "labels": labels})
    alpha = out.extras["attention"]
    # by hand: per caption, sum over locations of (1 - attention summed over its real words)^2; as the loss is a
    # mean over words, the per-caption sums are divided by the number of words (4 + 6 + 2 = 12, EOS included)
    lengths = [len(c) + 1 for c in CAPTIONS]
    total = 0.0
    for i, n in enumerate(lengths):
        for loc in range(GRID):
            total += (1.0 - sum(alpha[i, t, loc].item() for t in range(n))) ** 2
    expected_reg = total / sum(lengths)
    assert attention_regularizer(alpha, labels).item() == pytest.approx(expected_reg, rel=1e-5)
    assert out.extras["attention_reg"].item() == pytest.approx(expected_reg, rel=1e-5)
    expected_loss = caption_loss(out.logits, labels).item() + lam * expected_reg
    assert out.loss.item() == pytest.approx(expected_loss, rel=1e-5)
    # padding positions are not part of any caption's coverage
    labels_padded = labels.clone()
    labels_padded[0, 1:] = IGNORE_INDEX
    assert attention_regularizer(alpha, labels_padded).item() != pytest.approx(expected_reg, rel=1e-3)


def test_attention_for_generated_captions_matches_the_decoding_steps():
    torch.manual_seed(0)
    model = sat_model().eval()
    feats = features_for(model, 2)
    generated = [[5, 6, 7], [8]]
    weights = attention_for(model, feats, generated)
    assert [w.shape for w in weights] == [(3, GRID), (1, GRID)]
    # the weights each decoding step uses: the step reading <bos>, then 5, then 6
    with torch.no_grad():
        state = model.initial_state(model.encode(feats[:1]))
        steps = []
        for token in [model.config.bos_token_id, 5, 6]:
            _, alpha, state = model.advance(model.embedding(torch.tensor([token])), state)
            steps.append(alpha[0])
    torch.testing.assert_close(weights[0], torch.stack(steps))


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    for model in (merge_model(dropout=0.5), sat_model(dropout=0.5)):
        input_ids, _ = batch_of(CAPTIONS)
        batch = {"features": features_for(model, 3), "input_ids": input_ids}
        model.train()
        assert not torch.equal(model(batch).logits, model(batch).logits)
        model.eval()
        assert torch.equal(model(batch).logits, model(batch).logits)


@pytest.mark.parametrize("name", BUILDERS)
def test_beam_search_through_the_state_equals_recomputation(name):
    """captionkit.decoding drives start/step/reorder_state; with use_cache=False it recomputes every prefix."""
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    feats = features_for(model, 3)
    cached = generate(model, feats, EOS, num_beams=3, max_new_tokens=6, min_new_tokens=2)
    assert cached == generate(model, feats, EOS, num_beams=3, max_new_tokens=6, min_new_tokens=2, use_cache=False)
    assert cached == [
        generate(model, feats[i : i + 1], EOS, num_beams=3, max_new_tokens=6, min_new_tokens=2)[0] for i in range(3)
    ]
    assert generate(model, feats, EOS, num_beams=1, max_new_tokens=6) == generate(model, feats, EOS, max_new_tokens=6)


@pytest.mark.parametrize("name", BUILDERS)
def test_features_of_the_wrong_shape_are_refused_with_the_expected_shape(name):
    model = BUILDERS[name]()
    input_ids, _ = batch_of(CAPTIONS)
    with pytest.raises(ValueError, match=r"expects \(B, .*got image features of shape \(3, 7\)"):
        model({"features": torch.randn(3, 7), "input_ids": input_ids})


@pytest.mark.parametrize("name", BUILDERS)
def test_feature_norm_normalises_each_feature_vector(name):
    model = BUILDERS[name](feature_norm=True)
    normed = model.encode(features_for(model, 3) * 3.0 + 5.0)
    torch.testing.assert_close(normed.mean(-1), torch.zeros(normed.shape[:-1]), atol=1e-3, rtol=0)
    torch.testing.assert_close(normed.std(-1, unbiased=False), torch.ones(normed.shape[:-1]), atol=1e-3, rtol=0)


def test_concat_merge_is_causal_caches_like_recomputation_and_differs_from_add():
    """merge="concat" (Tanti et al. 2018): the dense layer reads [LSTM output, image]; decoding step by step must
    equal one teacher-forced pass, and an unknown merge is refused by name."""
    torch.manual_seed(0)
    model = merge_model(merge="concat").eval()
    assert model.head[0].in_features == 2 * model.config.hidden_dim
    feats = features_for(model, 2)
    history = torch.tensor([[5, 6, 7], [8, 9, 10]])
    with torch.no_grad():
        logits, state = model.start(feats)
        for t in range(history.shape[1]):
            torch.testing.assert_close(logits, uncached_logits(model, feats, history[:, :t]), rtol=1e-5, atol=1e-5)
            logits, state = model.step(history[:, t], state)
        other_image = model({"features": features_for(model, 2, seed=1), "input_ids": history}).logits
    assert not torch.allclose(other_image, model({"features": feats, "input_ids": history}).logits)
    with pytest.raises(ConfigError, match="model.merge: 'multiply'"):
        merge_model(merge="multiply")


def test_a_learned_initial_state_reads_the_image_only_through_attention():
    """init_state="learned": every image starts from the same LSTM state, so the first word's attention is the same
    for every image and only what it reads differs; cached decoding still equals recomputation."""
    torch.manual_seed(0)
    model = sat_model(init_state="learned").eval()
    assert not hasattr(model, "init_h")
    feats = features_for(model, 2)
    history = torch.tensor([[5, 6, 7], [8, 9, 10]])
    with torch.no_grad():
        first = model.initial_state(feats)
        torch.testing.assert_close(first["h"][0], first["h"][1])  # one state for both images before any word
        logits, state = model.start(feats)
        for t in range(history.shape[1]):
            torch.testing.assert_close(logits, uncached_logits(model, feats, history[:, :t]), rtol=1e-5, atol=1e-5)
            logits, state = model.step(history[:, t], state)
    input_ids, labels = batch_of(CAPTIONS)
    model({"features": features_for(model, 3), "input_ids": input_ids, "labels": labels}).loss.backward()
    assert model.h0.grad is not None and model.h0.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="model.init_state='zero'"):
        sat_model(init_state="zero")
