"""captionkit's metrics reproduce pycocoevalcap exactly (COCOEvalCap's pipeline called directly as the reference).

Java starts are slow (METEOR ~8 s each): one module fixture scores one evaluation set twice (ours, reference) and
every test reads from it.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from captionkit.errors import ConfigError
from captionkit.evaluation import metrics
from captionkit.evaluation.metrics import COCO_METRICS, resolve_metrics, score


def build_case(fixture_captions: dict[str, list[str]], n: int = 150) -> tuple[dict, dict]:
    """n fixture images (first caption = candidate, other four = references) plus hand-made items."""
    ids = sorted(k for k in fixture_captions if len(fixture_captions[k]) == 5)[:n]
    refs = {k: fixture_captions[k][1:] for k in ids}
    cands = {k: fixture_captions[k][0] for k in ids}
    pool = sorted(fixture_captions)[-6:]
    own = fixture_captions[pool[0]]
    special = {
        "self": (own, own[2]),  # a caption scored against references that include it
        "empty": (fixture_captions[pool[1]], ""),
        "one-word": (fixture_captions[pool[2]], "dog"),
        "unicode": (fixture_captions[pool[3]], "Un caf\u00e9 na\u00efve \u2014 \u201cquoted\u201d \U0001f436 dog ."),
        "punctuation-only": (fixture_captions[pool[4]], "... !"),
        42: (["A dog (a big one) can't swim , really ?", "a dog swims"], "A dog can not swim."),
    }
    for key, (r, c) in special.items():
        refs[key], cands[key] = list(r), c
    return refs, cands


def pycocoevalcap_reference(refs: dict, cands: dict) -> tuple[dict, dict]:
    """What pycocoevalcap's COCOEvalCap.evaluate computes (its own tokenizer and scorers, same id order)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": cands[k]}] for k in refs})
    corpus, per_item = {}, {k: {} for k in gts}
    for scorer, names in [
        (Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]),
        (Meteor(), ["METEOR"]),
        (Rouge(), ["ROUGE_L"]),
        (Cider(), ["CIDEr"]),
    ]:
        total, items = (
            scorer.compute_score(gts, res, verbose=0) if names[0] == "Bleu_1" else scorer.compute_score(gts, res)
        )
        totals, itemss = (total, items) if len(names) > 1 else ([total], [items])
        for name, t, its in zip(names, totals, itemss):
            corpus[name] = float(t)
            for key, v in zip(gts, its):
                per_item[key][name] = float(v)
    return corpus, per_item


@pytest.fixture(scope="module")
def scored(need_java, fixture_captions):
    refs, cands = build_case(fixture_captions)
    ours = score(refs, cands)
    return refs, cands, ours, pycocoevalcap_reference(refs, cands)


def test_corpus_scores_equal_pycocoevalcap(scored):
    _, _, ours, (corpus, _) = scored
    assert ours.tokenizer == "ptb-java"
    assert {k: v for k, v in ours.corpus.items()} == corpus
    assert list(ours.corpus) == [m for m in COCO_METRICS if m != "SPICE"]


def test_per_item_scores_equal_pycocoevalcap(scored):
    refs, _, ours, (_, per_item) = scored
    assert list(ours.per_item) == list(refs)
    assert ours.per_item == per_item


def test_spice_runs_or_is_skipped_with_a_reason_only_when_asked_for(scored):
    refs, cands, ours, _ = scored
    assert "SPICE" not in ours.skipped and "SPICE" not in ours.corpus  # the default set has no SPICE
    reason = metrics.spice_unavailable_reason()
    if reason is None:
        pytest.skip("SPICE's jars are installed: running it here would take minutes")
    asked = score(refs, cands, "cider,spice", tokenizer="python")
    assert asked.skipped == {"SPICE": reason} and "\n" not in reason and "SPICE" not in asked.corpus


def test_hand_made_items(scored):
    _, _, ours, _ = scored
    self_item, empty, one = ours.per_item["self"], ours.per_item["empty"], ours.per_item["one-word"]
    assert self_item["Bleu_4"] == pytest.approx(1.0) and self_item["ROUGE_L"] == pytest.approx(1.0)
    assert self_item["METEOR"] > 0.9
    assert empty["ROUGE_L"] == 0 and empty["CIDEr"] == 0 and empty["METEOR"] == 0 and empty["Bleu_1"] < 1e-6
    assert one["Bleu_1"] > 0 and one["Bleu_2"] < 1e-6
    assert ours.per_item["punctuation-only"]["CIDEr"] == 0
    assert ours.per_item[42]["Bleu_1"] > 0.5  # an integer id works like a string one


