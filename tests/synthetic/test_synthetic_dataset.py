"""The demo dataset writer: Flickr8k layout, reproducibility, and scenes that match the pictures."""

import hashlib
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captionkit.data.scene_grammar import BACKGROUNDS, COLOURS, SHAPES, SIZES
from captionkit.data.synthetic import DEFAULT_SIZE, EXTENT, write_synthetic_dataset
from captionkit.errors import ConfigError, DatasetError
from captionkit.evaluation.object_f1 import load_scenes


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_flickr8k_layout(synth_dir, synth_captions):
    names = sorted(p.name for p in (synth_dir / "Images").iterdir())
    assert len(names) == 200 and sorted(synth_captions) == names
    assert all(len(c) == 5 for c in synth_captions.values())
    for caption in itertools.chain(*synth_captions.values()):
        assert caption == caption.lower() and caption.endswith(" .") and "  " not in caption
    splits = {
        s: (synth_dir / "Text" / f"Flickr_8k.{s}Images.txt").read_text().split() for s in ("train", "dev", "test")
    }
    assert sorted(itertools.chain(*splits.values())) == names  # every image in exactly one split
    assert {s: len(v) for s, v in splits.items()} == {"train": 160, "dev": 20, "test": 20}
    with Image.open(synth_dir / "Images" / names[0]) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (DEFAULT_SIZE, DEFAULT_SIZE)
        assert not image.info.get("exif")
    assert sorted(load_scenes(synth_dir)) == names


def test_same_arguments_give_identical_bytes(tmp_path):
    first = tree_digest(write_synthetic_dataset(tmp_path / "a", images=12, seed=3, size=64))
    second = tree_digest(write_synthetic_dataset(tmp_path / "b", images=12, seed=3, size=64))
    assert first == second and len(first) == 12 + 4 + 1
    other = tree_digest(write_synthetic_dataset(tmp_path / "c", images=12, seed=4, size=64))
    assert other["scenes.json"] != first["scenes.json"]
    assert other["Images/synth_000000.jpg"] != first["Images/synth_000000.jpg"]


def test_image_i_does_not_depend_on_how_many_images(tmp_path):
    small = write_synthetic_dataset(tmp_path / "small", images=3, seed=5, size=64)
    large = write_synthetic_dataset(tmp_path / "large", images=8, seed=5, size=64)
    for name in ("synth_000000.jpg", "synth_000002.jpg"):
        assert (small / "Images" / name).read_bytes() == (large / "Images" / name).read_bytes()
        assert load_scenes(small)[name] == load_scenes(large)[name]


def test_rewrite_in_place_removes_stale_images(tmp_path):
    out = write_synthetic_dataset(tmp_path / "d", images=6, seed=1, size=64)
    (out / "Images" / "notes.txt").write_text("mine")
    write_synthetic_dataset(out, images=4, seed=1, size=64)
    expected = ["notes.txt"] + [f"synth_{i:06d}.jpg" for i in range(4)]
    assert sorted(p.name for p in (out / "Images").iterdir()) == expected
    rewritten = tree_digest(out)
    del rewritten["Images/notes.txt"]  # a user's file is kept, never deleted
    assert rewritten == tree_digest(write_synthetic_dataset(tmp_path / "e", images=4, seed=1, size=64))


