"""What do the demo's encoders see? Linear probes for shape and colour on a finished `make demo` run.

Fits one logistic regression per label ("a circle is in the image", "something red is in the image") on the frozen
features of the train split and reports test accuracy beside the majority-class rate. A probe at the majority rate
means the feature carries nothing a linear read-out can use: that is why a captioner on top of it names colours and
counts right and shapes at chance (object_f1 well under the demo's 0.6 bar).

    python benchmarks/demo_encoder_probe.py [RUN_DIR]      # default runs/demo; writes benchmarks/results/

The probes are written here (a few lines of full-batch Adam on standardised features) rather than taken from
scikit-learn, which captionkit does not otherwise depend on.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from captionkit.data.formats import load_dataset
from captionkit.data.images import load_image
from captionkit.data.scene_grammar import COLOURS, SHAPES, kind_counts
from captionkit.evaluation.object_f1 import load_scenes
from captionkit.models.encoders import load_encoder

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LABELS = [*SHAPES, *COLOURS]  # shape-present labels, then colour-present labels


def encoder_specs(run: Path) -> dict[str, str]:
    return {"demo CLIP (contrastive, frozen)": f"clip:{run / 'clip'}",
            "demo VGG16-small fc2 (merge model, end to end)": f"vgg16-small:fc2@{run / 'vgg16-small.pth'}"}


def label_matrix(records: list, scenes: dict) -> torch.Tensor:
    """(N, len(LABELS)) 0/1: which shapes and which colours each image contains."""
    y = torch.zeros(len(records), len(LABELS))
    for i, record in enumerate(records):
        for colour, shape in kind_counts(scenes[record.image_id]):
            y[i, LABELS.index(shape)] = 1
            y[i, LABELS.index(colour)] = 1
    return y


@torch.no_grad()
def features(spec: str, records: list, batch_size: int = 128) -> torch.Tensor:
    encoder = load_encoder(spec)
    batches = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    return torch.cat([encoder.encode_images([load_image(r.image_path) for r in batch]) for batch in batches]).flatten(1)


def probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                   test_y: torch.Tensor, steps: int = 1500) -> torch.Tensor:
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


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "runs" / "demo")
    data = run / "data"
    if not (data / "scenes.json").is_file():
        raise SystemExit(f"{run}: no finished demo run here (need {data}/scenes.json); run `make demo` first")
    dataset, scenes = load_dataset(data), load_scenes(data)
    train, test = dataset.split("train"), dataset.split("test")
    train_y, test_y = label_matrix(train, scenes), label_matrix(test, scenes)
    majority = torch.maximum(test_y.mean(0), 1 - test_y.mean(0))
    rows = [{"features": "majority class (no image)", **{k: round(v, 3) for k, v in zip(LABELS, majority.tolist())}}]
    for name, spec in encoder_specs(run).items():
        accuracy = probe_accuracy(features(spec, train), train_y, features(spec, test), test_y)
        rows.append({"features": name, **{k: round(v, 3) for k, v in zip(LABELS, accuracy.tolist())}})
    header = ["features", *LABELS]
    table = "\n".join(["| " + " | ".join(header) + " |", "|---" + "|---:" * len(LABELS) + "|"]
                      + ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows])
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    intro = (f"Linear-probe test accuracy on {run.name}'s test split ({len(test)} images; trained on {len(train)}), "
             "`python benchmarks/demo_encoder_probe.py`.\n\n")
    (RESULTS / "demo_encoder_probe.md").write_text(intro + table + "\n", encoding="utf-8")
    (RESULTS / "demo_encoder_probe.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
