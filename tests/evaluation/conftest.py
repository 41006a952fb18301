"""Fixtures for the evaluation tests: the Flickr8k fixture captions and a Java skip."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from captionkit.evaluation.metrics import java_available


@pytest.fixture(scope="session")
def fixture_lines(flickr8k_fixture: Path) -> list[str]:
    """Every caption of Flickr8k.token.txt, in file order (40,460 lines)."""
    text = (flickr8k_fixture / "Text" / "Flickr8k.token.txt").read_text(encoding="utf-8")
    return [line.split("\t", 1)[1] for line in text.split("\n") if line]


@pytest.fixture(scope="session")
def fixture_captions(flickr8k_fixture: Path) -> dict[str, list[str]]:
    """{image name: its captions} from Flickr8k.token.txt (the bogus `.jpg.1` key included, as in the file)."""
    caps: dict[str, list[str]] = defaultdict(list)
    for line in (flickr8k_fixture / "Text" / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t", 1)
        caps[key.rsplit("#", 1)[0]].append(caption)
    return dict(caps)


@pytest.fixture(scope="session")
def need_java() -> None:
    if not java_available():
        pytest.skip("no working `java` on PATH: pycocoevalcap's tokenizer and METEOR cannot run")
