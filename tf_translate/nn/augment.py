"""Differentiable augmentation of everything a discriminator sees (Zhao et al., *Differentiable
Augmentation for Data-Efficient GAN Training*, NeurIPS 2020): the same kind of random
translation and cutout on real and generated images, inside the graph that G's gradient flows
through, so that D cannot memorise a small real set and G is not pushed toward its memory."""

from __future__ import annotations

import tensorflow as tf

from tf_translate import replicas


def shift_matrices(offsets, size: int, dtype):
    """[n, size, size] 0/1 matrices M with (M @ v)[i] = v[i - offset] (zero where that leaves v)."""
    rows = tf.range(size)[None, :, None]
    cols = tf.range(size)[None, None, :]
    return tf.cast(tf.equal(rows - offsets[:, None, None], cols), dtype)


def diff_augment(images, seed, *, translation: float = 0.125, cutout: float = 0.5, background: float = -1.0):
    """``images`` [n, H, W, C] (H = W), each moved by up to ``translation`` of its side (vacated
    pixels ``background``) and with a square of ``cutout`` of its side, centred anywhere,
    set to ``background``. Differentiable in ``images``; the draws come from ``seed`` (shape [2])
    for the global batch, so that replicas draw as one device."""
    n, size = tf.shape(images)[0], images.shape[1]
    reach = int(round(size * translation))
    u = replicas.draw(lambda m: tf.random.stateless_uniform([m, 4], seed, 0.0, 1.0), n)
    dy, dx = (tf.cast(tf.floor(u[:, k] * (2 * reach + 1)), tf.int32) - reach for k in (0, 1))
    bg = tf.cast(background, images.dtype)
    moved = tf.einsum("nik,nklc,njl->nijc", shift_matrices(dy, size, images.dtype), images - bg,
                      shift_matrices(dx, size, images.dtype))
    side = int(round(size * cutout))
    start = tf.cast(tf.floor(u[:, 2:] * size), tf.int32) - side // 2  # the square's first row and column
    grid = tf.range(size)[None]
    inside = [tf.logical_and(grid >= start[:, k, None], grid < start[:, k, None] + side) for k in (0, 1)]
    keep = 1.0 - tf.cast(tf.logical_and(inside[0][:, :, None], inside[1][:, None, :]), images.dtype)
    return moved * keep[..., None] + bg
