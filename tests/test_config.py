from dataclasses import dataclass, field

import pytest

from captionkit.config import apply_overrides, from_dict, load_config, to_dict
from captionkit.errors import ConfigError


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    path: str | None = None


def test_overrides_are_typed_and_nested(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: run\ninner:\n  steps: 3\n")
    cfg = load_config(Outer, f, ["inner.lr=2e-4", "tags=[a, b]"])
    assert cfg == Outer(name="run", inner=Inner(lr=2e-4, steps=3), tags=["a", "b"])
    assert to_dict(cfg)["inner"] == {"lr": 2e-4, "steps": 3}


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys"):
        from_dict(Outer, {"nmae": "x"})


def test_wrong_type_names_the_field():
    with pytest.raises(ConfigError, match=r"config.inner.steps"):
        from_dict(Outer, {"inner": {"steps": "many"}})


def test_malformed_override():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["novalue"])
