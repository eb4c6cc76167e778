"""Network builders: pure functions returning functional ``keras.Model`` objects.

Generators are fully convolutional with dynamic height and width, so a model trained on
256x256 crops runs on any size that is a multiple of its down-sampling factor.
"""

from __future__ import annotations

import keras
from keras import layers

from tf_translate.errors import UsageError
from tf_translate.nn import losses
from tf_translate.nn.layers import (
    FrameBlend,
    NearestUpsampling2D,
    StatelessDropout,
    activation,
    conv_block,
    norm,
    output_dtype,
    residual_block,
    weight_init,
)

UPSAMPLE = ("transpose", "resize")


def doubling(x, filters: int, *, upsample: str, kernel: int, name: str, pad: str = "zero",
             transpose_pad: str = "same", **conv):
    """One 2x up-sampling block: ``resize``, a nearest-neighbour resize and a 3x3 convolution
    (Odena, Dumoulin & Olah, Distill 2016), or ``transpose``, a ``kernel``-sized stride-2
    transposed convolution on the ``transpose_pad`` grid; ``conv``: conv_block's norm and activation."""
    if upsample not in UPSAMPLE:
        raise UsageError(f"upsample must be one of {', '.join(UPSAMPLE)}, not {upsample!r}")
    if upsample == "resize":
        x = NearestUpsampling2D(name=f"{name}_resize")(x)
        return conv_block(x, filters, 3, name=name, pad=pad, **conv)
    return conv_block(x, filters, kernel, stride=2, transpose=True, name=name, pad=transpose_pad, **conv)


def resnet_generator(
    *,
    in_channels: int = 3,
    out_channels: int = 3,
    filters: int = 64,
    n_blocks: int = 9,
    n_down: int = 2,
    outer_kernel: int = 7,
    conditions: int = 0,
    condition_at: str = "bottleneck",
    norm_kind: str = "instance",
    upsample: str = "transpose",
    sampling_kernel: int = 3,
    pad: str = "reflect",
    transpose_pad: str = "torch",
    affine: bool = True,
    use_bias: bool = True,
    name: str = "resnet_generator",
) -> keras.Model:
    """Johnson et al.'s ResNet generator, as CycleGAN uses it (Zhu et al. 2017, appendix 7.2)
    and as fast style transfer does (Johnson et al. 2016: ``filters=32, n_blocks=5,
    outer_kernel=9``, c9s1-32, d64, d128, 5 residual blocks, u64, u32, c9s1-3) and StarGAN's
    G(x, c) (Choi et al. 2018: ``n_blocks=6, sampling_kernel=4, pad="zero",
    condition_at="input"``).

    c7s1-64, d128, d256, ``n_blocks`` residual blocks (9 for 256x256, 6 for 128x128),
    u128, u64, c7s1-3; reflection padding, instance norm, ReLU, tanh output in [-1, 1].
    Down-sampling factor: ``2 ** n_down``. With ``conditions`` > 0 (Yanai & Tanno's
    conditional network) a second input, a per-pixel weight map of that many channels at
    the image's size, is average-pooled to the bottleneck, concatenated with the features
    as constant planes and fused by a 1x1 convolution and ReLU (no norm) before the residual
    blocks; with ``condition_at="input"`` (StarGAN's G(x, c): the label tiled into planes)
    the map is concatenated to the image instead.

    ``upsample``: ``transpose`` (the papers' fractionally strided 3x3 convolutions) or
    ``resize`` (nearest-neighbour 2x resize, then a 3x3 convolution: Odena, Dumoulin & Olah,
    "Deconvolution and Checkerboard Artifacts", Distill 2016), which avoids the checkerboard
    a transposed convolution's uneven kernel overlap paints into stylised images.
    ``sampling_kernel`` is the kernel of the down- and up-sampling convolutions (StarGAN: 4)
    and ``pad`` the padding of the others (StarGAN: ``zero``). ``transpose_pad``: the
    transposed convolutions' output grid, ``torch`` (``ConvTranspose2d(padding=1,
    output_padding=1)``, the references' and Johnson's Torch code: the up-sampled pixel 2i
    sits where the down-sampling read pixel i) or ``same`` (Keras', one pixel later for 3x3
    kernels; the two agree for 4x4). ``affine``: the instance norms' scale and shift
    (CycleGAN's have none, StarGAN's and Johnson's do); ``use_bias``: convolution biases
    (StarGAN's G has none).
    """
    if condition_at not in ("bottleneck", "input"):
        raise UsageError(f"condition_at must be bottleneck or input, not {condition_at!r}")
    inputs = keras.Input((None, None, in_channels), name="image")
    model_inputs, x = inputs, inputs
    if conditions:
        condition = keras.Input((None, None, conditions), name="condition")
        model_inputs = [inputs, condition]
        if condition_at == "input":
            x = layers.Concatenate(name="condition_concat")([inputs, condition])
    conv = dict(norm_kind=norm_kind, affine=affine, use_bias=use_bias)
    x = conv_block(x, filters, outer_kernel, name=f"c{outer_kernel}s1", pad=pad, **conv)
    for i in range(n_down):
        x = conv_block(x, filters * 2 ** (i + 1), sampling_kernel, stride=2, name=f"d{i + 1}", **conv)
    width = filters * 2**n_down
    if conditions and condition_at == "bottleneck":
        pooled = layers.AveragePooling2D(2**n_down, name="condition_pool")(condition)
        x = layers.Concatenate(name="condition_concat")([x, pooled])
        # No norm here: a constant plane through a 1x1 convolution only shifts each channel,
        # which instance norm would subtract again; before the ReLU the shift gates features.
        x = conv_block(x, width, 1, name="condition", pad="valid", norm_kind="none")
    for i in range(n_blocks):
        x = residual_block(x, width, name=f"r{i + 1}", pad=pad, **conv)
    for i in reversed(range(n_down)):
        x = doubling(x, filters * 2**i, upsample=upsample, kernel=sampling_kernel, name=f"u{n_down - i}", pad=pad,
                     transpose_pad=transpose_pad, **conv)
    x = conv_block(x, out_channels, outer_kernel, name="out", pad=pad, norm_kind="none", act=None, use_bias=use_bias)
    outputs = layers.Activation("tanh", name="tanh", dtype=output_dtype())(x)
    return keras.Model(model_inputs, outputs, name=name)


