"""The labelled scene stream: deterministic, labelled at three levels, never the caption dataset's pictures."""

import numpy as np

from captionkit.data.images import load_image
from captionkit.data.scene_stream import (
    COVERAGE_CHANNELS,
    SceneStream,
    scene_coverage,
    scene_label_groups,
    scene_label_names,
    scene_labels,
)
from captionkit.data.synthetic import object_mask, write_synthetic_dataset


def test_labels_name_colours_shapes_kinds_and_counts():
    scene = {
        "objects": [
            {"colour": "red", "shape": "circle"},
            {"colour": "red", "shape": "circle"},
            {"colour": "blue", "shape": "star"},
        ],
        "background": {"colour": "grey", "texture": "plain"},
    }
    assert scene_labels(scene) == [
        "blue",
        "circle",
        "red",
        "star",
        "blue star",
        "blue star x1",
        "red circle",
        "red circle x2",
        "grey background",
    ]
    names = scene_label_names()  # the object groups: what the demo's first stages train on
    assert len(names) == 6 + 5 + 30 + 90 and len(set(names)) == len(names)
    assert set(scene_labels(scene)) - set(names) == {"grey background"}
    everything = ("colour", "shape", "kind", "count", "background")
    assert scene_label_names(everything) == [*names, "white background", "grey background", "black background"]
    assert scene_label_groups(everything)[-4:] == ["count", "background", "background", "background"]


def test_coverage_says_which_cells_each_colour_and_shape_covers():
    stream = SceneStream(seed=0)
    scene = stream.scene(3)
    cells = scene_coverage(scene, size=96, crop=96, grid=12)
    assert cells.shape == (len(COVERAGE_CHANNELS), 12, 12) and cells.min() >= 0 and cells.max() <= 1
    for obj in scene["objects"]:  # each object's area, in cells, lands on its colour's and its shape's channels
        area = object_mask(obj, 96).sum() / 8**2
        assert cells[COVERAGE_CHANNELS.index(obj["colour"])].sum() >= area - 1e-3
        row, col = int(obj["y"] * 12), int(obj["x"] * 12)  # its centre's cell is covered
        assert cells[COVERAGE_CHANNELS.index(obj["shape"])][row, col] > 0.3
    absent = [c for c in COVERAGE_CHANNELS if c not in {v for o in scene["objects"] for v in (o["colour"], o["shape"])}]
    assert all(cells[COVERAGE_CHANNELS.index(c)].sum() == 0 for c in absent)
    # a centre crop keeps the cells it keeps: cropping 96 -> 80 px drops one 8 px cell on every side
    cropped = scene_coverage(scene, size=96, crop=80, grid=10)
    np.testing.assert_allclose(cropped, cells[:, 1:11, 1:11], atol=1e-6)


def test_image_i_is_the_same_every_time_and_differs_between_seeds():
    a, b, c = SceneStream(seed=0), SceneStream(seed=0), SceneStream(seed=1)
    (im_a, labels_a), (im_b, labels_b) = a[7], b[7]
    assert labels_a == labels_b and np.array_equal(np.asarray(im_a), np.asarray(im_b))
    assert im_a.size == (128, 128) and im_a.mode == "RGB"
    assert not np.array_equal(np.asarray(a[7][0]), np.asarray(c[7][0]))


def test_the_stream_never_repeats_a_caption_dataset_picture(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", images=20, seed=0, size=128)
    captions_pictures = {np.asarray(load_image(p)).tobytes() for p in sorted((data / "Images").iterdir())}
    stream = SceneStream(seed=0)
    assert not captions_pictures & {np.asarray(stream[i][0]).tobytes() for i in range(20)}
    # the labels are what the scene holds: every kind's count appears exactly once
    image, labels = stream[3]
    kinds = [label for label in labels if label.endswith(("x1", "x2", "x3"))]
    assert len(kinds) == len({label.rsplit(" ", 1)[0] for label in kinds})
