"""A frame-interpolation generator that moves pixels instead of blending them.

The design is Super SloMo's (Jiang, Sun, Jampani, Yang, Learned-Miller, Kautz, CVPR 2018,
arXiv 1712.00080): bidirectional optical flows F_0->1 and F_1->0 between the two input
frames; for each target time t the flows from t to both inputs approximated under linear
motion (their equation 4),

    F_t->0 = -(1 - t) t F_0->1 + t^2 F_1->0,    F_t->1 = (1 - t)^2 F_0->1 - t (1 - t) F_1->0,

then refined by a U-Net that also predicts a visibility map V_t<-0 (V_t<-1 = 1 - V_t<-0);
the frame is the visibility-weighted blend of the backward-warped inputs (their
equation 1), to which we add a small residual (the U-Net's last three channels).

Super SloMo computes the bidirectional flows with a U-Net; for a reach of tens of pixels
at a small training size we estimate them coarse to fine instead: first by block matching
(``BlockMatching``, no weights: what motion-compensated interpolators such as ffmpeg's
minterpolate do, made differentiable with a soft argmin), then with RIFE's IFNet blocks
(Huang, Zhang, Heng, Shi, Zhou, ECCV 2022, arXiv 2011.06294): at 1/4, 1/2 and full resolution, a block sees both frames, each warped
onto the other with the current flows, and the flows, works at a quarter of its level's
resolution, and adds a correction.

Warping is bilinear sampling written with gathers (``backward_warp``), ops that TFLite's
builtin kernels have; every layer that touches flows computes in float32.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

FLOW_SCALE = 16.0  # flows (pixels) enter and leave the convolutions divided by this
MATCH_GRID = 8  # the first flow estimate: block matching, a vector every 8 pixels
LEVELS = (4, 2, 1)  # then refined at these resolutions, as divisors of the input's
BLOCK_STRIDE = 4  # each refining block works at a quarter of its level's resolution


def backward_warp(image, flow):
    """``image`` sampled at ``(x + flow_x, y + flow_y)`` for every pixel (x, y): bilinear,
    coordinates clamped to the border. ``image`` (B, H, W, C), ``flow`` (B, H, W, 2) in
    pixels; gradients reach both. Gathers on the flattened image (TFLite GATHER)."""
    shape = tf.shape(image)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    # every tensor stays 4-D: TFLite's strided slice refuses to add an axis to a 3-D one
    grid_x = tf.reshape(tf.cast(tf.range(width), flow.dtype), [1, 1, -1, 1])
    grid_y = tf.reshape(tf.cast(tf.range(height), flow.dtype), [1, -1, 1, 1])
    x = tf.clip_by_value(grid_x + flow[..., 0:1], 0.0, tf.cast(width - 1, flow.dtype))
    y = tf.clip_by_value(grid_y + flow[..., 1:2], 0.0, tf.cast(height - 1, flow.dtype))
    x0, y0 = tf.floor(x), tf.floor(y)
    wx, wy = x - x0, y - y0
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, width - 1), tf.minimum(y0 + 1, height - 1)
    flat = tf.reshape(image, [-1, channels])
    base = tf.reshape(tf.range(batch) * height * width, [-1, 1, 1, 1])

    def at(yy, xx):  # (B, H, W, 1) indices -> (B, H, W, C) pixels
        return tf.reshape(tf.gather(flat, base + yy * width + xx), shape)

    top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx
    return top * (1.0 - wy) + bottom * wy


def linear_motion_flows(flow_01, flow_10, t: float):
    """Super SloMo's equation 4: the flows from time ``t`` to frames 0 and 1 under linear motion."""
    flow_t0 = -(1.0 - t) * t * flow_01 + t * t * flow_10
    flow_t1 = (1.0 - t) ** 2 * flow_01 - t * (1.0 - t) * flow_10
    return flow_t0, flow_t1