def test_refuses_a_directory_that_is_not_a_synthetic_dataset(tmp_path):
    real = tmp_path / "Flickr8k"
    (real / "Text").mkdir(parents=True)
    token = real / "Text" / "Flickr8k.token.txt"
    token.write_text("1000268201_693b08cb0e.jpg#0\tA child .\n")
    with pytest.raises(DatasetError, match="not a synthetic dataset"):
        write_synthetic_dataset(real, images=2, seed=0)
    assert token.read_text() == "1000268201_693b08cb0e.jpg#0\tA child .\n"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"images": 0, "seed": 0},
        {"images": 10**6, "seed": 0},
        {"images": 2, "seed": -1},
        {"images": 2, "seed": 0, "size": 16},
    ],
)
def test_bad_arguments_raise_config_error(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        write_synthetic_dataset(tmp_path / "x", **kwargs)


def test_scenes_follow_the_design(synth_dir):
    scenes = load_scenes(synth_dir)
    kinds_per_scene, counts, attrs = Counter(), Counter(), {k: Counter() for k in ("colour", "shape", "size", "bg")}
    pairs = Counter()
    for scene in scenes.values():
        objects = scene["objects"]
        kinds = Counter((o["colour"], o["shape"]) for o in objects)
        assert 1 <= len(kinds) <= 3 and 1 <= len(objects) <= 5 and max(kinds.values()) <= 3
        for kind in kinds:  # one size per kind, so "two small red circles" is always true
            assert len({o["size"] for o in objects if (o["colour"], o["shape"]) == kind}) == 1
        for a, b in itertools.combinations(objects, 2):  # no overlaps: farthest extents stay apart
            gap = np.hypot(a["x"] - b["x"], a["y"] - b["y"])
            assert gap > EXTENT[a["shape"]] * a["radius"] + EXTENT[b["shape"]] * b["radius"]
        for o in objects:
            assert EXTENT[o["shape"]] * o["radius"] <= min(o["x"], o["y"], 1 - o["x"], 1 - o["y"])
        kinds_per_scene[len(kinds)] += 1
        counts.update(kinds.values())
        pairs.update(kinds)
        attrs["colour"].update(o["colour"] for o in objects)
        attrs["shape"].update(o["shape"] for o in objects)
        attrs["size"].update(o["size"] for o in objects)
        attrs["bg"][scene["background"]["colour"]] += 1
    assert set(kinds_per_scene) == {1, 2, 3} and set(counts) == {1, 2, 3}
    assert set(attrs["colour"]) == set(COLOURS) and set(attrs["shape"]) == set(SHAPES)
    assert set(attrs["size"]) == set(SIZES) and set(attrs["bg"]) == set(BACKGROUNDS)
    assert len(pairs) == len(COLOURS) * len(SHAPES)  # colour and shape vary independently: every pair occurs


def test_relations_match_positions(synth_dir):
    checked = 0
    for scene in load_scenes(synth_dir).values():
        for rel in scene["relations"]:
            subj = [o for o in scene["objects"] if [o["colour"], o["shape"]] == rel["subject"]]
            obj = [o for o in scene["objects"] if [o["colour"], o["shape"]] == rel["object"]]
            axis, sign = {"left of": ("x", 1), "right of": ("x", -1), "above": ("y", 1), "below": ("y", -1)}[
                rel["relation"]
            ]
            assert all(sign * (b[axis] - a[axis]) > 0.1 for a in subj for b in obj), rel
            checked += 1
    assert checked > 100


def test_pixels_show_the_scene(synth_dir):
    """At each object's centre the picture has that object's colour, and an empty cell is achromatic background:
    the drawing and scenes.json agree, and the background never shares a colour with an object."""
    scenes = load_scenes(synth_dir)
    for name in sorted(scenes)[:40]:
        pixels = np.asarray(Image.open(synth_dir / "Images" / name), np.float32)
        scene = scenes[name]

        def patch(x: float, y: float) -> np.ndarray:  # mean RGB of the 3x3 pixels around (x, y) in [0, 1]
            px, py = int(x * pixels.shape[1]), int(y * pixels.shape[0])
            return pixels[py - 1 : py + 2, px - 1 : px + 2].reshape(-1, 3).mean(0)

        free = sorted(set(range(9)) - {o["row"] * 3 + o["col"] for o in scene["objects"]})[0]
        background = patch((free % 3 + 0.5) / 3, (free // 3 + 0.5) / 3)
        assert np.ptp(background) < 12, (name, background)
        palette = {**COLOURS, "background": background}
        for o in scene["objects"]:
            rgb = patch(o["x"], o["y"])
            nearest = min(palette, key=lambda c: float(np.sum((np.asarray(palette[c]) - rgb) ** 2)))
            assert nearest == o["colour"], (name, o, rgb)


def test_reads_through_the_flickr8k_reader(synth_dir, synth_captions):
    """The path every user and the demo take: load_dataset finds the layout and the splits."""
    from captionkit.data.formats import load_dataset

    dataset = load_dataset(synth_dir)
    assert {r.image_id: list(r.captions) for r in dataset} == synth_captions
    assert [len(dataset.split(s)) for s in ("train", "dev", "test")] == [160, 20, 20]
    assert len(dataset.with_images()) == 200
