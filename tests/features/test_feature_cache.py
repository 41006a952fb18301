"""Feature cache: round trip, one encoding per image, resumption, refusal of mismatched caches, unreadable images."""

from __future__ import annotations

import json
import logging
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from feature_helpers import CountingEncoder
from PIL import Image

from captionkit import __version__
from captionkit.data.features import CacheWriter, FeatureCache, dataset_fingerprint, extract_features
from captionkit.data.images import load_image
from captionkit.data.records import Record
from captionkit.errors import FeatureCacheError
from captionkit.models.encoders import load_encoder


def expected_features(encoder: CountingEncoder, record: Record) -> torch.Tensor:
    with torch.no_grad():
        return encoder(encoder.preprocess(Image.open(record.image_path))[None])[0]


def extract(records, encoder, out, **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("dataset_fingerprint", dataset_fingerprint(records))
    return extract_features(records, encoder, out, progress=False, **kw)


def test_round_trip(tmp_path, records, encoder):
    out = tmp_path / "cache"
    cache = extract(records, encoder, out, batch_size=4, shard_size=4)
    reopened = FeatureCache.open(out, expect_encoder="tiny:test", expect_fingerprint=dataset_fingerprint(records))
    ids = [r.image_id for r in records]
    for c in (cache, reopened):
        assert c.ids == ids and len(c) == 6 and ids[3] in c and "nope.jpg" not in c
        for r in records:
            torch.testing.assert_close(c.get(r.image_id), expected_features(encoder, r), rtol=0, atol=1e-6)
        many = c.get_many([ids[5], ids[0], ids[4]])
        assert many.shape == (3, 4) and many.dtype == torch.float32
        torch.testing.assert_close(many[0], c.get(ids[5]))
        torch.testing.assert_close(many[1], c.get(ids[0]))
    m = reopened.manifest
    assert m["encoder"]["spec"] == "tiny:test" and m["feature_shape"] == [4] and m["dtype"] == "float32"
    assert m["dataset_fingerprint"] == dataset_fingerprint(records) and m["count"] == 6 and m["complete"]
    assert m["captionkit_version"] == __version__
    assert [s["file"] for s in m["shards"]] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    index = json.loads((out / "index.json").read_text())
    assert index[ids[5]] == [1, 1]
    with pytest.raises(FeatureCacheError, match="not in feature cache"):
        reopened.get("nope.jpg")


def test_each_image_encoded_once_however_many_captions(tmp_path, records, encoder):
    duplicated = records + [replace(r, split="dev") for r in records]  # e.g. one record per caption row
    cache = extract(duplicated, encoder, tmp_path / "cache", batch_size=4)
    assert encoder.images_encoded == 6
    assert len(cache) == 6


def test_dataloader_workers_and_float16(tmp_path, records, encoder):
    out = tmp_path / "cache"
    cache = extract(records, encoder, out, num_workers=2, batch_size=2, dtype="float16")
    header_size = struct.unpack("<Q", (out / "shard-00000.safetensors").read_bytes()[:8])[0]
    header = json.loads((out / "shard-00000.safetensors").read_bytes()[8 : 8 + header_size])
    assert header["features"]["dtype"] == "F16" and header["features"]["shape"] == [6, 4]
    assert json.loads(header["__metadata__"]["ids"]) == [r.image_id for r in records]
    for r in records:
        got = cache.get(r.image_id)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected_features(encoder, r), rtol=1e-3, atol=1e-3)


class Interrupt(Exception):
    pass


def test_resume_skips_committed_shards(tmp_path, records):
    out = tmp_path / "cache"
    first = CountingEncoder()

    def stop(path: Path) -> None:
        raise Interrupt(path)

    with pytest.raises(Interrupt):
        extract(records, first, out, batch_size=2, shard_size=2, on_shard=stop)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["shard"] for s in manifest["shards"]] == [0] and not manifest["complete"]
    shard0 = (out / "shard-00000.safetensors").stat()

    second = CountingEncoder()
    cache = extract(records, second, out, batch_size=2, shard_size=2)
    assert second.images_encoded == 4  # the two images of the committed shard were not recomputed
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == shard0.st_mtime_ns
    assert len(cache) == 6 and cache.manifest["complete"]
    for r in records:
        torch.testing.assert_close(cache.get(r.image_id), expected_features(second, r), rtol=0, atol=1e-6)
    third = CountingEncoder()
    extract(records, third, out)  # complete: nothing to do
    assert third.images_encoded == 0


def test_uncommitted_index_entries_are_ignored(tmp_path, records, encoder):
    out = tmp_path / "cache"
    extract(records[:2], encoder, out, dataset_fingerprint="fp")
    index = json.loads((out / "index.json").read_text())
    index[records[4].image_id] = [7, 0]  # written by a shard whose manifest update never happened
    (out / "index.json").write_text(json.dumps(index))
    assert records[4].image_id not in FeatureCache.open(out)
    counting = CountingEncoder()
    cache = extract(records, counting, out, dataset_fingerprint="fp")
    assert counting.images_encoded == 4 and len(cache) == 6