def unet_depth(size: int) -> int:
    """U-Net levels for square inputs of ``size``: down to a 1x1 bottleneck (8 for 256, 7 for 128)."""
    return max(1, int(size).bit_length() - 1)


def unet_generator(
    *,
    in_channels: int = 3,
    out_channels: int = 3,
    depth: int = 8,
    filters: int = 64,
    max_filters: int = 512,
    norm_kind: str = "instance",
    affine: bool = True,
    dropout: float = 0.5,
    dropout_blocks: int = 3,
    blend=None,
    name: str = "unet_generator",
) -> keras.Model:
    """pix2pix's U-Net generator (Isola et al. 2017, appendix 6.1.1).

    Encoder C64-C128-C256-C512-...: ``depth`` 4x4 stride-2 convolutions with LeakyReLU 0.2,
    no norm on the first layer nor on the innermost (a per-sample norm of a 1x1 map is 0);
    decoder mirrored with ReLU, transposed convolutions and skip connections to the encoder
    level of the same size; dropout ``dropout`` in the first ``dropout_blocks`` decoder
    blocks; tanh out. Input height and width must be multiples of ``2 ** depth``.
    Any number of input and output channels (stacked frames: 6 in, 15 out).

    With ``blend``, a (frames in, frames out) matrix (``frames.blend_weights``), the U-Net's
    tanh output is a correction added to that fixed mix of the input frames (for frame
    interpolation, the cross-fade), clipped to [-1, 1]; the last layer starts at zero, so G
    starts exactly at the baseline and learns only what it misses.

    As the reference code, with batch norm no convolution has a bias but the last (a bias
    before a batch norm is subtracted again), and ``affine=False`` leaves the instance norms
    without scale and shift (its ``InstanceNorm2d(affine=False)``).
    """
    width = lambda level: min(filters * 2**level, max_filters)  # noqa: E731
    conv = dict(kernel_size=4, strides=2, padding="same", kernel_initializer=weight_init(),
                use_bias=norm_kind != "batch")
    inputs = keras.Input((None, None, in_channels), name="image")
    x, skips = inputs, []
    for level in range(depth):
        if level:
            x = activation("lrelu0.2", f"down{level + 1}_act")(x)
        x = layers.Conv2D(width(level), name=f"down{level + 1}_conv", **conv)(x)
        if 0 < level < depth - 1:
            x = norm(norm_kind, f"down{level + 1}_norm", affine)(x)
        skips.append(x)
    for level in reversed(range(depth)):
        if level < depth - 1:
            x = layers.Concatenate(name=f"up{level + 1}_skip")([x, skips[level]])
        x = activation("relu", f"up{level + 1}_act")(x)
        out = width(level - 1) if level else out_channels
        # a residual G's last layer starts at zero: its first output is exactly the blend
        zero = {"kernel_initializer": "zeros"} if blend is not None and not level else {}
        last = {} if level else {"use_bias": True}
        x = layers.Conv2DTranspose(out, name=f"up{level + 1}_deconv", **{**conv, **zero, **last})(x)
        if level:
            x = norm(norm_kind, f"up{level + 1}_norm", affine)(x)
            if depth - 1 - level < dropout_blocks and dropout > 0:
                x = StatelessDropout(dropout, name=f"up{level + 1}_dropout")(x)
    outputs = layers.Activation("tanh", name="tanh", dtype=output_dtype())(x)
    if blend is not None:
        outputs = layers.Add(name="residual")([FrameBlend(blend, name="blend", dtype=output_dtype())(inputs), outputs])
        outputs = layers.Activation("hard_tanh", name="clip", dtype=output_dtype())(outputs)
    return keras.Model(inputs, outputs, name=name)


