"""Caption many image files: expand files/folders/globs, load safely, caption in batches, report failures."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionkit.data.images import IMAGE_SUFFIXES


@dataclass
class CaptionResult:
    path: Path
    caption: str | None  # None when the image could not be used
    error: str | None = None


def expand_image_paths(items: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for image files, glob patterns expanded; sorted, no repeats.

    A path that names nothing raises FileNotFoundError (a typo should not pass as "0 images").
    """
    found: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        elif path.exists():
            found.append(path)
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                raise FileNotFoundError(f"{text}: the pattern matches no files")
            found.extend(matches)
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for p in found:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def caption_files(captioner: Any, paths: list[Path], batch_size: int = 16, **decoding: Any) -> Iterator[CaptionResult]:
    """Yield one result per path, in order; unreadable images give a result with `error` instead of raising."""
    from captionkit.errors import ImageLoadError

    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        loaded, errors = [], {}
        for path in chunk:
            try:
                loaded.append((path, captioner.load_image(path)))  # its max_pixels applies
            except (ImageLoadError, OSError) as exc:
                errors[path] = str(exc)
        captions = captioner.caption([im for _, im in loaded], batch_size=batch_size, **decoding) if loaded else []
        by_path = {path: cap for (path, _), cap in zip(loaded, captions)}
        for path in chunk:
            yield CaptionResult(path, by_path.get(path), errors.get(path))
