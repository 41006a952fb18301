"""CLIP reranking: the candidate with the best (1 - w) * log-prob + w * CLIP-S wins, with the model's own CLIP
(ClipCap) or a named one (VGG family), from Python and from the CLI; a model without a CLIP gets a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import captionkit
from captionkit import rundir
from captionkit.cli import main
from captionkit.decoding import DecodingConfig, beam_search
from captionkit.errors import ConfigError
from captionkit.evaluation.clipscore import clip_scores
from captionkit.inference import rerank as rerank_module
from captionkit.inference.clip_scorer import W
from captionkit.inference.rerank import ClipReranker, RerankConfig, mean_log_probs
from captionkit.models.base import build_model_and_tokenizer
from captionkit.models.model_dir import save_model_dir
from captionkit.registry import get_preset

CAPTIONS = ["A dog runs on the grass .", "Two people walk in the snow .", "A child jumps into a pool ."] * 4


def saved_model(preset: str, out: Path, encoder: str | None = None) -> Path:
    """A preset's model with random weights and a tokenizer of CAPTIONS, saved as a model directory."""
    data = get_preset(preset)
    model, tokenizer = build_model_and_tokenizer(data["model"], CAPTIONS)
    return save_model_dir(out, model, tokenizer, encoder or data["encoder"])


@pytest.fixture(scope="module")
def clipcap_dir(tmp_path_factory, clip_dir) -> Path:
    """A tiny random ClipCap whose encoder is the saved CLIP (tests/conftest.py) (text tower and tokenizer included)."""
    return saved_model("tiny-clipcap-mlp", tmp_path_factory.mktemp("clipcap") / "model", f"clip:{clip_dir}")


@pytest.fixture(scope="module")
def images(flickr8k_fixture: Path) -> list[Path]:
    return sorted((flickr8k_fixture / "Images").glob("*.jpg"))[:2]


class FixedClip:
    """A stand-in CLIPScorer: every image embeds to e0; candidate texts to unit vectors of chosen cosines."""

    def __init__(self, cosines: dict[str, float]) -> None:
        self.cosines = cosines

    def image_embeddings(self, images):
        return torch.tensor([[1.0, 0.0]]).repeat(len(images), 1)

    def text_embeddings(self, texts):
        cos = torch.tensor([self.cosines[t] for t in texts])
        return torch.stack([cos, (1 - cos**2).sqrt()], dim=1)


def test_the_best_combined_score_wins_on_a_constructed_example(clipcap_dir, images, monkeypatch):
    """Three candidates: the model's greedy caption (best log-prob), one CLIP likes most, one in between. w=0 picks
    the first, w=1 the CLIP favourite, and every w picks the argmax of (1 - w) * log-prob + w * CLIP-S."""
    captioner = captionkit.load(str(clipcap_dir), device="cpu")
    tok, model = captioner.tokenizer, captioner.model
    features = captioner.encode(images[:1])
    greedy = captioner.generate(features, max_new_tokens=6)[0]
    liked, middle = tok.encode(" two people walk"), tok.encode(" a dog")
    candidates = [[greedy, liked, middle]]
    texts = [tok.decode(c).strip() for c in candidates[0]]
    cosines = dict(zip(texts, [0.1, 0.9, 0.4]))
    monkeypatch.setattr(rerank_module, "decode_candidates", lambda *args, **kwargs: candidates)
    decoding = DecodingConfig(max_new_tokens=6)
    logp = mean_log_probs(model, features, candidates, tok, decoding.max_new_tokens)
    assert logp[0] > logp[1]  # the example means something: the model and CLIP disagree
    for weight in (0.0, 0.2, 0.5, 0.8, 1.0):
        reranker = ClipReranker(RerankConfig(weight=weight, candidates=3), FixedClip(cosines), False)
        chosen = reranker.choose(model, tok, features, images[:1], decoding)
        combined = (1 - weight) * logp + weight * W * torch.tensor([0.1, 0.9, 0.4])
        assert chosen == [candidates[0][int(combined.argmax())]], weight
        if weight == 0.0:
            assert chosen == [greedy]
        if weight == 1.0:
            assert chosen == [liked]


