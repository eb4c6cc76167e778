"""What a train step needs to act under ``tf.distribute`` as one device acts on the global batch.

Under a strategy each replica's step sees its slice of the global batch: rows
``replica * local .. (replica + 1) * local - 1``. Random draws per sample (dropout masks, target
labels, mixing weights) are made for the whole global batch from the same seed on every
replica, and each replica keeps its own rows, so that 1 or N replicas draw the same numbers
for the same sample. Outside a strategy these are the identity.
"""

from __future__ import annotations

import tensorflow as tf


def count() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def index():
    """This replica's number in its group (0 outside a strategy)."""
    context = tf.distribute.get_replica_context()
    return 0 if context is None else context.replica_id_in_sync_group


def local_rows(values, local: int):
    """This replica's ``local`` rows of a tensor that covers the global batch."""
    if count() == 1:
        return values
    start = index() * local
    return values[start: start + local]


def draw(make, local):
    """``make(n)`` (a random tensor with n rows) for the global batch, this replica's rows."""
    return local_rows(make(local * count()), local)


def gather(values):
    """The global batch of a per-replica tensor, in replica order, on every replica."""
    if count() == 1:
        return values
    out = tf.distribute.get_replica_context().all_gather(values, axis=0)
    if values.shape[0] is not None:
        out.set_shape([values.shape[0] * count(), *values.shape[1:]])
    return out
