"""Shared tf.data pieces: stateless sampling of sources, jitter, scaling to [-1, 1].

A training set is ``Dataset.range(first_sample, ...)`` mapped through functions of the
sample index only, so the data position of a run is its step and nothing else.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_translate import seeding
from tf_translate.data.sources import ImageSource


def pick(source: ImageSource, sample, seed, stream: int):
    """Index of the image that global sample ``sample`` reads from ``source``.

    Each pass over the source is a fresh permutation derived from (seed, pass, stream).
    """
    n = tf.constant(len(source), tf.int64)
    sample = tf.cast(sample, tf.int64)
    key = seeding.derive(seed, seeding.SHUFFLE, stream, sample // n)
    return tf.random.experimental.index_shuffle(sample % n, seed=key, max_index=n - 1)


def read(source: ImageSource, index) -> tf.Tensor:
    """uint8 item ``index`` of ``source`` (an image or a stack of frames, decoded outside the graph)."""
    image = tf.numpy_function(source.load, [index], tf.uint8, stateful=False)
    image.set_shape(source.shape)
    return image


def jitter(images: list, *, crop_size: int, flip: bool, seed, sample) -> list:
    """The same random crop and horizontal flip for every image of a list (e.g. x and y of a pair)."""
    channels = [int(image.shape[-1]) for image in images]
    stacked = tf.concat(images, axis=-1)
    crop = [crop_size, crop_size, sum(channels)]
    stacked = tf.image.stateless_random_crop(stacked, crop, seed=seeding.derive(seed, seeding.CROP, sample))
    if flip:
        stacked = tf.image.stateless_random_flip_left_right(stacked, seed=seeding.derive(seed, seeding.FLIP, sample))
    return tf.split(stacked, channels, axis=-1)


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` square of an (..., H, W, C) array."""
    top, left = (images.shape[-3] - size) // 2, (images.shape[-2] - size) // 2
    return images[..., top: top + size, left: left + size, :]


def first_images(source: ImageSource, limit: int | None, crop: int) -> np.ndarray:
    """The first ``limit`` (default: all) images of ``source``, centre-cropped, float [-1, 1]:
    the fixed held-out and preview images."""
    n = len(source) if limit is None else min(limit, len(source))
    return np.stack([center_crop(source.load(i), crop) for i in range(n)]).astype(np.float32) / 127.5 - 1.0


def to_float(image) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def to_uint8(image) -> tf.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded."""
    return tf.cast(tf.round(tf.clip_by_value((tf.cast(image, tf.float32) + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def indexed(first_sample: int, count: int, batch_size: int, fn, part: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Samples ``first_sample .. first_sample + count - 1`` through ``fn``, in batches of
    ``batch_size`` (one global step each), prefetched. With ``part`` = (i, n), the i-th of n equal
    slices of every batch only, batched by slice: input pipeline i of n (one per worker) reads
    just the samples its replicas train on, the ones one device would give them."""
    i, n = part
    per = batch_size // n
    ds = tf.data.Dataset.range(count // batch_size * per)
    if n > 1:
        ds = ds.map(lambda k: first_sample + (k // per) * batch_size + i * per + k % per)
    else:
        ds = ds.map(lambda k: first_sample + k)
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(per, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
