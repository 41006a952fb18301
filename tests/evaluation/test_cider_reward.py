"""The batched CIDEr-D reward equals pycocoevalcap's CIDEr-D (same document frequencies) on the Flickr8k captions."""

from __future__ import annotations

import random

import numpy as np
import pytest

from captionkit.evaluation import ptb_tokenizer
from captionkit.evaluation.cider_reward import CiderD


def candidate_sets(fixture_captions: dict[str, list[str]], n: int = 400) -> tuple[dict, list[dict]]:
    """References (captions 2-5 of n images) and three candidate sets (one candidate per image each): the image's
    own first caption, another image's caption, a shuffled caption with repeated and never-seen words; a few
    hand-made edge cases replace some of them."""
    ids = sorted(k for k in fixture_captions if len(fixture_captions[k]) == 5)[:n]
    refs = {k: fixture_captions[k][1:] for k in ids}
    rng = random.Random(0)
    own = {k: fixture_captions[k][0] for k in ids}
    other = {k: fixture_captions[ids[(i + 7) % n]][0] for i, k in enumerate(ids)}
    noisy = {}
    for k in ids:
        words = fixture_captions[k][0].split()
        rng.shuffle(words)
        noisy[k] = " ".join(words[:3] + words + ["qwzx", "qwzx", words[0]])
    edge = ["", "dog", "... !", "A DOG , a Dog ; a dog .", "zebra zebra zebra unicorn", fixture_captions[ids[5]][2]]
    for key, caption in zip(ids[: len(edge)], edge):
        noisy[key] = caption
    return refs, [own, other, noisy]


def pycocoevalcap_cider(refs: dict, cands: dict) -> np.ndarray:
    """pycocoevalcap's Cider on PTB-tokenized captions: document frequencies from `refs`, as ours."""
    from pycocoevalcap.cider.cider import Cider

    gts = ptb_tokenizer.tokenize(refs)
    res = dict(zip(cands, ptb_tokenizer.tokenize_lines(list(cands.values()))))
    _, items = Cider().compute_score(gts, {k: [res[k]] for k in gts})
    return np.asarray(items, dtype=np.float64)


def test_per_item_values_equal_pycocoevalcap(fixture_captions):
    refs, sets = candidate_sets(fixture_captions)
    reward = CiderD(refs)
    for cands in sets:
        expected = pycocoevalcap_cider(refs, cands)
        ours = reward(list(cands), list(cands.values()))
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
        assert expected.max() > 0.5  # the sets are not trivially all zero


def test_a_mixed_batch_with_repeated_images_scores_each_caption_as_alone(fixture_captions):
    """K samples per image in one call, images in any order: each value is the one pycocoevalcap gives that caption
    in its own evaluation (document frequencies come from all references, not from the batch)."""
    refs, sets = candidate_sets(fixture_captions)
    expected = [pycocoevalcap_cider(refs, cands) for cands in sets]
    keys = list(refs)
    rng = random.Random(1)
    batch = [(rng.randrange(len(keys)), rng.randrange(len(sets))) for _ in range(64)]
    batch += [(3, 0), (3, 1), (3, 2)]  # one image, three samples
    ours = CiderD(refs)([keys[i] for i, _ in batch], [sets[s][keys[i]] for i, s in batch])
    np.testing.assert_allclose(ours, [expected[s][i] for i, s in batch], rtol=0, atol=1e-6)


def test_pretokenized_input_and_errors(fixture_captions):
    refs, (own, *_) = candidate_sets(fixture_captions, n=20)
    tokenized = CiderD(ptb_tokenizer.tokenize(refs), tokenized=True)
    lines = ptb_tokenizer.tokenize_lines(list(own.values()))
    np.testing.assert_allclose(tokenized(list(own), lines), CiderD(refs)(list(own), list(own.values())), atol=1e-12)
    with pytest.raises(ValueError, match="has no references"):
        tokenized(["not-an-image"], ["a dog"])
    with pytest.raises(ValueError, match="2 image ids for 1 candidates"):
        tokenized(list(own)[:2], ["a dog"])
    assert tokenized([], []).shape == (0,)
