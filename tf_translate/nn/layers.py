"""Small reusable layers and blocks shared by every network."""

from __future__ import annotations

import contextvars

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tf_translate import replicas, seeding
from tf_translate.errors import UsageError


# N(0, 0.02), as the CycleGAN, pix2pix and DCGAN papers initialise convolutions.
def weight_init(seed: int | None = None) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(0.0, 0.02, seed=seed)


class ReflectionPadding2D(layers.Layer):
    """Reflection padding of the spatial dimensions (PyTorch's ``nn.ReflectionPad2d``).

    REFLECT needs the pad to be smaller than the side, so networks using it have a minimum
    input size (``min_size`` of the model); a conditional fallback would put a ``tf.If`` in
    the graph, which a builtin-ops TFLite conversion rejects.
    """

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], "REFLECT")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else n + 2 * self.padding  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


class NearestUpsampling2D(layers.Layer):
    """2x nearest-neighbour up-sampling as a channel concatenation and a depth-to-space.
    Keras' ``UpSampling2D`` repeats along each axis, which on dynamic shapes loses the
    channel count the TFLite converter needs for the convolution that follows, and
    ``tf.image.resize``'s gradient has no XLA kernel; CONCATENATION and DEPTH_TO_SPACE are
    TFLite builtins (int8 too) and differentiate under XLA."""

    def call(self, x):
        return tf.nn.depth_to_space(tf.concat([x] * 4, axis=-1), 2)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


def output_dtype(compute=None) -> str:
    """The dtype of network outputs, losses and norm statistics: float32 under every policy
    (the 16-bit ones included) but float64, which the lockstep tests against the reference
    code run in. ``compute``: a tensor's dtype instead of the global policy's."""
    compute = compute if compute is not None else keras.config.dtype_policy().compute_dtype
    return "float64" if tf.as_dtype(compute) == tf.float64 else "float32"


def label_planes(vectors, like):
    """Vectors [batch, N] (style weights, domain labels) as constant planes [batch, H, W, N]
    at ``like``'s height and width, the form a conditional generator takes them in."""
    shape = tf.shape(like)
    return tf.tile(vectors[:, None, None, :], [1, shape[1], shape[2], 1])


class InstanceNorm(layers.Layer):
    """Instance normalisation (Ulyanov et al. 2016): per sample and channel, over H and W.

    Written with mean, multiply and rsqrt, not ``tf.nn.moments`` or GroupNormalization, so a
    full-integer TFLite conversion keeps no float islands (no SQUARE, no NEG). Equal in float
    to ``keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)``; epsilon 1e-5 as in the
    PyTorch references. Statistics are computed in float32 whatever the compute dtype (float64
    in float64).
    """

    def __init__(self, epsilon: float = 1e-5, center: bool = True, scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.center = center
        self.scale = scale

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma") if self.scale else None
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta") if self.center else None

    def call(self, x):
        dtype = x.dtype
        x = tf.cast(x, output_dtype(dtype))
        shared = _SHARED_STATISTICS.get()
        if shared is not None and shared.given is not None:  # a tile: the whole image's statistics
            channels = x.shape[-1]
            mean = shared.given[:, None, None, shared.offset: shared.offset + channels]
            variance = shared.given[:, None, None, shared.offset + channels: shared.offset + 2 * channels]
            shared.offset += 2 * channels
            centered = x - mean
        else:
            mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
            centered = x - mean
            variance = tf.reduce_mean(centered * centered, axis=[1, 2], keepdims=True)
            if shared is not None:
                shared.recorded += [mean[:, 0, 0, :], variance[:, 0, 0, :]]
        y = centered * tf.math.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            y = y * tf.cast(self.gamma, x.dtype)
        if self.beta is not None:
            y = y + tf.cast(self.beta, x.dtype)
        return tf.cast(y, dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "center": self.center, "scale": self.scale}


NORMS = ("instance", "batch", "none")


class SharedStatistics:
    """Instance-norm statistics carried from one call of a network to another, so that tiles
    of a large image are normalised as the whole image is (statistics per tile shift the
    colour of each tile). Inside ``with SharedStatistics() as s:`` a call records every
    InstanceNorm's mean and variance, in call order, into ``s.flat()`` ([batch, 2 * sum of
    channels]); inside ``with SharedStatistics(flat):`` each InstanceNorm uses its slice of
    ``flat`` instead of its input's statistics. Read when a network is traced, so it works
    inside tf.function and exported signatures."""

    def __init__(self, given=None):
        self.given, self.offset, self.recorded = given, 0, []

    def flat(self):
        return tf.concat(self.recorded, axis=-1)

    def __enter__(self):
        self.token = _SHARED_STATISTICS.set(self)
        return self

    def __exit__(self, *exc):
        _SHARED_STATISTICS.reset(self.token)


_SHARED_STATISTICS = contextvars.ContextVar("shared_instance_norm_statistics", default=None)


def norm(kind: str, name: str, affine: bool = True) -> layers.Layer:
    """The normalisation layer named ``kind``: instance (default), batch, or none (identity).
    ``affine=False``: an instance norm without the learned scale and shift (CycleGAN's and
    pix2pix's ``InstanceNorm2d(affine=False)``; StarGAN's and Johnson's have them)."""
    if kind == "instance":
        return InstanceNorm(center=affine, scale=affine, name=name)
    if kind == "batch":
        # synchronized: statistics of the global batch under tf.distribute, as on one device
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True, name=name)
    if kind == "none":
        return layers.Identity(name=name)
    raise UsageError(f"unknown norm {kind!r}; expected one of {', '.join(NORMS)}")


