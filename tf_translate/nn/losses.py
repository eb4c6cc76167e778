"""Loss functions. Each returns one value per sample (shape ``(batch,)``); a train step
reduces them with :func:`reduce` by the *global* batch size, which keeps gradients right
under ``tf.distribute`` (a plain mean per replica would scale them by the replica count).
"""

from __future__ import annotations

import tensorflow as tf

from tf_translate.errors import UsageError
from tf_translate.nn.layers import output_dtype

GAN_LOSSES = ("lsgan", "vanilla", "wgan")


def reduce(per_sample, global_batch_size=None):
    """Mean over the global batch: sum of this replica's values / global batch size."""
    return tf.nn.compute_average_loss(per_sample, global_batch_size=global_batch_size)


def wide(x):
    """``x`` in float32 (from 16-bit compute dtypes), or kept in float64 (``layers.output_dtype``)."""
    x = tf.convert_to_tensor(x)
    return tf.cast(x, output_dtype(x.dtype))


def _per_sample_mean(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def _per_sample_sum(x):
    return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def gan_loss(kind: str, scores, target_is_real: bool):
    """Adversarial loss on discriminator scores (logits), per sample.

    lsgan: (D - t)^2 (Mao et al., as in CycleGAN); vanilla: sigmoid cross-entropy
    (Goodfellow et al., as in pix2pix); wgan: -D for real, +D for fake (Arjovsky et al.).
    """
    scores = wide(scores)
    if kind == "lsgan":
        target = 1.0 if target_is_real else 0.0
        return _per_sample_mean(tf.square(scores - target))
    if kind == "vanilla":
        labels = tf.ones_like(scores) if target_is_real else tf.zeros_like(scores)
        return _per_sample_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=scores))
    if kind == "wgan":
        return _per_sample_mean(-scores if target_is_real else scores)
    raise UsageError(f"unknown GAN loss {kind!r}; expected one of {', '.join(GAN_LOSSES)}")


def l1(a, b):
    """Mean absolute error per sample."""
    return _per_sample_mean(tf.abs(wide(a) - wide(b)))


def gram(features):
    """Gram matrices F Fᵀ / (C·H·W) per sample, (batch, C, C): channel correlations over all
    positions, normalised by the layer's size (Johnson et al.; chainer-gogh). The paper's
    G = F Fᵀ is this times N·M (channels N, positions M)."""
    features = wide(features)
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], -1, shape[3]])
    size = tf.cast(shape[1] * shape[2] * shape[3], features.dtype)
    return tf.matmul(flat, flat, transpose_a=True) / size


def sum_squares(x):
    """Sum of squares per sample."""
    return _per_sample_sum(tf.square(wide(x)))


def mse(a, b):
    """Mean squared error per sample."""
    return _per_sample_mean(tf.square(wide(a) - wide(b)))


def total_variation(images):
    """Sum of squared differences between neighbouring pixels per sample (the smoothness
    regulariser of Mahendran & Vedaldi with beta 2, as in Johnson et al.'s code)."""
    images = wide(images)
    return sum_squares(images[:, 1:, :, :] - images[:, :-1, :, :]) + sum_squares(images[:, :, 1:, :] - images[:, :, :-1, :])


def gradient_penalty(critic, real, fake, alpha):
    """WGAN-GP's penalty per sample (Gulrajani et al. 2017): (‖∇ critic(x̂)‖₂ − 1)² at
    x̂ = α·real + (1 − α)·fake, ``alpha`` one uniform number per sample; ``critic`` maps
    images to scores whose sum per sample is differentiated (a PatchGAN's patch scores, as
    StarGAN's code does)."""
    real, fake = wide(real), wide(fake)
    alpha = tf.cast(alpha, real.dtype)
    mixed = alpha[:, None, None, None] * real + (1.0 - alpha[:, None, None, None]) * fake
    with tf.GradientTape() as tape:
        tape.watch(mixed)
        scores = wide(critic(mixed))
    grads = tape.gradient(scores, mixed)
    norms = tf.sqrt(tf.reduce_sum(tf.square(tf.reshape(grads, [tf.shape(grads)[0], -1])), axis=1) + 1e-12)
    return tf.square(norms - 1.0)


