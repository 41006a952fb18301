"""The default feature cache of a training run is named by encoder, dataset and the encoder's local weight files."""

import os

from captionkit.training.data import feature_cache_dir


def test_an_encoder_retrained_into_the_same_path_gets_a_new_cache(tmp_path):
    weights = tmp_path / "vgg16-small.pth"
    weights.write_bytes(b"first weights")
    spec = f"vgg16-small:conv5_3@{weights}"
    run_dir = tmp_path / "run"
    first = feature_cache_dir(spec, "f" * 64, None, run_dir)
    assert feature_cache_dir(spec, "f" * 64, None, run_dir) == first  # unchanged weights: the same cache

    weights.write_bytes(b"other weights")  # retrained: written anew
    os.utime(weights, ns=(1, 1))  # a different time even where the clock is coarse
    assert feature_cache_dir(spec, "f" * 64, None, run_dir) != first
    assert feature_cache_dir(spec, "e" * 64, None, run_dir) != feature_cache_dir(spec, "f" * 64, None, run_dir)


def test_a_clip_directory_is_stamped_by_its_files_and_a_hub_id_by_nothing(tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "model.safetensors").write_bytes(b"weights")
    run_dir = tmp_path / "run"
    before = feature_cache_dir(f"clip:{clip}", "f" * 64, None, run_dir)
    (clip / "model.safetensors").write_bytes(b"new, longer weights")
    assert feature_cache_dir(f"clip:{clip}", "f" * 64, None, run_dir) != before
    assert feature_cache_dir("clip:openai/clip-vit-base-patch32", "f" * 64, None, run_dir).name.endswith("f" * 12)
    assert feature_cache_dir(f"clip:{clip}", "f" * 64, str(tmp_path / "mine"), run_dir) == tmp_path / "mine"