def activation(kind: str | None, name: str):
    if kind is None:
        return lambda x: x
    if kind.startswith("lrelu"):
        slope = float(kind[len("lrelu"):] or 0.2)
        return layers.LeakyReLU(negative_slope=slope, name=name)
    return layers.Activation(kind, name=name)


def conv_block(
    x,
    filters: int,
    kernel: int,
    *,
    name: str,
    stride: int = 1,
    pad: str = "zero",
    norm_kind: str = "instance",
    act: str | None = "relu",
    transpose: bool = False,
    use_bias: bool = True,
    affine: bool = True,
):
    """Padding -> (transposed) convolution -> norm -> activation, the unit of every network.

    ``pad`` is ``reflect`` or ``zero`` (explicit, PyTorch-style k//2 or 1 for 4x4 kernels),
    ``same`` (Keras same padding) or ``valid``. A transposed convolution has Keras' ``same``
    output grid unless ``pad`` is ``torch``: then PyTorch's ``ConvTranspose2d(padding=p,
    output_padding=stride + 2p - kernel)``, which for a 3x3 kernel samples one pixel later.
    ``affine``: the instance norm's scale and shift (``norm``).
    """
    if transpose:
        torch_grid = pad == "torch"
        x = layers.Conv2DTranspose(
            filters, kernel, strides=stride, padding="valid" if torch_grid else "same", use_bias=use_bias,
            kernel_initializer=weight_init(), name=f"{name}_deconv",
        )(x)
        if torch_grid:  # PyTorch crops p from the full output's start and p - output_padding from its end
            p = (kernel - 1) // 2 if kernel % 2 else 1
            cut = (p, p - (stride + 2 * p - kernel))
            x = layers.Cropping2D((cut, cut), name=f"{name}_crop")(x)
    else:
        padding = "valid"
        amount = (kernel - 1) // 2 if kernel % 2 else 1
        if pad == "reflect":
            x = ReflectionPadding2D(amount, name=f"{name}_pad")(x)
        elif pad == "zero":
            x = layers.ZeroPadding2D(amount, name=f"{name}_pad")(x)
        else:
            padding = pad
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, use_bias=use_bias,
            kernel_initializer=weight_init(), name=f"{name}_conv",
        )(x)
    if norm_kind != "none":
        x = norm(norm_kind, f"{name}_norm", affine)(x)
    return activation(act, f"{name}_act")(x)


def residual_block(x, filters: int, *, name: str, norm_kind: str = "instance", pad: str = "reflect", **conv):
    """Two 3x3 convolutions with a skip connection (He et al.), as in CycleGAN and Johnson et
    al.; ``conv``: more ``conv_block`` arguments (``use_bias``, ``affine``)."""
    y = conv_block(x, filters, 3, name=f"{name}_a", pad=pad, norm_kind=norm_kind, act="relu", **conv)
    y = conv_block(y, filters, 3, name=f"{name}_b", pad=pad, norm_kind=norm_kind, act=None, **conv)
    return layers.Add(name=f"{name}_add")([x, y])