def domain_classification(logits, labels, multi_label: bool):
    """StarGAN's domain classification loss per sample: softmax cross-entropy against a
    one-hot target domain (single-label), or the sum of sigmoid cross-entropies over binary
    attributes (multi-label, as for CelebA)."""
    logits, labels = wide(logits), wide(labels)
    if multi_label:
        return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=1)
    return tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def anisotropic_total_variation(images):
    """Sum of absolute differences between neighbouring pixels per sample (DTN's L_TV)."""
    images = wide(images)
    absolute = lambda d: tf.reduce_sum(tf.reshape(tf.abs(d), [tf.shape(d)[0], -1]), axis=1)  # noqa: E731
    return absolute(images[:, 1:, :, :] - images[:, :-1, :, :]) + absolute(images[:, :, 1:, :] - images[:, :, :-1, :])


def largest_stroke(ink, threshold: float = 0.5, below: float = 1.0):
    """Which pixels of each drawing (``ink`` in [0, 1], light strokes on dark, ``(batch, H, W,
    1)``) lie in its largest 8-connected piece of ink above ``threshold`` (by summed ink), or in
    a piece with at least ``below`` times its ink, as 0 or 1 without gradient: every inked pixel
    starts with its own number, and 3x3 max pooling spreads the largest number through each
    piece until none changes."""
    ink = tf.stop_gradient(ink)
    on = ink > threshold
    n, h, w = tf.shape(ink)[0], ink.shape[1], ink.shape[2]
    numbers = tf.where(on, tf.reshape(tf.range(1, h * w + 1, dtype=ink.dtype), [1, h, w, 1]), tf.zeros_like(ink))

    def spread(labels, _):
        wider = tf.where(on, tf.nn.max_pool2d(labels, 3, 1, "SAME"), labels)
        return wider, tf.reduce_any(wider > labels)

    labels, _ = tf.while_loop(lambda labels, changed: changed, spread, (numbers, tf.constant(True)),
                              maximum_iterations=h * w)
    piece = tf.cast(labels, tf.int32) + (h * w + 1) * tf.range(n)[:, None, None, None]
    piece_ink = tf.gather(tf.math.unsorted_segment_sum(ink, piece, n * (h * w + 1)), piece) * tf.cast(on, ink.dtype)
    largest = tf.reduce_max(piece_ink, axis=[1, 2, 3], keepdims=True)
    return tf.cast(tf.logical_and(piece_ink >= below * largest, largest > 0), ink.dtype)


def _read(images, threshold: float, below: float = 1.0):
    """(ink in [0, 1], which of its pixels a reader of the largest stroke sees): each drawing's
    largest stroke (``largest_stroke``) grown by one pixel to keep its faint edge, or all of a
    drawing with no ink above ``threshold``."""
    ink = (tf.reduce_mean(wide(images), axis=-1, keepdims=True) + 1.0) / 2.0
    stroke = largest_stroke(ink, threshold, below)
    seen = tf.logical_or(tf.nn.max_pool2d(stroke, 3, 1, "SAME") > 0,
                         tf.reduce_max(stroke, axis=[1, 2, 3], keepdims=True) == 0)
    return ink, seen


def one_stroke(images, threshold: float = 0.5, below: float = 1.0):
    """(``images`` in [-1, 1], light strokes on dark, with the ink apart from each drawing's
    largest stroke and from pieces holding at least ``below`` of its ink erased to the
    background, -1; the share of each drawing's ink so erased), from one search (``_read``).
    The first is a drawing as a reader sees it when marks beside the digit tell it nothing
    (with ``below`` 1, pieces of a broken stroke neither): the gradient reaches the kept pixels
    only. The second is L_STROKE per sample: dots and strokes beside the digit, pieces of a
    broken stroke and faint haze more than a pixel from the kept pieces; its gradient darkens
    that ink only, and a page with no ink above ``threshold`` costs nothing."""
    ink, seen = _read(images, threshold, below)
    kept = tf.where(seen, images, -tf.ones_like(images))
    erased = (_per_sample_sum(ink * tf.cast(tf.logical_not(seen), ink.dtype))
              / (tf.stop_gradient(_per_sample_sum(ink)) + 1e-3))
    return kept, erased


