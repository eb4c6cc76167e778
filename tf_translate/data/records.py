"""Prepared datasets: sharded TFRecords that training reads image by image from disk.

``scripts/prepare.py`` loads a dataset in any layout a method reads, exactly as training would
(decoded, checked, resized to the load size), and writes every split into shards of
``tf.train.Example`` records: ``frames`` (PNG bytes, one per image, K for a K-frame stack) and
``index``. Beside them: ``records.json`` (the method's data object, with each image source
replaced by its shards), ``arrays.npz`` (labels and other arrays) and one ``.index.npy`` per
source holding each record's shard, offset and length.

A :class:`RecordSource` stands in for the source it was written from: ``len``, ``shape`` and
``load(i)``, which reads record i alone (``os.pread``: thread-safe, so the parallel map of the
input pipeline reads many shards at once). Nothing is held in memory, so a dataset larger than
memory streams; training keeps its stateless sampling and exact resume; and under
MultiWorkerMirroredStrategy each worker reads only its own part of every global batch.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tf_translate.data.images import DataError

MANIFEST = "records.json"
FORMAT = "tf_translate records 1"
RECORD_HEADER = 12  # uint64 length + uint32 masked CRC before each record's bytes (and a CRC after)


def is_records(source) -> bool:
    return source is not None and (Path(source) / MANIFEST).is_file()


def is_source(value) -> bool:
    """An image source of any kind: random access by index to uint8 arrays of one shape."""
    return hasattr(value, "load") and hasattr(value, "shape") and hasattr(value, "__len__")


# --- writing -------------------------------------------------------------------------------

def write(data, folder: Path, *, kind: str, method: str, load_size: int, shards: int = 0) -> dict:
    """Write ``data`` (a data object of ``kind``) as records in ``folder``; returns the manifest.
    ``shards`` per source: 0 = about 1,000 records each."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise DataError(f"{folder}: not empty; prepare into a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(data, folder, arrays, shards, path="")
    np.savez(folder / "arrays.npz", **arrays)
    manifest = {"format": FORMAT, "method": method, "kind": kind, "load_size": load_size, "data": tree}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _encode(value, folder, arrays, shards, path):
    if is_source(value):
        return _write_source(value, folder, shards, name=path)
    if dataclasses.is_dataclass(value):
        cls = type(value)
        return {"$dataclass": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(value, f.name), folder, arrays, shards, f"{path}.{f.name}".lstrip("."))
                           for f in dataclasses.fields(value)}}
    if isinstance(value, np.ndarray):
        arrays[path] = value
        return {"$array": path}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, folder, arrays, shards, f"{path}.{i}") for i, v in enumerate(value)]}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{path}: cannot store a {type(value).__name__} in records")


def _write_source(source, folder: Path, shards: int, name: str) -> dict:
    import tensorflow as tf
    from tqdm.auto import tqdm

    n = len(source)
    count = shards or max(1, round(n / 1000))
    count = min(count, max(n, 1))
    files = [f"{name}-{k:05d}-of-{count:05d}.tfrecord" for k in range(count)]
    index = np.zeros((n, 3), np.int64)  # shard, offset of the record's bytes, their length
    bounds = np.linspace(0, n, count + 1).round().astype(int)
    with tqdm(total=n, desc=name, unit="image", file=sys.stderr, disable=n < 50) as bar:
        for k, file in enumerate(files):
            offset = 0
            with tf.io.TFRecordWriter(str(folder / file)) as writer:
                for i in range(bounds[k], bounds[k + 1]):
                    record = _example(source.load(i), i)
                    writer.write(record)
                    index[i] = (k, offset + RECORD_HEADER, len(record))
                    offset += RECORD_HEADER + len(record) + 4
                    bar.update(1)
    np.save(folder / f"{name}.index.npy", index)
    shape = [int(s) for s in source.shape]
    return {"$source": name, "count": n, "shape": shape, "shards": files,
            "describe": getattr(source, "describe", name)}


