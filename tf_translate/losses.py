"""Loss functions. Each returns one value per sample (shape ``(batch,)``); a train step
reduces them with :func:`reduce` by the *global* batch size, which keeps gradients right
under ``tf.distribute`` (a plain mean per replica would scale them by the replica count).
"""

from __future__ import annotations

import tensorflow as tf

GAN_LOSSES = ("lsgan", "vanilla", "wgan")


def reduce(per_sample, global_batch_size=None):
    """Mean over the global batch: sum of this replica's values / global batch size."""
    return tf.nn.compute_average_loss(per_sample, global_batch_size=global_batch_size)


def _per_sample_mean(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def gan_loss(kind: str, scores, target_is_real: bool):
    """Adversarial loss on discriminator scores (logits), per sample.

    lsgan: (D - t)^2 (Mao et al., as in CycleGAN); vanilla: sigmoid cross-entropy
    (Goodfellow et al., as in pix2pix); wgan: -D for real, +D for fake (Arjovsky et al.).
    """
    scores = tf.cast(scores, tf.float32)
    if kind == "lsgan":
        target = 1.0 if target_is_real else 0.0
        return _per_sample_mean(tf.square(scores - target))
    if kind == "vanilla":
        labels = tf.ones_like(scores) if target_is_real else tf.zeros_like(scores)
        return _per_sample_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=scores))
    if kind == "wgan":
        return _per_sample_mean(-scores if target_is_real else scores)
    raise ValueError(f"unknown GAN loss {kind!r}; expected one of {', '.join(GAN_LOSSES)}")


def l1(a, b):
    """Mean absolute error per sample."""
    return _per_sample_mean(tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))
