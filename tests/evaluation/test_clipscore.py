"""CLIPScore / RefCLIPScore against a direct computation of Hessel et al.'s formula with a tiny random CLIP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from captionkit.cli import main
from captionkit.evaluation.clipscore import clip_scores, harmonic_mean
from captionkit.evaluation.metrics import score
from captionkit.inference.clip_scorer import PREFIX, CLIPScorer, W

TINY_CLIP = {
    "projection_dim": 16,
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 49407,
    },
    "vision_config": {
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    },
}
CANDIDATES = ["a dog runs on the grass", "two children play in the water", "a man rides a bike", "a red car"]
CLIP_BPE = Path(__file__).resolve().parents[2].parent / "shared" / "tokenizers" / "clip"
REFERENCES = [
    ["a brown dog running", "dog on grass"],
    ["kids swimming", "two kids in a pool", "children"],
    ["a cyclist on a road"],
    ["a car parked on the street", "a red vehicle"],
]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, shared_dir: Path) -> Path:
    """A tiny random CLIP saved like a hub checkpoint, with the real CLIP BPE tokenizer files."""
    from captionkit.models import hf

    out = tmp_path_factory.mktemp("tiny-clip")
    model = hf.new_clip_model(TINY_CLIP)
    tokenizer = hf.clip_tokenizer(str(shared_dir / "tokenizers" / "clip"))
    return hf.save_clip(out, model, hf.new_clip_image_processor(32), tokenizer)


@pytest.fixture(scope="module")
def images(flickr8k_fixture: Path) -> dict[str, Path]:
    paths = sorted((flickr8k_fixture / "Images").glob("*.jpg"))[:4]
    return {p.name: p for p in paths}


@pytest.fixture(scope="module")
def reference(clip_dir):
    """The saved CLIP loaded with transformers directly (the independent path the scores are checked against)."""
    from transformers import CLIPModel, CLIPTokenizer

    from captionkit.models.hf import _image_processor_class

    model = CLIPModel.from_pretrained(str(clip_dir)).eval()
    processor = _image_processor_class().from_pretrained(str(clip_dir))
    tokenizer = CLIPTokenizer(str(CLIP_BPE / "vocab.json"), str(CLIP_BPE / "merges.txt"))  # positionally
    return model, processor, tokenizer


@torch.no_grad()
def direct_cosine(reference, image: Path, text: str) -> float:
    """cos(image, text) via CLIP's own forward (logits_per_image = exp(logit_scale) * cos), unpadded."""
    from PIL import Image

    model, processor, tokenizer = reference
    pixels = processor(images=Image.open(image).convert("RGB"), return_tensors="pt")["pixel_values"]
    ids = tokenizer([text], return_tensors="pt")["input_ids"]
    return float(model(input_ids=ids, pixel_values=pixels).logits_per_image[0, 0] / model.logit_scale.exp())


@torch.no_grad()
def direct_text_cosines(reference, text: str, others: list[str]) -> list[float]:
    model, _, tokenizer = reference

    def embed(t: str) -> torch.Tensor:
        e = model.get_text_features(input_ids=tokenizer([t], return_tensors="pt")["input_ids"])
        e = e if isinstance(e, torch.Tensor) else e.pooler_output
        return torch.nn.functional.normalize(e[0], dim=-1)

    anchor = embed(text)
    return [float(anchor @ embed(o)) for o in others]


def test_clipscore_and_refclipscore_match_the_formula(clip_dir, images, reference):
    keys = list(images)
    cands = dict(zip(keys, CANDIDATES))
    refs = dict(zip(keys, REFERENCES))
    result = clip_scores(str(clip_dir), images, cands, refs, batch_size=3)  # batches of 3: padding exercised
    for key in keys:
        expected_clip = W * max(direct_cosine(reference, images[key], f"{PREFIX} {cands[key]}"), 0.0)
        assert result["CLIPScore"][1][key] == pytest.approx(expected_clip, abs=1e-5)
        ref_cos = direct_text_cosines(reference, f"{PREFIX} {cands[key]}", [f"{PREFIX} {r}" for r in refs[key]])
        best = max(max(ref_cos), 0.0)
        expected_ref = 0.0 if expected_clip + best == 0 else 2 * expected_clip * best / (expected_clip + best)
        assert result["RefCLIPScore"][1][key] == pytest.approx(expected_ref, abs=1e-5)
    for name in ("CLIPScore", "RefCLIPScore"):
        corpus, items = result[name]
        assert corpus == pytest.approx(sum(items.values()) / len(items))


def test_batch_size_does_not_change_scores(clip_dir, images):
    keys = list(images)
    cands = dict(zip(keys, CANDIDATES))
    one = CLIPScorer(str(clip_dir), batch_size=1)
    four = CLIPScorer(str(clip_dir), batch_size=4)
    a, b = clip_scores(one, images, cands)["CLIPScore"][1], clip_scores(four, images, cands)["CLIPScore"][1]
    assert a == pytest.approx(b, abs=1e-5)


def test_harmonic_mean_clips_to_zero():
    out = harmonic_mean(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, 2.0]))
    assert out.tolist() == [0.0, 0.0, 2.0]


def test_score_and_cli_add_clip_metrics(clip_dir, images, tmp_path, capsys):
    keys = list(images)
    refs, cands = dict(zip(keys, REFERENCES)), dict(zip(keys, CANDIDATES))
    direct = clip_scores(str(clip_dir), images, cands, refs)
    result = score(
        refs, cands, ["CIDEr"] + ["CLIPScore", "RefCLIPScore"], tokenizer="python", images=images, clip=str(clip_dir)
    )
    assert result.corpus["CLIPScore"] == pytest.approx(direct["CLIPScore"][0], abs=1e-6)
    assert result.per_item[keys[0]]["RefCLIPScore"] == pytest.approx(direct["RefCLIPScore"][1][keys[0]], abs=1e-6)
    ann = {"annotations": [{"image_id": k, "caption": c} for k in keys for c in refs[k]]}
    (tmp_path / "refs.json").write_text(json.dumps(ann))
    (tmp_path / "cands.json").write_text(json.dumps([{"image_id": k, "caption": cands[k]} for k in keys]))
    code = main(
        [
            "score",
            str(tmp_path / "cands.json"),
            "--references",
            str(tmp_path / "refs.json"),
            "--images",
            str(next(iter(images.values())).parent),
            "--clip",
            str(clip_dir),
            "--metrics",
            "clip",
            "--tokenizer",
            "python",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["CLIPScore", "RefCLIPScore"]
    assert printed["CLIPScore"] == pytest.approx(direct["CLIPScore"][0], abs=1e-6)
