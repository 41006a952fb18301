"""A small synthetic dataset shared by the synthetic-data tests (written once per session: ~0.5 s)."""

from pathlib import Path

import pytest

from captionkit.data.synthetic import write_synthetic_dataset

N_IMAGES = 200


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "demo", images=N_IMAGES, seed=7)


@pytest.fixture(scope="session")
def synth_captions(synth_dir: Path) -> dict[str, list[str]]:
    """{image name: its 5 reference captions in order}, read from the token file."""
    captions: dict[str, list[str]] = {}
    for line in (synth_dir / "Text" / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t")
        name, number = key.split("#")
        assert int(number) == len(captions.setdefault(name, []))
        captions[name].append(caption)
    return captions