def test_clipcap_reranks_beams_with_its_own_clip(clipcap_dir, images):
    """w=1: the beam candidate with the highest CLIPScore (computed independently from the image files); w=0: the
    beam search's own best (mean log-prob = its score with length_penalty 1)."""
    captioner = captionkit.load(str(clipcap_dir), device="cpu")
    features = captioner.encode(images)
    beams = beam_search(
        captioner.model, features, captioner.tokenizer.eos_token_id, num_beams=4, max_new_tokens=6
    ).beams
    chosen = captioner.caption(images, rerank="clip", rerank_weight=1.0, rerank_candidates=4, max_new_tokens=6)
    for image, group, caption in zip(images, beams, chosen):
        texts = list(dict.fromkeys(captioner.decode(group)))
        scores = clip_scores(
            captioner.encoder.spec[len("clip:") :], {i: image for i in range(len(texts))}, dict(enumerate(texts))
        )["CLIPScore"][1]
        best = max(scores.values())
        assert caption in [texts[i] for i, s in scores.items() if s == pytest.approx(best, abs=1e-5)]
    plain = captioner.caption(images, num_beams=4, max_new_tokens=6)
    assert captioner.caption(images, rerank="clip", rerank_weight=0.0, rerank_candidates=4, max_new_tokens=6) == plain


def test_vgg_models_need_a_named_clip(tmp_path, clip_dir, images, capsys):
    model_dir = saved_model("tiny-show-tell-merge", tmp_path / "model")
    captioner = captionkit.load(str(model_dir), device="cpu")
    with pytest.raises(ConfigError, match="encoder 'vgg16-small:fc2' has none"):
        captioner.caption(images, rerank="clip")
    out = captioner.caption(
        images,
        rerank="clip",
        rerank_clip=f"clip:{clip_dir}",
        rerank_candidates=3,
        do_sample=True,
        seed=0,
        max_new_tokens=5,
    )
    assert len(out) == 2
    capsys.readouterr()
    assert main(["caption", str(model_dir), str(images[0]), "--rerank", "clip"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CLIP reranking needs a CLIP with a text tower" in err
    jsonl = tmp_path / "captions.jsonl"
    assert (
        main(
            [
                "caption",
                str(model_dir),
                *map(str, images),
                "--rerank",
                "clip",
                "--rerank-clip",
                f"clip:{clip_dir}",
                "--rerank-weight",
                "0.7",
                "--max-new-tokens",
                "5",
                "--out",
                str(jsonl),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["decoding"]["rerank"] == {
        "method": "clip",
        "weight": 0.7,
        "candidates": 5,
        "clip": f"clip:{clip_dir}",
    }


def test_rerank_options_are_checked(clipcap_dir, images):
    captioner = captionkit.load(str(clipcap_dir), device="cpu")
    with pytest.raises(ConfigError, match="rerank weight must be in"):
        captioner.caption(images, rerank="clip", rerank_weight=2.0)
    with pytest.raises(ConfigError, match="rerank_candidates given without rerank='clip'"):
        captioner.caption(images, rerank_candidates=3)
    with pytest.raises(ConfigError, match="expected a CLIP spec"):
        captioner.caption(images, rerank="clip", rerank_clip="vgg16:fc2")


def test_evaluate_reranks_and_records_the_settings(clipcap_dir, tmp_path, capsys):
    from captionkit.data.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", images=12, seed=0)
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                str(clipcap_dir),
                "--dataset",
                str(data),
                "--split",
                "test",
                "--metrics",
                "CIDEr",
                "--tokenizer",
                "python",
                "--out",
                str(out),
                "--max-new-tokens",
                "5",
                "--rerank",
                "clip",
                "--rerank-candidates",
                "3",
                "--rerank-weight",
                "0.25",
            ]
        )
        == 0
    ), capsys.readouterr().err
    (results,) = rundir.find_results(out)
    assert results.name.startswith("greedy-rerank-")
    decoding = json.loads((results / "decoding.json").read_text())
    assert decoding["rerank"] == {"method": "clip", "weight": 0.25, "candidates": 3, "clip": None}
    assert "CIDEr" in json.loads((results / "metrics.json").read_text())