def _example(item: np.ndarray, index: int) -> bytes:
    import tensorflow as tf

    frames = [item] if item.ndim == 3 else list(item)  # (H, W, C) or (K, H, W, C)
    pngs = []
    for frame in frames:
        out = io.BytesIO()
        Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame).save(out, "PNG", compress_level=1)
        pngs.append(out.getvalue())
    feature = {"frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=pngs)),
               "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def sources_of(tree) -> list[dict]:
    """The source entries of a manifest's data tree."""
    if isinstance(tree, dict) and "$source" in tree:
        return [tree]
    children = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, list) else []
    return [entry for child in children for entry in sources_of(child)]


# --- reading -------------------------------------------------------------------------------

class RecordSource:
    """Random access to the records of one prepared source; nothing is cached."""

    def __init__(self, folder: Path, entry: dict):
        self._fds: dict[int, int] = {}  # shard -> open file, opened at its first read
        self.folder = Path(folder)
        self.name = entry["$source"]
        self.describe = f"{folder} ({entry.get('describe', self.name)})"
        self.shape = tuple(entry["shape"])
        self.index = np.load(self.folder / f"{self.name}.index.npy")
        self.files = [self.folder / f for f in entry["shards"]]
        if len(self.index) != entry["count"]:
            raise DataError(f"{self.folder}: {self.name}.index.npy lists {len(self.index)} records, "
                            f"records.json {entry['count']}")
        for k, file in enumerate(self.files):
            if not file.is_file():
                raise DataError(f"{file}: shard missing")
            mine = self.index[self.index[:, 0] == k]
            end = int((mine[:, 1] + mine[:, 2]).max()) + 4 if len(mine) else 0
            if file.stat().st_size < end:
                raise DataError(f"{file}: truncated ({file.stat().st_size} bytes, its records need {end})")

    def __len__(self) -> int:
        return len(self.index)

    def _read(self, i: int) -> bytes:
        shard, offset, length = (int(v) for v in self.index[i])
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.files[shard], os.O_RDONLY)
        return os.pread(fd, length, offset)

    def load(self, index: int) -> np.ndarray:
        import tensorflow as tf

        i = int(index)
        example = tf.train.Example.FromString(self._read(i))
        pngs = example.features.feature["frames"].bytes_list.value
        frames = [np.asarray(Image.open(io.BytesIO(png))) for png in pngs]
        frames = [f[..., None] if f.ndim == 2 else f for f in frames]
        item = frames[0] if len(self.shape) == 3 else np.stack(frames)
        if item.shape != self.shape:
            raise DataError(f"{self.files[int(self.index[i, 0])]}: record {i} holds {item.shape}, expected {self.shape}")
        return item

    def label(self, index: int) -> str:
        return f"{self.name}_{int(index):06d}"

    def __del__(self):
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass


def load(folder, kind: str, cfg):
    """The data object of kind ``kind`` stored in ``folder``, with RecordSources for its images
    and the run's crop size."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise DataError(f"{folder / MANIFEST}: not a tf_translate records manifest ({manifest.get('format')!r})")
    if manifest["kind"] != kind:
        raise DataError(f"{folder}: prepared for {manifest['method']} ({manifest['kind']} data); "
                        f"--method {cfg.method} reads {kind} data")
    if manifest["load_size"] != cfg.data.load_size:
        raise DataError(f"{folder}: prepared at load size {manifest['load_size']}, this run asks "
                        f"--load-size {cfg.data.load_size}; use {manifest['load_size']} or prepare again")
    with np.load(folder / "arrays.npz") as stored:
        arrays = {k: stored[k] for k in stored.files}
    data = _decode(manifest["data"], folder, arrays)
    return dataclasses.replace(data, crop_size=cfg.data.crop_size)


def _decode(tree, folder, arrays):
    if isinstance(tree, dict) and "$source" in tree:
        return RecordSource(folder, tree)
    if isinstance(tree, dict) and "$dataclass" in tree:
        module, name = tree["$dataclass"].split(":")
        if not module.startswith("tf_translate.data."):  # build only our own data classes
            raise DataError(f"{folder / MANIFEST}: unexpected data class {tree['$dataclass']}")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: _decode(v, folder, arrays) for k, v in tree["fields"].items()})
    if isinstance(tree, dict) and "$array" in tree:
        return arrays[tree["$array"]]
    if isinstance(tree, dict) and "$tuple" in tree:
        return tuple(_decode(v, folder, arrays) for v in tree["$tuple"])
    return tree