def largest_stroke_alone(images, threshold: float = 0.5, below: float = 1.0):
    """``images`` with the ink apart from each drawing's largest stroke erased (``one_stroke``)."""
    return one_stroke(images, threshold, below)[0]


def erased_share(images, threshold: float = 0.5, below: float = 1.0):
    """L_STROKE per sample: the share of a drawing's ink that ``largest_stroke_alone`` erases
    (``one_stroke``)."""
    return one_stroke(images, threshold, below)[1]


# DTN's ternary discriminator classes: G(x) of a source x, G(x) of a target x, a real target x.
FAKE_SOURCE, FAKE_TARGET, REAL_TARGET = range(3)


def _ternary(logits, label: int):
    logits = wide(logits)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.fill(tf.shape(logits)[:1], label), logits)


def dtn_discriminator_loss(on_fake_source, on_fake_target, on_real_target):
    """L_D per sample: -log D_1(G(x_s)) - log D_2(G(x_t)) - log D_3(x_t) (softmax over 3 classes)."""
    return (_ternary(on_fake_source, FAKE_SOURCE) + _ternary(on_fake_target, FAKE_TARGET)
            + _ternary(on_real_target, REAL_TARGET))


def dtn_negative_loss(on_negative):
    """Per sample -log D_2 of negatives (real target images made unreal): D reads them as G(x) of a target."""
    return _ternary(on_negative, FAKE_TARGET)


def dtn_generator_loss(on_fake_source, on_fake_target):
    """L_GANG per sample: -log D_3(G(x_s)) - log D_3(G(x_t))."""
    return _ternary(on_fake_source, REAL_TARGET) + _ternary(on_fake_target, REAL_TARGET)


def mode_seeking(images, codes, labels):
    """Mode seeking (Mao et al., *Mode Seeking GANs*, CVPR 2019) between the images a generator
    drew from ``codes``, per sample i: 1 / (r_i + 1e-5), r_i the mean over the other samples j
    of i's class of |G_i - G_j| / |c_i - c_j| (mean absolute differences), 0 for a sample alone
    in its class in the batch (a replica's batch under tf.distribute): small when unlike codes
    give unlike images."""
    images, codes = wide(images), wide(codes)
    n = tf.shape(images)[0]
    flat, flat_codes = tf.reshape(images, [n, -1]), tf.reshape(codes, [n, -1])
    apart = tf.reduce_mean(tf.abs(flat[:, None] - flat[None]), axis=-1)
    codes_apart = tf.reduce_mean(tf.abs(flat_codes[:, None] - flat_codes[None]), axis=-1)
    pairs = tf.cast(tf.logical_and(tf.equal(labels[:, None], labels[None]), tf.logical_not(tf.eye(n, dtype=tf.bool))),
                    images.dtype)
    count = tf.reduce_sum(pairs, axis=1)
    ratio = tf.reduce_sum(pairs * apart / (codes_apart + 1e-8), axis=1) / tf.maximum(count, 1.0)
    return tf.where(count > 0, 1.0 / (ratio + 1e-5), tf.zeros_like(ratio))


def flow_smoothness(flow):
    """Mean absolute difference between neighbouring flow vectors per sample (Super SloMo's
    smoothness loss, on flows in pixels)."""
    flow = wide(flow)
    return _per_sample_mean(tf.abs(flow[:, 1:, :, :] - flow[:, :-1, :, :])) + _per_sample_mean(
        tf.abs(flow[:, :, 1:, :] - flow[:, :, :-1, :]))