class BlockMatching(layers.Layer):
    """Motion-compensated interpolation's block matching as a layer without weights: for each
    block of the first frame, the displacement within ``radius`` pixels whose block of the
    second frame differs least (mean absolute difference), with a small penalty on length
    (ties and flat regions stay still), read off as the softmax-weighted mean displacement
    (a soft argmin, differentiable). Matched on the frames at half resolution, blocks of
    ``block`` pixels every ``block / 2`` (overlapping, as OBMC's), displacements every 2
    pixels; out: the flow from the first frame to the second in pixels of the input, on the
    grid of every ``block / 2`` pixels. Written with PAD, SLICE, ABS, MEAN, AVERAGE_POOL_2D,
    SOFTMAX and a 1x1 convolution (TFLite builtins)."""

    def __init__(self, radius: int = 16, block: int = 16, sharpness: float = 100.0, length_cost: float = 0.003,
                 **kwargs):
        super().__init__(**kwargs)
        self.radius, self.block = int(radius), int(block)
        self.sharpness, self.length_cost = float(sharpness), float(length_cost)
        r = self.radius // 2  # in pixels of the half-resolution frames
        self.offsets = np.array([(dx, dy) for dy in range(-r, r + 1) for dx in range(-r, r + 1)], np.float32)

    def call(self, first, second):
        first, second = (tf.nn.avg_pool2d(f, 2, 2, "VALID") for f in (first, second))
        r, size = self.radius // 2, tf.shape(first)
        pad = [[0, 0], [r, r], [r, r], [0, 0]]
        padded, inside = tf.pad(second, pad), tf.pad(tf.ones_like(second[..., :1]), pad)
        window = lambda v, dx, dy: tf.slice(  # noqa: E731  (a static channel count, which TFLite's conv needs)
            v, [0, r + dy, r + dx, 0], [-1, size[1], size[2], v.shape[-1]])
        costs = []
        for dx, dy in self.offsets.astype(int):
            # out of the frame costs as much as the largest possible difference
            difference = (tf.reduce_mean(tf.abs(first - window(padded, dx, dy)), -1, keepdims=True)
                          + 2.0 * (1.0 - window(inside, dx, dy)))
            costs.append(tf.nn.avg_pool2d(difference, self.block // 2, self.block // 4, "SAME")
                         + self.length_cost * 2.0 * float(np.hypot(dx, dy)))
        weights = tf.nn.softmax(-self.sharpness * tf.concat(costs, -1), -1)
        return tf.nn.conv2d(weights, tf.constant(2.0 * self.offsets[None, None]), 1, "VALID")

    def compute_output_shape(self, first_shape, second_shape):
        return (*first_shape[:-1], 2)

    def get_config(self):
        return {**super().get_config(), "radius": self.radius, "block": self.block, "sharpness": self.sharpness,
                "length_cost": self.length_cost}


class Downscale(layers.Layer):
    """Average pooling by ``factor`` (a level of the image pyramid)."""

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x):
        return x if self.factor == 1 else tf.nn.avg_pool2d(x, self.factor, self.factor, "VALID")

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class UpscaleFlow(layers.Layer):
    """Bilinear up-sampling by ``factor`` of a map; with ``flow``, values are multiplied by
    the factor too (a flow in pixels of the finer grid)."""

    def __init__(self, factor: int, flow: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.factor, self.flow = int(factor), bool(flow)

    def call(self, x):
        if self.factor == 1:
            return x
        size = tf.shape(x)[1:3] * self.factor
        up = tf.image.resize(x, size, method="bilinear")
        return up * float(self.factor) if self.flow else up

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "flow": self.flow}


class Warp(layers.Layer):
    """``backward_warp`` as a layer: [image, flow] -> the image sampled along the flow."""

    def call(self, inputs):
        image, flow = inputs
        return backward_warp(image, flow)


