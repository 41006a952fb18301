"""Helpers for tests/scale: a synthetic dataset rewritten as WebDataset tar shards (img2dataset's layout) and as
parquet files, the way users receive web-scale corpora."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path

from captionkit.data.formats import load_dataset
from captionkit.data.synthetic import write_synthetic_dataset

HERE = Path(__file__).resolve().parent


def synthetic(tmp: Path, images: int = 12) -> Path:
    return write_synthetic_dataset(tmp / "synth", images=images, seed=0)


def write_shards(dataset: Path, out: Path, per_shard: int = 4) -> list[Path]:
    """The dataset's images and first captions as out/00000.tar, ... (KEY.jpg + KEY.txt + KEY.json), keys in
    record order; the split goes into KEY.json as img2dataset users often add one."""
    import webdataset as wds

    records = load_dataset(dataset).records
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(0, len(records), per_shard):
        path = out / f"{s // per_shard:05d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for r in records[s : s + per_shard]:
                key = r.image_path.stem
                sink.write(
                    {
                        "__key__": key,
                        "jpg": r.image_path.read_bytes(),
                        "txt": r.captions[0],
                        "json": json.dumps({"key": key, "split": r.split}).encode(),
                    }
                )
        shards.append(path)
    return shards


def write_parquet(dataset: Path, out: Path, per_file: int = 6) -> list[Path]:
    """The dataset as out/train-0000.parquet, ...: columns key, image (bytes), captions (list), split."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = load_dataset(dataset).records
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for s in range(0, len(records), per_file):
        chunk = records[s : s + per_file]
        table = pa.table(
            {
                "key": [r.image_id for r in chunk],
                "image": [r.image_path.read_bytes() for r in chunk],
                "captions": [list(r.captions) for r in chunk],
                "split": [r.split for r in chunk],
            }
        )
        path = out / f"train-{s // per_file:04d}.parquet"
        pq.write_table(table, path)
        files.append(path)
    return files


def append_corrupt_member(shard: Path, key: str = "zz_corrupt") -> None:
    """Add a sample whose image is not a JPEG (bytes of garbage) to a shard."""
    with tarfile.open(shard, "a") as tar:
        for name, data in ((f"{key}.jpg", b"\xff\xd8 this is not a jpeg"), (f"{key}.txt", b"a broken image .")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def truncate(shard: Path, keep_fraction: float = 0.6) -> None:
    """Cut a shard short, as an interrupted download leaves it."""
    data = shard.read_bytes()
    shard.write_bytes(data[: int(len(data) * keep_fraction)])


def subprocess_env() -> dict[str, str]:
    """Offline, one thread per process, this repository importable."""
    repo = str(HERE.parents[1])
    path = os.pathsep.join(p for p in (repo, str(HERE), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": path,
        "TOKENIZERS_PARALLELISM": "false",
    }


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