def patch_discriminator(
    *,
    in_channels: int = 3,
    filters: int = 64,
    n_layers: int = 3,
    norm_kind: str = "instance",
    affine: bool = True,
    name: str = "patch_discriminator",
) -> keras.Model:
    """PatchGAN discriminator (Isola et al. 2017): one real/fake score per overlapping patch.

    With ``n_layers=3``: C64 (stride 2, no norm) - C128 - C256 (stride 2) - C512 (stride 1) -
    a 4x4 stride-1 convolution to one channel; LeakyReLU 0.2. Receptive field 70x70.
    Outputs raw scores (no sigmoid): the GAN losses take logits. For a conditional
    discriminator (pix2pix) pass the channel count of the concatenated (x, y). As the
    reference code, the convolutions before a batch norm have no bias; ``affine``: the
    instance norms' scale and shift (the reference's have none).
    """
    inputs = keras.Input((None, None, in_channels), name="image")
    x = conv_block(inputs, filters, 4, stride=2, name="c1", norm_kind="none", act="lrelu0.2")
    for i in range(1, n_layers + 1):
        width = filters * min(2**i, 8)
        stride = 2 if i < n_layers else 1
        x = conv_block(x, width, 4, stride=stride, name=f"c{i + 1}", norm_kind=norm_kind, act="lrelu0.2",
                       use_bias=norm_kind != "batch", affine=affine)
    x = conv_block(x, 1, 4, name="patch", norm_kind="none", act=None)
    outputs = layers.Activation("linear", name="score", dtype=output_dtype())(x)
    return keras.Model(inputs, outputs, name=name)


def stargan_discriminator(
    *,
    image_size: int,
    n_domains: int,
    in_channels: int = 3,
    filters: int = 64,
    n_layers: int = 6,
    max_filters: int = 2048,
    name: str = "stargan_discriminator",
) -> keras.Model:
    """StarGAN's discriminator (Choi et al., CVPR 2018, appendix): ``n_layers`` 4x4 stride-2
    convolutions (64 -> 2048 channels), LeakyReLU 0.01, no normalisation (the gradient
    penalty wants none), and two heads: D_src, a 3x3 convolution to one real/fake score per
    patch, and D_cls, a convolution with kernel ``image_size / 2 ** n_layers`` (valid
    padding) to ``n_domains`` logits. D_cls's kernel ties D to the training size.
    Outputs ``[src (B, h, w, 1), cls (B, n_domains)]``.
    """
    if image_size % 2**n_layers:
        raise UsageError(f"the discriminator needs an image size that is a multiple of {2 ** n_layers} "
                         f"({n_layers} stride-2 layers), not {image_size}")
    inputs = keras.Input((image_size, image_size, in_channels), name="image")
    x = inputs
    for i in range(n_layers):
        x = conv_block(x, min(filters * 2**i, max_filters), 4, stride=2, name=f"c{i + 1}", norm_kind="none",
                       act="lrelu0.01")
    src = layers.Conv2D(1, 3, padding="same", use_bias=False, kernel_initializer=weight_init(), name="D_src")(x)
    kernel = image_size // 2**n_layers
    cls = layers.Conv2D(n_domains, kernel, use_bias=False, kernel_initializer=weight_init(), name="D_cls")(x)
    src = layers.Activation("linear", name="src", dtype=output_dtype())(src)
    cls = layers.Activation("linear", name="cls", dtype=output_dtype())(layers.Reshape((n_domains,), name="cls_flat")(cls))
    return keras.Model(inputs, [src, cls], name=name)


def dtn_encoder(
    *,
    size: int = 32,
    in_channels: int = 1,
    widths: tuple[int, ...] = (64, 128, 256, 128),
    name: str = "f",
) -> keras.Model:
    """DTN's f for digits (Taigman, Polyak & Wolf, ICLR 2017, section 5.1): four
    convolutional blocks of ``widths`` filters, each followed by max pooling and ReLU; the
    last is a valid convolution over what is left of the ``size`` x ``size`` image, so f(x)
    is one vector of ``widths[-1]`` numbers, shaped (1, 1, D) for g's transposed convolutions.
    """
    inputs = keras.Input((size, size, in_channels), name="image")
    x = inputs
    for i, width in enumerate(widths[:-1]):
        x = layers.Conv2D(width, 3, padding="same", kernel_initializer=weight_init(), name=f"c{i + 1}_conv")(x)
        x = layers.MaxPooling2D(name=f"c{i + 1}_pool")(x)
        x = activation("relu", f"c{i + 1}_act")(x)
    x = layers.Conv2D(widths[-1], size // 2 ** (len(widths) - 1), kernel_initializer=weight_init(),
                      name=f"c{len(widths)}_conv")(x)
    outputs = layers.Activation("relu", name="features", dtype=output_dtype())(x)
    return keras.Model(inputs, outputs, name=name)


