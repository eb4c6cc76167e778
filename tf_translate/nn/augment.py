"""Differentiable augmentation of everything a discriminator sees (Zhao et al., *Differentiable
Augmentation for Data-Efficient GAN Training*, NeurIPS 2020): the same kind of random
translation and cutout on real and generated images, inside the graph that G's gradient flows
through, so that D cannot memorise a small real set and G is not pushed toward its memory; and
negatives for a discriminator of drawings (``stray_marks``)."""

from __future__ import annotations

import math

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


def stray_marks(images, seed, *, apart: int = 3, marks: int = 2, threshold: float = 0.2, background: float = -1.0):
    """Negative data augmentation (Sinha et al., *Negative Data Augmentation*, ICLR 2021) for
    drawings (``images`` [n, H, W, 1] in [-1, 1], light ink on ``background``): half of them, at
    random, with one to ``marks`` dots or short dashes of ink (Gaussian blobs of deviation 0.7-3
    pixels along, 0.7-1.2 across, at any angle, of ink 0.6-1) centred at least ``apart`` pixels
    from ink above ``threshold`` and off the border, not touching it; the other half with a gap
    cut through the stroke (a disk of radius 1.5-2.5 blanked on a pixel of ink above 0.5). Both
    are what a real digit is not, so a discriminator shown them as fakes learns marks and broken
    strokes as signs of a fake. The draws come from ``seed`` (shape [2]) for the global batch, as
    in ``diff_augment``."""
    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    dtype = images.dtype
    ink = (images - background) / 2.0
    u = replicas.draw(lambda m: tf.random.stateless_uniform([m, marks + 1, 5 + h * w], seed, 0.0, 1.0, dtype), n)
    rows, cols = tf.range(h, dtype=dtype)[None, :, None], tf.range(w, dtype=dtype)[None, None, :]

    def at(score, draw):
        """Row and column [n, 1, 1] of the highest of ``score`` [n, H, W] times a draw's uniforms."""
        flat = tf.argmax(tf.reshape(score * tf.reshape(draw[:, 5:], [n, h, w]), [n, h * w]), axis=1,
                         output_type=tf.int32)
        return (tf.cast(tf.reshape(v, [n, 1, 1]), dtype) for v in (flat // w, flat % w))

    inner = tf.pad(tf.ones([h - 4, w - 4], dtype), [[2, 2], [2, 2]])[None]
    inked = tf.cast(ink > threshold, dtype)
    free = (1.0 - tf.nn.max_pool2d(inked, 2 * apart + 1, 1, "SAME")[..., 0]) * inner
    untouched = 1.0 - tf.nn.max_pool2d(inked, 3, 1, "SAME")[..., 0]  # a mark's tail stops short of the digit
    drawn = tf.zeros_like(ink[..., 0])
    for k in range(marks):
        d = u[:, k]
        r, c = at(free + 1e-6 * inner, d)
        angle, long, wide, level = (d[:, i, None, None] for i in range(4))
        angle = angle * math.pi
        a = (rows - r) * tf.cos(angle) + (cols - c) * tf.sin(angle)
        b = (cols - c) * tf.cos(angle) - (rows - r) * tf.sin(angle)
        blob = (0.6 + 0.4 * level) * tf.exp(-0.5 * (a / (0.7 + 2.3 * long)) ** 2 - 0.5 * (b / (0.7 + 0.5 * wide)) ** 2)
        present = 1.0 if k == 0 else tf.cast(d[:, 4, None, None] < 0.5, dtype)
        drawn = tf.maximum(drawn, blob * present)
    gap = u[:, marks]
    r, c = at(tf.cast(ink[..., 0] > 0.5, dtype) + 1e-6, gap)
    radius = 1.5 + gap[:, 0, None, None]
    cut = tf.cast((rows - r) ** 2 + (cols - c) ** 2 > radius**2, dtype)
    marked = tf.maximum(ink[..., 0], drawn * untouched)
    kind = tf.cast(gap[:, 1, None, None] < 0.5, dtype)
    return (kind * marked + (1.0 - kind) * ink[..., 0] * cut)[..., None] * 2.0 + background
