"""What do the demo's encoders see, and where does the attention model look? Three measurements on a finished
`make demo` run (test split of the demo's caption dataset, which no encoder was pretrained on):

1. Linear probes: one logistic regression per label ("a circle is in the image", "something red is in the image",
   "the background is white") on the frozen features of the train split, test accuracy beside the majority-class
   rate.
2. Zero-shot with the demo CLIP: no training at all; each test image that holds one kind of shape is given the shape
   whose text prompts ("a red circle .", "a blue circle .", ... averaged) lie nearest its image embedding.
3. Attention: for every colour or shape word the Show-Attend-Tell model writes (greedy) that names something really
   in the image, the share of that word's attention mass that falls on those objects (their drawn pixels, per grid
   cell), beside the share the objects' area would get from uniform attention (chance).

    python benchmarks/demo_encoder_probe.py [RUN_DIR]      # default runs/demo; writes benchmarks/results/

The probes are written here (a few lines of full-batch Adam on standardised features) rather than taken from
scikit-learn, which captionkit does not otherwise depend on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tables import markdown_table
from torch.nn import functional as F

from captionkit.data.formats import load_dataset
from captionkit.data.images import load_image
from captionkit.data.scene_grammar import BACKGROUNDS, COLOURS, SHAPE_NOUNS, SHAPES, kind_counts
from captionkit.data.synthetic import object_mask
from captionkit.evaluation.object_f1 import load_scenes
from captionkit.models import hf
from captionkit.models.encoders import load_encoder

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LABELS = [*SHAPES, *COLOURS, *(f"{b} bg" for b in BACKGROUNDS)]  # shape present, colour present, background colour
WORD_TO_SHAPE = {noun: shape for shape, nouns in SHAPE_NOUNS.items() for pair in nouns for noun in pair}


def encoder_specs(run: Path) -> dict[str, str]:
    return {
        "demo VGG16-bn-small fc2 (pretrained, shipped)": "vgg16-bn-small:fc2@demo",
        "demo CLIP image embedding (pretrained tower, shipped)": f"clip:{run / 'clip'}",
    }


def label_matrix(records: list, scenes: dict) -> torch.Tensor:
    """(N, len(LABELS)) 0/1: which shapes and which colours each image contains, and its background colour."""
    y = torch.zeros(len(records), len(LABELS))
    for i, record in enumerate(records):
        y[i, LABELS.index(f"{scenes[record.image_id]['background']['colour']} bg")] = 1
        for colour, shape in kind_counts(scenes[record.image_id]):
            y[i, LABELS.index(shape)] = 1
            y[i, LABELS.index(colour)] = 1
    return y


@torch.no_grad()
def features(spec: str, records: list, batch_size: int = 128) -> torch.Tensor:
    encoder = load_encoder(spec)
    batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
    return torch.cat([encoder.encode_images([load_image(r.image_path) for r in batch]) for batch in batches]).flatten(1)


def probe_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, steps: int = 1500
) -> torch.Tensor:
    """Per-label test accuracy of independent logistic regressions on standardised features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Linear(train_x.shape[1], train_y.shape[1])
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(head(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return ((head(test_x) > 0) == (test_y > 0)).float().mean(0)


@torch.no_grad()
def zero_shot(run: Path, records: list, scenes: dict) -> dict[str, float]:
    """Accuracy of prompt-only shape (and colour + shape) classification on test images holding one kind."""
    model, processor, tokenizer = hf.load_clip(str(run / "clip"))
    single = [r for r in records if len(kind_counts(scenes[r.image_id])) == 1]
    pixels = torch.stack([hf.clip_preprocess(processor, load_image(r.image_path)) for r in single])
    images = F.normalize(hf.clip_image_embeds(model, pixels), dim=-1)

    def text(prompts: list[str]) -> torch.Tensor:
        ids, mask = hf.clip_tokenize(tokenizer, prompts, 32)
        return F.normalize(hf.clip_text_embeds(model, ids, mask), dim=-1)

    kinds = [(c, s) for s in SHAPES for c in COLOURS]
    kind_text = text([f"a {c} {s} ." for c, s in kinds])  # (30, D)
    shape_text = F.normalize(kind_text.view(len(SHAPES), len(COLOURS), -1).mean(1), dim=-1)  # prompt ensemble
    truth = [next(iter(kind_counts(scenes[r.image_id]))) for r in single]
    shape_hits = (images @ shape_text.T).argmax(1) == torch.tensor([SHAPES.index(s) for _, s in truth])
    kind_hits = (images @ kind_text.T).argmax(1) == torch.tensor([kinds.index(k) for k in truth])
    return {
        "images": len(single),
        "shape_accuracy": round(shape_hits.float().mean().item(), 3),
        "colour_and_shape_accuracy": round(kind_hits.float().mean().item(), 3),
        "chance_shape": 0.2,
    }


def attention_on_objects(run: Path, records: list, scenes: dict) -> dict[str, float]:
    """Mean share of attention mass on the named objects, the same share under uniform attention (chance), and
    the most any attention could score on this grid (all of it on the cell the objects cover most: a cell is only
    partly covered by an object, so even perfect attention on a coarse grid scores below 1)."""
    import captionkit
    from captionkit.inference.attention import caption_with_attention, crop_fraction_of

    captioner = captionkit.load(str(run / "demo-show-attend-tell" / "model"))
    assert crop_fraction_of(captioner) == 1.0  # the demo encoder sees the whole square image: grid = image
    on_object, chance, ceiling, words_scored = [], [], [], 0
    for record in records:
        scene = scenes[record.image_id]
        words, weights = caption_with_attention(captioner, load_image(record.image_path))
        side = int(round(weights.shape[1] ** 0.5))
        for word, attention in zip(words, weights):
            objects = [o for o in scene["objects"] if o["colour"] == word or o["shape"] == WORD_TO_SHAPE.get(word)]
            if not objects:
                continue  # not an object word, or it names something not in the image: no true objects to look at
            size = 8 * side
            mask = np.clip(sum(object_mask(o, size) for o in objects), 0, 1)  # (size, size) pixel coverage
            per_cell = mask.reshape(side, 8, side, 8).mean(axis=(1, 3)).reshape(-1)  # share of each cell covered
            on_object.append(float((attention.numpy() * per_cell).sum()))
            chance.append(float(per_cell.mean()))
            ceiling.append(float(per_cell.max()))
            words_scored += 1
    return {
        "object_words": words_scored,
        "attention_on_objects": round(float(np.mean(on_object)), 3),
        "chance": round(float(np.mean(chance)), 3),
        "grid": f"{side}x{side}",
        "ceiling (all on the best cell)": round(float(np.mean(ceiling)), 3),
    }


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "runs" / "demo")
    data = run / "data"
    if not (data / "scenes.json").is_file():
        raise SystemExit(f"{run}: no finished demo run here (need {data}/scenes.json); run `make demo` first")
    torch.set_num_threads(2)
    dataset, scenes = load_dataset(data), load_scenes(data)
    train, test = dataset.split("train"), dataset.split("test")
    train_y, test_y = label_matrix(train, scenes), label_matrix(test, scenes)
    majority = torch.maximum(test_y.mean(0), 1 - test_y.mean(0))
    rows = [{"features": "majority class (no image)", **{k: round(v, 3) for k, v in zip(LABELS, majority.tolist())}}]
    for name, spec in encoder_specs(run).items():
        accuracy = probe_accuracy(features(spec, train), train_y, features(spec, test), test_y)
        rows.append({"features": name, **{k: round(v, 3) for k, v in zip(LABELS, accuracy.tolist())}})
    probes = markdown_table(["features", *LABELS], rows)
    shots = zero_shot(run, test, scenes)
    zero = markdown_table(list(shots), [shots])
    attention = attention_on_objects(run, test, scenes)
    looks = markdown_table(list(attention), [attention])
    text = (
        f"On {run.name}'s test split ({len(test)} images; probes trained on its {len(train)} train images), "
        "`python benchmarks/demo_encoder_probe.py`.\n\n"
        f"### Linear probes (test accuracy per label)\n\n{probes}\n\n"
        f"### Zero-shot with the demo CLIP (test images holding one kind of object)\n\n{zero}\n\n"
        "### Show-Attend-Tell: share of a word's attention on the objects it names\n\n"
        f"{looks}\n"
    )
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "demo_encoder_probe.md").write_text(text, encoding="utf-8")
    (RESULTS / "demo_encoder_probe.json").write_text(
        json.dumps({"probes": rows, "zero_shot": shots, "attention": attention}, indent=2) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