class StatelessDropout(layers.Layer):
    """Dropout whose training mask derives from a seed, so a resumed run drops the units the
    uninterrupted one would have.

    The model sets ``seed_fn``, a function returning a [2] int32 seed (from its seed and the
    step) read while the training step is traced; the mask is drawn for the global batch and
    each replica keeps its rows (``replicas.draw``), so replicas drop what one device would.
    With ``at_test`` set (pix2pix's test-time noise) inference drops units too, with fresh
    randomness per call.
    """

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed_fn = None
        self.at_test = False

    def call(self, x, training=False):
        if self.rate == 0.0 or not (training or self.at_test):
            return x
        if training and self.seed_fn is not None:
            seed, shape = self.seed_fn(), tf.shape(x)
            # tf.nn.experimental.stateless_dropout's mask, for the global batch
            uniform = replicas.draw(lambda n: tf.random.stateless_uniform(
                tf.concat([[n], shape[1:]], 0), seed, dtype=x.dtype), shape[0])
            return x * tf.cast(1.0 / (1.0 - self.rate), x.dtype) * tf.cast(uniform >= self.rate, x.dtype)
        return tf.nn.dropout(x, self.rate)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class FrameBlend(layers.Layer):
    """A fixed linear mix of stacked RGB frames: output frame ``t`` is
    ``sum_i weights[i, t] * input frame i`` (``weights``: (frames in, frames out)), as a 1x1
    convolution with a constant kernel. No trainable weights."""

    def __init__(self, weights, **kwargs):
        super().__init__(**kwargs)
        self.blend = [[float(w) for w in row] for row in weights]

    def call(self, x):
        kernel = tf.constant(np.kron(np.asarray(self.blend), np.eye(3))[None, None], x.dtype)
        return tf.nn.conv2d(x, kernel, 1, "VALID")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3 * len(self.blend[0]))

    def get_config(self):
        return {**super().get_config(), "weights": self.blend}


def principal(deviations: np.ndarray, share: float) -> np.ndarray:
    """The fewest principal directions of ``deviations`` (rows, about their mean) that hold
    ``share`` of their variance, as orthonormal rows; every axis for ``share`` 1 or fewer than two rows."""
    dims = deviations.shape[1]
    if share >= 1 or len(deviations) < 2:
        return np.eye(dims)
    _, values, directions = np.linalg.svd(deviations, full_matrices=False)
    held = np.cumsum(values**2) / max(np.sum(values**2), np.finfo(float).tiny)
    return directions[: int(np.searchsorted(held, share)) + 1]


