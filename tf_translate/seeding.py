"""Stateless randomness: every random choice derives from (seed, step, element, purpose),
so a resumed run makes exactly the choices the uninterrupted run would have made."""

from __future__ import annotations

import tensorflow as tf

# Purposes, folded into the seed so that crops, flips, shuffles and the image pool differ.
SHUFFLE, CROP, FLIP, POOL, DROPOUT, NOISE, AUGMENT, REVERSE, MARKS = range(9)


def derive(seed, *values) -> tf.Tensor:
    """A shape-[2] int32 seed for ``tf.random.stateless_*`` from a base seed and integers."""
    key = tf.stack([tf.cast(seed, tf.int32), tf.constant(0x5EED, tf.int32)])
    for value in values:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(value, tf.int32))
    return key