def test_mismatched_cache_is_refused_naming_the_difference(tmp_path, records, encoder):
    out = tmp_path / "cache"
    extract(records, encoder, out, dataset_fingerprint="fp-a")
    with pytest.raises(FeatureCacheError, match=r"encoder: cache has 'tiny:test', asked for 'tiny:other'.*delete"):
        extract(records, CountingEncoder("tiny:other"), out, dataset_fingerprint="fp-a")
    with pytest.raises(FeatureCacheError, match=r"dataset fingerprint: cache has 'fp-a', asked for 'fp-b'"):
        extract(records, CountingEncoder(), out, dataset_fingerprint="fp-b")
    with pytest.raises(FeatureCacheError, match=r"dtype: cache has 'float32', asked for 'float16'"):
        extract(records, CountingEncoder(), out, dataset_fingerprint="fp-a", dtype="float16")
    with pytest.raises(FeatureCacheError, match=r"encoder: .*'clip:x'.*; dataset fingerprint: .*'fp-z'"):
        FeatureCache.open(out, expect_encoder="clip:x", expect_fingerprint="fp-z")
    assert len(FeatureCache.open(out, expect_encoder="tiny:test", expect_fingerprint="fp-a")) == 6


def test_directory_that_is_not_a_cache_is_refused(tmp_path, records, encoder):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(FeatureCacheError, match="not a feature cache"):
        extract(records, encoder, tmp_path / "photos")
    with pytest.raises(FeatureCacheError, match="not a feature cache"):
        FeatureCache.open(tmp_path / "photos")


def test_unreadable_images_are_skipped_and_recorded(tmp_path, records, encoder, caplog):
    garbage = tmp_path / "images" / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg")
    truncated = tmp_path / "images" / "truncated.jpg"
    truncated.write_bytes(records[0].image_path.read_bytes()[:200])
    bad = [
        Record("garbage.jpg", garbage, ("a",)),
        Record("truncated.jpg", truncated, ("b",)),
        Record("missing.jpg", tmp_path / "images" / "missing.jpg", ("c",)),
    ]
    mixed = records[:2] + bad + records[2:]
    with caplog.at_level(logging.WARNING):
        cache = extract(mixed, encoder, tmp_path / "cache", batch_size=2, shard_size=3)
    assert set(cache.failed) == {"garbage.jpg", "truncated.jpg", "missing.jpg"}
    assert "missing file" in cache.failed["missing.jpg"] and "garbage.jpg" in cache.failed["garbage.jpg"]
    assert "truncated.jpg" in cache.failed["truncated.jpg"]
    assert cache.ids == [r.image_id for r in records] and cache.manifest["complete"]
    assert "3 of 9 images are missing or could not be read" in caplog.text
    with pytest.raises(FeatureCacheError, match="could not be read"):
        cache.get("garbage.jpg")
    for r in records:
        torch.testing.assert_close(cache.get(r.image_id), expected_features(encoder, r), rtol=0, atol=1e-6)


def test_dataset_fingerprint_covers_image_ids_and_sizes_not_captions(tmp_path, records):
    fp = dataset_fingerprint(records)
    assert dataset_fingerprint(list(reversed(records))) == fp
    assert dataset_fingerprint([replace(r, captions=("x",), split="test") for r in records]) == fp
    assert dataset_fingerprint(records[:5]) != fp
    records[0].image_path.write_bytes(records[0].image_path.read_bytes() + b"\0")
    assert dataset_fingerprint(records) != fp


def test_writer_refuses_wrong_shapes(tmp_path):
    writer = CacheWriter(tmp_path / "c", {"spec": "x:y"}, (3,), "fp")
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        writer.commit(["a", "b"], torch.zeros(2, 4), {})


def test_cache_pickles_without_its_memory_maps(tmp_path, records, encoder):
    cache = extract(records, encoder, tmp_path / "cache")
    before = cache.get(records[0].image_id)
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._maps == {}
    torch.testing.assert_close(clone.get(records[0].image_id), before, rtol=0, atol=0)


def test_clip_encoder_through_the_cache(tmp_path, records):
    clip = load_encoder("clip:captionkit:tiny-clip")
    cache = extract(records[:3], clip, tmp_path / "cache", num_workers=1)
    assert cache.manifest["encoder"]["spec"] == "clip:captionkit:tiny-clip"
    assert "preprocessing" in cache.manifest["encoder"]
    want = clip.encode_images([load_image(r.image_path) for r in records[:3]])
    torch.testing.assert_close(cache.get_many([r.image_id for r in records[:3]]), want, rtol=1e-5, atol=1e-5)