def dtn_decoder(
    *,
    features: int = 128,
    out_channels: int = 1,
    filters: int = 64,
    n_blocks: int = 4,
    upsample: str = "transpose",
    one_stroke: bool = False,
    mark_below: float = 1.0,
    name: str = "g",
) -> keras.Model:
    """DTN's g: ``n_blocks`` transposed-convolution blocks with batch norm and ReLU, a tanh
    terminal (the paper's digits: four, 1x1 -> 4x4 -> 8 -> 16 -> 32; faces: five), and with
    ``one_stroke`` a ``LargestStroke(mark_below)`` layer after it (not in the paper). The
    first block expands f's (1, 1, ``features``) vector to 4x4, each next one doubles the side:
    ``upsample`` ``transpose``, the paper's 4x4 stride-2 transposed convolutions, or
    ``resize``, a nearest-neighbour 2x resize and a 3x3 convolution (``doubling``), which
    draws every output pixel with one kernel where a stride-2 transposed convolution draws
    each of the four pixel parities with its own quarter of it."""
    inputs = keras.Input((1, 1, features), name="features")
    x = layers.Conv2DTranspose(filters * 2 ** (n_blocks - 2), 4, kernel_initializer=weight_init(),
                               name="u1_deconv")(inputs)
    x = norm("batch", "u1_norm")(x)
    x = activation("relu", "u1_act")(x)
    for i in range(1, n_blocks):
        last = i == n_blocks - 1
        block = dict(name=f"u{i + 1}", norm_kind="none" if last else "batch", act=None if last else "relu")
        width = out_channels if last else filters * 2 ** (n_blocks - 2 - i)
        x = doubling(x, width, upsample=upsample, kernel=4, **block)
    outputs = layers.Activation("tanh", name="tanh", dtype=output_dtype())(x)
    if one_stroke:
        outputs = LargestStroke(mark_below, name="one_stroke", dtype=output_dtype())(outputs)
    return keras.Model(inputs, outputs, name=name)


class LargestStroke(layers.Layer):
    """Drawings (light strokes on dark, in [-1, 1]) with everything but each one's largest stroke
    and the pieces holding at least ``below`` of its ink erased to the background
    (``losses.largest_stroke_alone``: 8-connected pieces of ink above 0.5, grown by a pixel; a
    drawing with no ink above 0.5 kept whole), so that a generator ending in it draws no mark
    beside its digit (with ``below`` 1, one stroke, as 97.6 % of MNIST's digits are), and every
    loss sees what it exports. The gradient reaches the kept pixels only."""

    def __init__(self, below: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.below = below

    def call(self, images):
        return losses.largest_stroke_alone(images, below=self.below)

    def get_config(self):
        return {**super().get_config(), "below": self.below}

    def compute_output_shape(self, input_shape):
        return input_shape


def dtn_discriminator(
    *,
    size: int = 32,
    in_channels: int = 1,
    filters: int = 64,
    n_layers: int = 3,
    act: str = "relu",
    classes: int = 3,
    name: str = "D",
) -> keras.Model:
    """DTN's ternary discriminator: ``n_layers`` 4x4 stride-2 convolutions with batch norm
    (none on the first) and ``act`` (digits: ReLU, three of them, then the fourth layer, a
    valid convolution to ``classes`` logits; faces: six blocks with LeakyReLU 0.2). Logits
    (B, 3): G(x) of a source x, G(x) of a target x, a real target x."""
    if size % 2**n_layers:
        raise UsageError(f"the discriminator needs an image size that is a multiple of {2 ** n_layers}, not {size}")
    inputs = keras.Input((size, size, in_channels), name="image")
    x = inputs
    for i in range(n_layers):
        x = conv_block(x, filters * 2**i, 4, stride=2, name=f"c{i + 1}", norm_kind="batch" if i else "none", act=act)
    x = layers.Conv2D(classes, size // 2**n_layers, kernel_initializer=weight_init(), name="logits_conv")(x)
    outputs = layers.Activation("linear", name="logits", dtype=output_dtype())(layers.Reshape((classes,), name="flat")(x))
    return keras.Model(inputs, outputs, name=name)