def coloring(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The linear map M (rows times M) that gives rows with ``source``'s covariance ``target``'s:
    C_s^-1/2 C_t^1/2 (CORAL, Sun et al. 2016), C_s regularised by a thousandth of its mean variance."""
    def power(c, p):
        w, u = np.linalg.eigh(c)
        return (u * np.maximum(w, 1e-12) ** p) @ u.T
    dims = source.shape[1]
    cs, ct = (np.atleast_2d(np.cov(d, rowvar=False)) for d in (source, target))
    cs = cs + 1e-3 * np.trace(cs) / dims * np.eye(dims)
    return power(cs, -0.5) @ power(ct, 0.5)


class ClassAlignment(layers.Layer):
    """A feature vector moved from one domain's class statistics to another's (class-conditional
    moment matching): ``max(0, sum_k p_k (mu_t[k] + r_k P_k (v - mu_s[k])))`` for class
    probabilities ``p``, with ``mu_s``, ``mu_t`` the class means of the two domains, ``P_k`` the
    projection onto the principal directions that hold ``share`` of the second domain's
    within-class variance (its features of a class vary along those and hardly any other), and
    ``r_k`` the ratio of the second's within-class spread (RMS distance to the class mean) to the
    first's projected one. With ``covariance`` the deviation is coloured instead: within those
    directions, the first domain's covariance of the class becomes the second's (``coloring``),
    ``r_k`` 1 and ``P_k`` the whole map. The statistics are weights set by ``fit``; until then it
    is the identity of non-negative features. Computed in float32 under any precision policy:
    class means in bfloat16 would lose the differences."""

    def __init__(self, classes: int, features: int, share: float = 1.0, covariance: bool = False, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})
        self.classes, self.features, self.share = int(classes), int(features), float(share)
        self.covariance = bool(covariance)
        stat = lambda name, init, *shape: self.add_weight(  # noqa: E731
            shape=shape, initializer=init, trainable=False, name=name)
        self.source_mean = stat("source_mean", "zeros", self.classes, self.features)
        self.target_mean = stat("target_mean", "zeros", self.classes, self.features)
        self.ratio = stat("ratio", "ones", self.classes)
        self.projection = stat("projection", lambda shape, dtype=None: tf.eye(  # noqa: E731
            self.features, batch_shape=[self.classes], dtype=dtype), self.classes, self.features, self.features)

    def fit(self, source, source_labels, target, target_labels) -> np.ndarray:
        """Sets the statistics from features (any shape ending in ``features``) and integer
        labels of each domain; returns the spread ratios. A class with fewer than two distinct
        features in either domain is left where it is (ratio 1, the same means; NaN returned)."""
        members = []
        for features, labels in ((source, source_labels), (target, target_labels)):
            flat = np.reshape(features, (len(features), self.features)).astype(np.float64)
            members.append([flat[labels == k] for k in range(self.classes)])
        mean = lambda m: m.mean(0) if len(m) else np.zeros(self.features)  # noqa: E731
        rms = lambda d: np.sqrt(np.mean(np.sum(d**2, 1))) if len(d) else np.nan  # noqa: E731
        source_mean, target_mean = (np.stack([mean(m) for m in domain]) for domain in members)
        bases = [principal(m - mean(m), self.share) for m in members[1]]
        projection = np.stack([b.T @ b for b in bases])
        source_spread = np.array([rms((m - mean(m)) @ p) for m, p in zip(members[0], projection)])
        target_spread = np.array([rms(m - mean(m)) for m in members[1]])
        absent = ~((source_spread > 0) & (target_spread > 0))  # NaN is no spread: a class with one image or none
        ratio = np.where(absent, np.nan, target_spread / np.where(absent, 1.0, source_spread))
        if self.covariance:
            for k in np.flatnonzero(~absent):
                b, (s, t) = bases[k], (m[k] - mean(m[k]) for m in members)
                projection[k] = b.T @ coloring(s @ b.T, t @ b.T) @ b
        target_mean[absent] = source_mean[absent]
        projection[absent] = np.eye(self.features)
        for weight, value in ((self.source_mean, source_mean), (self.target_mean, target_mean),
                              (self.ratio, np.where(absent | self.covariance, 1.0, ratio)),
                              (self.projection, projection)):
            weight.assign(value.astype(np.float32))
        return ratio

    def call(self, features, probabilities):
        shape = tf.shape(features)
        v = tf.reshape(tf.cast(features, tf.float32), [shape[0], 1, self.features])
        deviation = tf.einsum("bkf,kfg->bkg", v - self.source_mean[None], self.projection)
        moved = self.target_mean[None] + self.ratio[None, :, None] * deviation
        mixed = tf.nn.relu(tf.reduce_sum(tf.cast(probabilities, tf.float32)[:, :, None] * moved, axis=1))
        return tf.cast(tf.reshape(mixed, shape), features.dtype)

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "features": self.features, "share": self.share,
                "covariance": self.covariance}


class ImagePool(layers.Layer):
    """History of generated images shown to a discriminator (Shrivastava et al. 2017), as in
    CycleGAN: while the pool is filling every image is stored and returned; afterwards, with
    probability 1/2 an image is swapped with a random stored one, which is returned instead.
    The pool is a layer weight, so checkpoints save and restore it, and every random choice
    is derived from (seed, step, element) so a resumed run draws the same ones.
    """

    def __init__(self, size: int, image_shape: tuple, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.image_shape = tuple(image_shape)
        self.seed = seed
        # Every replica makes the same update (from the global batch); the first one's is kept.
        self.images = self.add_weight(shape=(max(self.size, 1), *self.image_shape), initializer="zeros",
                                      trainable=False, name="images", aggregation="only_first_replica")
        self.count = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False, name="count",
                                     aggregation="only_first_replica")

    def query(self, images, step):
        if self.size == 0:
            return images
        local = images.shape[0]  # static per-replica batch size
        images = replicas.gather(images)  # the pool takes in the global batch, in order, as on one device
        out = []
        for k in range(images.shape[0]):
            image = tf.cast(images[k], self.images.dtype)
            count = self.count.value
            u = tf.random.stateless_uniform([], seed=seeding.derive(self.seed, seeding.POOL, step, k, 0))
            slot = tf.random.stateless_uniform([], seed=seeding.derive(self.seed, seeding.POOL, step, k, 1),
                                               minval=0, maxval=self.size, dtype=tf.int32)
            filling = count < self.size
            swap = tf.logical_and(tf.logical_not(filling), u > 0.5)
            target = tf.where(filling, count, slot)
            # gather, not slicing: XLA would bake a sliced index into the program and recompile every step
            previous = tf.gather(self.images.value, target)
            write = tf.logical_or(filling, swap)
            update = [tf.where(write, image, previous)]
            if not tf.distribute.has_strategy():
                self.images.value.scatter_nd_update([[target]], update)
            else:  # a mirrored variable (one replica or several) has no scatter in replica context
                self.images.assign(tf.tensor_scatter_nd_update(self.images.value, [[target]], update))
            self.count.assign(tf.minimum(count + 1, self.size))
            out.append(tf.where(swap, previous, image))
        return replicas.local_rows(tf.cast(tf.stack(out), images.dtype), local)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "image_shape": self.image_shape, "seed": self.seed}