class Synthesis(layers.Layer):
    """Every target frame from the bidirectional flows and the refinement U-Net.

    Inputs: the two frames (B, H, W, 3) each, F_0->1 and F_1->0 (B, H, W, 2), and the
    refinement network. For each time t in ``times`` (one per target frame), the linear-motion
    flows, the inputs warped by them, and the U-Net's corrections (run on all targets as
    one batch); returns a dict of the frames (B, H, W, 3K), the final flows F_t->0 and F_t->1
    (B, H, W, 2K each) and the visibility maps V_t<-0 (B, H, W, K).
    """

    def __init__(self, times, refine: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.times = [float(t) for t in times]
        self.refine = refine

    def call(self, frame0, frame1, flow_01, flow_10):
        k = len(self.times)
        flows = [linear_motion_flows(flow_01, flow_10, t) for t in self.times]
        flow_t0 = tf.concat([f[0] for f in flows], 0)  # targets along the batch axis: (K B, H, W, 2)
        flow_t1 = tf.concat([f[1] for f in flows], 0)
        tile = lambda v: tf.concat([v] * k, 0)  # noqa: E731
        frames0, frames1 = tile(frame0), tile(frame1)
        t = tf.concat([tf.fill(tf.shape(frame0[..., :1]), time) for time in self.times], 0)
        features = tf.concat([frames0, frames1, tile(flow_01) / FLOW_SCALE, tile(flow_10) / FLOW_SCALE,
                              flow_t0 / FLOW_SCALE, flow_t1 / FLOW_SCALE, backward_warp(frames0, flow_t0),
                              backward_warp(frames1, flow_t1), t], -1)
        out = tf.cast(self.refine(features), tf.float32)
        flow_t0 = flow_t0 + FLOW_SCALE * out[..., 0:2]
        flow_t1 = flow_t1 + FLOW_SCALE * out[..., 2:4]
        visible0 = tf.sigmoid(out[..., 4:5])
        warped0, warped1 = backward_warp(frames0, flow_t0), backward_warp(frames1, flow_t1)
        weight0, weight1 = (1.0 - t) * visible0, t * (1.0 - visible0)
        blend = (weight0 * warped0 + weight1 * warped1) / (weight0 + weight1 + 1e-6)
        made = tf.clip_by_value(blend + out[..., 5:8], -1.0, 1.0)
        per_target = lambda v: tf.concat(tf.split(v, k, 0), -1)  # noqa: E731  back to (B, H, W, K C)
        return {"frames": per_target(made), "flow_t0": per_target(flow_t0), "flow_t1": per_target(flow_t1),
                "visibility": per_target(visible0)}

    def get_config(self):
        return {**super().get_config(), "times": self.times}


def _conv(filters: int, name: str, strides: int = 1, **kwargs):
    return layers.Conv2D(filters, 3, strides=strides, padding="same", name=name, **kwargs)


def flow_block(in_channels: int, filters: int, convs: int, name: str) -> keras.Model:
    """RIFE's IFBlock, small: two stride-2 3x3 convolutions, ``convs`` 3x3 convolutions with
    a residual connection, PReLU throughout (as RIFE), and a 3x3 convolution to the 4 flow
    channels at a quarter of the input's resolution, bilinearly up-sampled back. The last
    convolution starts at zero: a new block leaves the flows as they are."""
    inputs = keras.Input((None, None, in_channels), name=f"{name}_in")
    x = inputs
    for i in range(2):
        x = _conv(filters, f"{name}_down{i + 1}", strides=2)(x)
        x = layers.PReLU(shared_axes=(1, 2), name=f"{name}_down{i + 1}_act")(x)
    skip = x
    for i in range(convs):
        x = _conv(filters, f"{name}_conv{i + 1}")(x)
        x = layers.PReLU(shared_axes=(1, 2), name=f"{name}_conv{i + 1}_act")(x)
    x = layers.Add(name=f"{name}_residual")([x, skip])
    x = _conv(4, f"{name}_flow", kernel_initializer="zeros")(x)
    x = UpscaleFlow(BLOCK_STRIDE, flow=False, name=f"{name}_up", dtype="float32")(x)
    return keras.Model(inputs, x, name=name)


def refine_unet(in_channels: int, filters: int, depth: int, name: str = "refine") -> keras.Model:
    """Super SloMo's flow-refinement U-Net, shallower: per level two 3x3 convolutions with
    LeakyReLU 0.1 and 2x average pooling; the decoder up-samples bilinearly, concatenates the
    encoder level and convolves twice; out: 8 channels (dF_t->0, dF_t->1, the visibility
    logit, an RGB residual), the last convolution starting at zero."""
    inputs = keras.Input((None, None, in_channels), name=f"{name}_in")
    x, skips = inputs, []
    for level in range(depth + 1):
        if level:
            x = layers.AveragePooling2D(2, name=f"{name}_pool{level}")(x)
        for i in range(2):
            x = _conv(filters * 2 ** min(level, 3), f"{name}_down{level}_{i + 1}")(x)
            x = layers.LeakyReLU(0.1, name=f"{name}_down{level}_{i + 1}_act")(x)
        skips.append(x)
    for level in reversed(range(depth)):
        x = UpscaleFlow(2, flow=False, name=f"{name}_up{level}")(x)
        x = layers.Concatenate(name=f"{name}_skip{level}")([x, skips[level]])
        for i in range(2):
            x = _conv(filters * 2 ** min(level, 3), f"{name}_up{level}_{i + 1}")(x)
            x = layers.LeakyReLU(0.1, name=f"{name}_up{level}_{i + 1}_act")(x)
    x = _conv(8, f"{name}_out", kernel_initializer="zeros")(x)
    return keras.Model(inputs, x, name=name)


def flow_generator(*, times, filters: int = 32, block_convs: int = 4, refine_depth: int = 3,
                   name: str = "flow_interpolator") -> tuple[keras.Model, keras.Model]:
    """(G, G with its parts): from the two input frames stacked (B, H, W, 6) in [-1, 1] to the
    frames at ``times`` (fractions of the way from the first input to the second) stacked
    (B, H, W, 3K); the second model also returns the bidirectional flows ``flow_01`` and
    ``flow_10``, the final flows ``flow_t0`` and ``flow_t1`` and the ``visibility`` maps. Both
    share every layer. Height and width: multiples of :func:`down_factor`. At initialisation
    (every learned last layer at zero) the flows are the block matching's and the output is
    its motion-compensated interpolation, each warped input weighted (1 - t) and t."""
    inputs = keras.Input((None, None, 6), name="image")
    frame0, frame1 = inputs[..., :3], inputs[..., 3:]
    match = BlockMatching(name="block_matching", dtype="float32")
    to_level = lambda f, name: layers.Rescaling(  # noqa: E731  (the matching grid's flows in pixels of level 0)
        1.0 / LEVELS[0], name=name, dtype="float32")(UpscaleFlow(MATCH_GRID // LEVELS[0], flow=False,
                                                                  name=f"{name}_up", dtype="float32")(f))
    flow_01, flow_10 = to_level(match(frame0, frame1), "matched01"), to_level(match(frame1, frame0), "matched10")
    previous = LEVELS[0]
    for k, scale in enumerate(LEVELS):
        i0 = Downscale(scale, name=f"pyramid{k}_0", dtype="float32")(frame0)
        i1 = Downscale(scale, name=f"pyramid{k}_1", dtype="float32")(frame1)
        flow_01 = UpscaleFlow(previous // scale, name=f"block{k}_up01", dtype="float32")(flow_01)
        flow_10 = UpscaleFlow(previous // scale, name=f"block{k}_up10", dtype="float32")(flow_10)
        previous = scale
        warped1 = Warp(name=f"block{k}_warp1", dtype="float32")([i1, flow_01])  # ~ frame 0
        warped0 = Warp(name=f"block{k}_warp0", dtype="float32")([i0, flow_10])  # ~ frame 1
        scaled = layers.Rescaling(1.0 / FLOW_SCALE, name=f"block{k}_flows")(
            layers.Concatenate(name=f"block{k}_flow_in")([flow_01, flow_10]))
        features = layers.Concatenate(name=f"block{k}_in")([i0, i1, warped1, warped0, scaled])
        block = flow_block(features.shape[-1], filters * 2 ** (len(LEVELS) - 1 - k), block_convs, name=f"block{k}")
        delta = layers.Rescaling(FLOW_SCALE, name=f"block{k}_delta", dtype="float32")(block(features))
        flow_01 = layers.Add(name=f"block{k}_flow01", dtype="float32")([flow_01, delta[..., :2]])
        flow_10 = layers.Add(name=f"block{k}_flow10", dtype="float32")([flow_10, delta[..., 2:]])
    refine = refine_unet(21, filters, refine_depth)
    parts = Synthesis(times, refine, name="synthesis", dtype="float32")(frame0, frame1, flow_01, flow_10)
    parts = {**parts, "flow_01": flow_01, "flow_10": flow_10}
    return keras.Model(inputs, parts["frames"], name=name), keras.Model(inputs, parts, name=f"{name}_parts")


def down_factor(refine_depth: int = 3) -> int:
    """Input height and width must be multiples of this."""
    return max(MATCH_GRID, LEVELS[0] * BLOCK_STRIDE, 2**refine_depth)


def flow_colours(flow: np.ndarray, reach: float | None = None) -> np.ndarray:
    """Flows (H, W, 2) in pixels as an RGB picture in [-1, 1], the Middlebury colour wheel
    convention: hue = direction, saturation = length relative to ``reach`` (default the
    largest length in the picture), white = still."""
    dx, dy = flow[..., 0], flow[..., 1]
    length = np.hypot(dx, dy)
    reach = float(reach or max(length.max(), 1e-6))
    hue = (np.arctan2(-dy, -dx) / np.pi + 1.0) / 2.0  # [0, 1]
    saturation = np.clip(length / reach, 0.0, 1.0)
    rgb = np.stack([np.clip(np.abs(hue * 6.0 - c) - 1.0, 0.0, 1.0) if c == 3 else
                    np.clip(2.0 - np.abs(hue * 6.0 - c), 0.0, 1.0) for c in (3, 2, 4)], -1)
    rgb = 1.0 - saturation[..., None] * (1.0 - rgb)
    return rgb * 2.0 - 1.0
