"""The labelled scene stream: deterministic, labelled at three levels, never the caption dataset's pictures."""

import numpy as np

from captionkit.data.images import load_image
from captionkit.data.scene_stream import SceneStream, scene_label_names, scene_labels
from captionkit.data.synthetic import write_synthetic_dataset


def test_labels_name_colours_shapes_kinds_and_counts():
    scene = {
        "objects": [
            {"colour": "red", "shape": "circle"},
            {"colour": "red", "shape": "circle"},
            {"colour": "blue", "shape": "star"},
        ]
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
    ]
    names = scene_label_names()
    assert len(names) == 6 + 5 + 30 + 90 and len(set(names)) == len(names)
    assert set(scene_labels(scene)) <= set(names)


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