def test_bleu_corpus_is_not_the_mean_of_per_item_bleu(scored):
    """Documented semantics: corpus BLEU and METEOR come from summed statistics; ROUGE-L and CIDEr are means."""
    _, _, ours, _ = scored
    mean = {m: float(np.mean([v[m] for v in ours.per_item.values()])) for m in ours.corpus}
    assert abs(ours.corpus["Bleu_4"] - mean["Bleu_4"]) > 1e-3
    assert ours.corpus["ROUGE_L"] == pytest.approx(mean["ROUGE_L"], rel=1e-12)
    assert ours.corpus["CIDEr"] == pytest.approx(mean["CIDEr"], rel=1e-12)


def test_candidate_and_reference_order_do_not_matter(scored):
    refs, cands, ours, _ = scored
    rng = random.Random(0)
    keys = list(refs)
    rng.shuffle(keys)
    cand_keys = list(cands)
    rng.shuffle(cand_keys)
    again = score({k: refs[k] for k in keys}, {k: cands[k] for k in cand_keys}, "bleu,rouge,cider")
    for name, value in again.corpus.items():
        assert value == pytest.approx(ours.corpus[name], rel=1e-12)
    for key in refs:
        for name, value in again.per_item[key].items():
            assert value == pytest.approx(ours.per_item[key][name], rel=1e-12, abs=1e-15)


def test_without_java_bleu_rouge_cider_are_unchanged(scored, monkeypatch):
    refs, cands, ours, _ = scored
    monkeypatch.setattr(metrics, "java_available", lambda: False)
    no_java = score(refs, cands)
    assert no_java.tokenizer == "ptb-python"
    assert set(no_java.skipped) == {"METEOR"}
    assert "Java" in no_java.skipped["METEOR"]
    assert no_java.corpus == {k: v for k, v in ours.corpus.items() if k != "METEOR"}
    assert no_java.per_item == {k: {m: s for m, s in v.items() if m != "METEOR"} for k, v in ours.per_item.items()}


def test_python_tokenizer_can_be_forced(scored):
    refs, cands, ours, _ = scored
    forced = score(refs, cands, ["Bleu_4", "CIDEr"], tokenizer="python")
    assert forced.tokenizer == "ptb-python"
    assert forced.corpus == {"Bleu_4": ours.corpus["Bleu_4"], "CIDEr": ours.corpus["CIDEr"]}


def test_metric_names_and_aliases():
    assert resolve_metrics(None) == [m for m in COCO_METRICS if m != "SPICE"] == resolve_metrics("default")
    assert resolve_metrics("fast") == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
    assert resolve_metrics("coco") == list(COCO_METRICS)
    assert resolve_metrics("bleu, cider") == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr"]
    assert resolve_metrics(["rouge_l", "METEOR", "clip"]) == ["ROUGE_L", "METEOR", "CLIPScore", "RefCLIPScore"]
    with pytest.raises(ConfigError, match="unknown metric 'bleurt'.*valid"):
        resolve_metrics("bleurt")


def test_the_result_unpacks_as_corpus_and_per_item():
    corpus, per_item = score({"a": ["a dog runs"]}, {"a": ["a dog runs"]}, ["Bleu_1"], tokenizer="python")
    assert corpus == {"Bleu_1": pytest.approx(1.0)} and per_item == {"a": {"Bleu_1": pytest.approx(1.0)}}


def test_mismatched_ids_and_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="1 reference id.*without a candidate.*'b'"):
        score({"a": ["x"], "b": ["y"]}, {"a": "x"}, ["CIDEr"], tokenizer="python")
    with pytest.raises(ValueError, match="one candidate caption, got 2"):
        score({"a": ["x"]}, {"a": ["x", "y"]}, ["CIDEr"], tokenizer="python")
    with pytest.raises(ValueError, match="non-empty list"):
        score({"a": []}, {"a": "x"}, ["CIDEr"], tokenizer="python")
    with pytest.raises(ConfigError, match="need images and a CLIP"):
        score({"a": ["x"]}, {"a": "x"}, ["CLIPScore"], tokenizer="python")
