"""Reading a PyTorch checkpoint (``torch.save(net.state_dict(), path)``) into numpy arrays,
without torch.

Two layouts exist. Since PyTorch 1.6 a checkpoint is a zip: ``<name>/data.pkl`` pickles the
state dict with each tensor's storage as a persistent id, and ``<name>/data/<key>`` holds
that storage's raw bytes. Before, the file was a sequence of pickles (a magic number, the
protocol, system information, the state dict, the storage keys) followed by each storage
as a little-endian int64 element count and the raw bytes. Both are read here.

A TorchScript archive (``torch.jit.save``) is the same zip, but ``data.pkl`` pickles the
module tree: objects of ``__torch__.*`` classes whose attributes are their parameters and
submodules. Those are read as inert attribute bags and flattened into dotted names, in the
order of the module's ``state_dict()``; its code (``code/``) is never read.

Only what a state dict holds is unpickled (ordered dicts, tensors, storages, TorchScript's
attribute bags and int lists); any other class, such as a whole pickled ``nn.Module``, is
refused by name, so reading a checkpoint never runs code from it.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from tf_translate.errors import UsageError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch.<Name>Storage -> numpy dtype; bfloat16 is read as uint16 and widened below
STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class CheckpointError(UsageError):
    """A file that is not a readable PyTorch state dict; the message names the file."""


class _Storage:
    """A storage named in the pickle; its bytes arrive later (legacy) or on demand (zip)."""

    def __init__(self, dtype: str, key: str, numel: int):
        self.dtype, self.key, self.numel, self.array = dtype, key, int(numel), None


class _Tensor:
    """A tensor as the pickle describes it: a strided view of a storage."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def array(self, label: str) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise CheckpointError(f"{label}: storage {self.storage.key} is missing")
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) if all(self.size) else -1
        if last >= data.size:
            raise CheckpointError(f"{label}: a tensor reaches past the end of its storage (truncated file?)")
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size,
                                               [s * data.itemsize for s in self.stride])
        out = np.array(view)
        if self.storage.dtype == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


class ScriptObject:
    """An object of a TorchScript class (``__torch__.*``): unpickling fills its ``__dict__``
    with the module's attributes and nothing else happens."""


_SCRIPT_CLASSES: dict[str, type] = {}


def _script_class(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _SCRIPT_CLASSES:
        _SCRIPT_CLASSES[key] = type(name, (ScriptObject,), {"qualname": key})
    return _SCRIPT_CLASSES[key]


def _flatten(obj: ScriptObject, prefix: str, out: dict) -> dict:
    for key, value in vars(obj).items():
        if isinstance(value, _Tensor):
            out[prefix + key] = value
        elif isinstance(value, ScriptObject):
            _flatten(value, f"{prefix}{key}.", out)
    return out


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *_):
    return data


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, label: str, storages: dict):
        super().__init__(file)
        self.label, self.storages = label, storages

    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return ALLOWED[module, name]
        if module == "torch" and name in STORAGES:
            return _StorageType(name)
        if module.startswith("__torch__."):
            return _script_class(module, name)
        raise CheckpointError(f"{self.label}: not a plain state dict: it pickles {module}.{name} "
                              "(save net.state_dict(), as the reference code does)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.label}: unknown persistent id {pid!r:.60}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self.label}: unknown storage type {storage_type!r:.60}")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.name, key, numel)
        return self.storages[key]


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch checkpoint or TorchScript archive, name -> numpy array
    (float16 and bfloat16 widened to float32). A checkpoint that wraps the state dict
    (``{"state_dict": ...}``) is unwrapped."""
    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    storages: dict[str, _Storage] = {}
    try:
        if zipfile.is_zipfile(path):
            obj = _read_zip(path, label, storages)
        elif _head(path) == b"PK\x03\x04":
            raise CheckpointError(f"{label}: a damaged or truncated zip (its directory is unreadable)")
        else:
            obj = _read_legacy(path, label, storages)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, ValueError, TypeError,
            AttributeError, IndexError) as e:
        raise CheckpointError(f"{label}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})"[:300]) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, ScriptObject):  # a TorchScript module: its parameters by dotted name
        obj = _flatten(obj, "", {})
    if not isinstance(obj, dict) or not any(isinstance(v, _Tensor) for v in obj.values()):
        raise CheckpointError(f"{label}: holds no state dict of tensors")
    out = {}
    for key, value in obj.items():
        if isinstance(value, _Tensor):
            array = value.array(f"{label} [{key}]")
            out[key] = array.astype(np.float32) if array.dtype == np.float16 else array
    return out


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


def _read_zip(path: Path, label: str, storages: dict):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl")]
        if not pickles:
            raise CheckpointError(f"{label}: a zip without data.pkl, not a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        order = archive.read(f"{prefix}byteorder").decode() if f"{prefix}byteorder" in names else "little"
        obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), label, storages).load()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise CheckpointError(f"{label}: storage {member} is missing")
            dtype = np.dtype(STORAGES[storage.dtype]).newbyteorder("<" if order == "little" else ">")
            storage.array = np.frombuffer(archive.read(member), dtype).astype(dtype.newbyteorder("="))
    return obj


def _read_legacy(path: Path, label: str, storages: dict):
    with open(path, "rb") as f:
        head = _Unpickler(f, label, storages)
        try:
            magic = head.load()
        except Exception:
            raise CheckpointError(f"{label}: not a PyTorch checkpoint (neither a zip nor a legacy pickle)") from None
        if magic != LEGACY_MAGIC:
            raise CheckpointError(f"{label}: not a PyTorch checkpoint (no PyTorch magic number)")
        head.load()  # protocol version
        info = head.load()
        if isinstance(info, dict) and not info.get("little_endian", True):
            raise CheckpointError(f"{label}: written on a big-endian machine; not supported")
        obj = _Unpickler(f, label, storages).load()
        keys = _Unpickler(f, label, storages).load()
        for key in keys:
            storage = storages.get(str(key))
            count = int.from_bytes(f.read(8), "little")
            if storage is None:
                raise CheckpointError(f"{label}: storage {key} is not used by any tensor")
            dtype = np.dtype(STORAGES[storage.dtype])
            data = f.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise CheckpointError(f"{label}: truncated (storage {key} ends early)")
            storage.array = np.frombuffer(data, "<" + dtype.str[1:] if dtype.itemsize > 1 else dtype).astype(dtype)
    return obj
