"""Word vocabulary hooks and model directories: saved, then loaded in a fresh process, the captions are identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from captionkit.config import from_dict
from captionkit.data.text import collate_captions, encode_for_training
from captionkit.decoding import generate
from captionkit.models.model_dir import load_model_dir, save_model_dir
from captionkit.models.tokenizers import WordVocab
from captionkit.registry import get_model_class

TRAIN_CAPTIONS = [
    "a red circle above a blue square .",
    "two green stars on a white background .",
    "a blue square and a red circle .",
    "one yellow cross .",
]
SMALL = {"embed_dim": 16, "hidden_dim": 16, "dropout": 0.0, "min_word_count": 2}
CASES = {  # name -> (model type, config data, feature shape the model reads)
    "merge": ("show-tell-merge", {**SMALL, "feature_dim": 12, "decoder_dim": 16}, (12,)),
    "attend": ("show-attend-tell", {**SMALL, "feature_dim": 6, "attention_dim": 8}, (5, 6)),
    "attend-pixels": (
        "show-attend-tell",
        {
            **SMALL,
            "feature_dim": 64,
            "attention_dim": 8,
            "finetune_encoder": "vgg16-small:conv5_3",
            "finetune_blocks": 1,
        },
        (3, 32, 32),
    ),
}


def build(model_type: str, data: dict):
    """What the training engine does: typed config -> word vocabulary -> config with its size -> model."""
    cls = get_model_class(model_type)
    config = from_dict(cls.config_class, data)
    tokenizer = cls.build_tokenizer(config, TRAIN_CAPTIONS)
    return cls.build(cls.config_for_tokenizer(config, tokenizer)), tokenizer


def test_vocabulary_comes_from_the_training_captions_with_min_count():
    model, tokenizer = build("show-tell-merge", CASES["merge"][1])
    assert isinstance(tokenizer, WordVocab)
    # words seen at least twice (WordVocab drops punctuation): a, red, circle, blue, square; the rest are <unk>
    assert tokenizer.vocab_size == 4 + 5 == model.config.vocab_size
    assert model.embedding.num_embeddings == model.head[-1].out_features == tokenizer.vocab_size
    assert model.config.bos_token_id == tokenizer.bos_token_id == 1
    assert tokenizer.decode(tokenizer.encode("a red circle above")) == "a red circle <unk>"


def train_briefly(model, tokenizer, features: torch.Tensor) -> None:
    """A few Adam steps so the greedy captions are not a random model's repeated token."""
    ids = [encode_for_training(tokenizer, c, 12) for c in TRAIN_CAPTIONS]
    input_ids, labels = collate_captions(ids, tokenizer.pad_token_id)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        model({"features": features, "input_ids": input_ids, "labels": labels}).loss.backward()
        optimizer.step()
    model.eval()


LOADER = """
import json, sys
import torch
from safetensors.torch import load_file
from captionkit.decoding import generate
from captionkit.models.model_dir import load_model_dir
out = {}
for name in sys.argv[1:]:
    loaded = load_model_dir(f"{name}/model")
    ids = generate(loaded.model, load_file(f"{name}/features.safetensors")["features"],
                   loaded.tokenizer.eos_token_id, max_new_tokens=10)
    out[name] = {"ids": ids, "text": [loaded.tokenizer.decode(i) for i in ids], "encoder": loaded.encoder}
print(json.dumps(out))
"""


def test_saved_model_dirs_give_identical_captions_in_a_fresh_process(tmp_path: Path):
    expected = {}
    for name, (model_type, data, shape) in CASES.items():
        torch.manual_seed(0)
        model, tokenizer = build(model_type, data)
        features = torch.randn(4, *shape)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train_briefly(model, tokenizer, features)
        if model.input_kind == "pixels":  # the fine-tuned encoder block must travel in model.safetensors
            key = "image_encoder.features.28.weight"  # conv5_3
            assert not torch.equal(before[key], model.state_dict()[key])
        directory = tmp_path / name
        save_model_dir(directory / "model", model, tokenizer, encoder=f"{model_type}-test-encoder")
        save_file({"features": features}, str(directory / "features.safetensors"))
        ids = generate(model, features, tokenizer.eos_token_id, max_new_tokens=10)
        expected[str(directory)] = {
            "ids": ids,
            "text": [tokenizer.decode(i) for i in ids],
            "encoder": f"{model_type}-test-encoder",
        }
        assert any(ids), f"{name}: the trained model should say something"
        reloaded = load_model_dir(directory / "model")
        assert reloaded.model.input_kind == model.input_kind
        assert generate(reloaded.model, features, tokenizer.eos_token_id, max_new_tokens=10) == ids
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LOADER, *expected],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


def test_encoder_paths_are_stored_relative_so_runs_can_move(tmp_path):
    from captionkit.models.encoders import absolute_spec, relative_spec

    model_dir = tmp_path / "runs" / "demo" / "merge" / "model"
    spec = f"clip:{tmp_path / 'runs' / 'demo' / 'clip'}"
    stored = relative_spec(spec, model_dir)
    assert stored == "clip:../../clip" and absolute_spec(stored, model_dir) == spec
    moved = tmp_path / "elsewhere" / "demo" / "merge" / "model"
    assert absolute_spec(stored, moved) == f"clip:{tmp_path / 'elsewhere' / 'demo' / 'clip'}"
    assert relative_spec("vgg16:fc2@/opt/weights/vgg16.pth", model_dir) == "vgg16:fc2@/opt/weights/vgg16.pth"
    for kept in ("clip:openai/clip-vit-base-patch32", "vgg16-bn-small:fc2@demo", "vgg16:fc2", None):
        assert relative_spec(kept, model_dir) == kept and absolute_spec(kept, model_dir) == kept
