"""The exported object and its signatures: what TF Serving and the TFLite converter see.

Every signature refuses, with InvalidArgument and before decoding or running a network, a
request over the export's pixel limit (``ExportConfig.max_pixels``): an encoded image whose
header declares more pixels (``image_header``), or float images of more batch x height x
width. The TFLite files carry no such check (TFLite has no assertion op; the converter drops
it); the Python ``Exported`` refuses and splits calls by the same limit.

Signatures, per generator ``NAME`` (e.g. ``a2b``; the first one is also ``serving_default``):
  NAME        images: float32 [batch, height, width, C] in [0, 1], any height and width
              -> images: float32, same shape (padded to the down-sampling multiple and cropped back)
  NAME_bytes  image_bytes: string [batch] (JPEG, PNG, GIF, BMP or WebP; alpha composited on
              white, the first frame of an animation) -> output_bytes: string [batch], PNG;
              only for generators from 3 channels to 3, or 1 to 1 (not for stacked frames)
DTN's G = g o f takes its training size only (f ends in a valid convolution): NAME's images
are [batch, S, S, C], C = 1 for digits, and the bytes endpoint resizes what it decodes to S x S
(greyscale for C = 1); beside it
  classify    images [batch, S, S, C] -> probabilities [batch, classes]: f with its stage-1 head
  encode      images [batch, S, S, C] -> features [batch, D]: f(x), what G keeps constant
A conditional generator (multi-style fast style transfer: N styles) takes a second input:
  NAME        images, style_weights: float32 [batch, N] (one-hot picks a style, other
              weights blend them) -> images
  NAME_map    images, style_map: float32 [batch, height, width, N] (per-pixel weights:
              spatial blending) -> images
  NAME_bytes  image_bytes, style_weights -> output_bytes
StarGAN's generator (N domains) takes the target label the same way, named ``labels``:
  NAME        images, labels: float32 [batch, N] (one-hot: a domain) -> images
  NAME_map    images, label_map: float32 [batch, height, width, N] -> images
  NAME_bytes  image_bytes, domain: string [batch], a domain's name, or attribute settings
              "A=1,B=0" (the other attributes as ``classify`` reads them) -> output_bytes
  classify    (attribute models only) images -> probabilities: float32 [batch, N], the
              discriminator's classification head
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_translate.config import SERVING_MAX_PIXELS
from tf_translate.export import image_header
from tf_translate.methods.base import DomainLabels
from tf_translate.nn.layers import InstanceNorm, SharedStatistics, label_planes


def symmetric_indices(size, total):
    """Indices 0..total-1 mirrored into [0, size) as SYMMETRIC padding reads them, for any
    ``total`` (``tf.pad`` SYMMETRIC fails once the pad exceeds the side, e.g. a small image
    padded to a U-Net's multiple of 256)."""
    j = tf.math.floormod(tf.range(total), 2 * size)
    return tf.where(j < size, j, 2 * size - 1 - j)


def pad_to_multiple(images, multiple: int):
    """Pad bottom and right to a multiple of ``multiple`` by mirroring; returns (padded, h, w)."""
    shape = tf.shape(images)
    height = shape[1] + (multiple - shape[1] % multiple) % multiple
    width = shape[2] + (multiple - shape[2] % multiple) % multiple
    padded = tf.gather(images, symmetric_indices(shape[1], height), axis=1)
    padded = tf.gather(padded, symmetric_indices(shape[2], width), axis=2)
    # Computed sizes lose every static dimension, and the TFLite converter needs the
    # channels: a reshape (a builtin op, unlike EnsureShape) restores them.
    padded = tf.reshape(padded, [shape[0], height, width, images.shape[-1]])
    return padded, shape[1], shape[2]


def decode_rgb(data) -> tf.Tensor:
    """One encoded image -> float32 [H, W, 3] in [0, 1]; alpha composited on white."""
    # Decoded as uint8: WebP supports no other dtype (16-bit PNGs keep their high byte).
    image = tf.cast(tf.io.decode_image(data, dtype=tf.uint8, expand_animations=False), tf.float32) / 255.0
    channels = tf.shape(image)[-1]
    has_alpha = tf.equal(channels % 2, 0)  # LA or RGBA
    color = tf.cond(has_alpha, lambda: image[..., :-1], lambda: image)
    alpha = tf.cond(has_alpha, lambda: image[..., -1:], lambda: tf.ones_like(image[..., :1]))
    color = tf.cond(tf.equal(tf.shape(color)[-1], 1), lambda: tf.tile(color, [1, 1, 3]), lambda: color)
    color = tf.ensure_shape(color, [None, None, 3])
    return color * alpha + (1.0 - alpha)


MAP_INPUTS = {"style_weights": "style_map", "labels": "label_map"}  # a condition's per-pixel form
CONDITIONS = set(MAP_INPUTS)


class ServingModule(tf.Module):
    """The exported object: the generators and one float and one bytes function per direction."""

    def __init__(self, generators: dict, multiple: int, labels: DomainLabels | None = None,
                 size: int | None = None, readers: dict | None = None, max_pixels: int = SERVING_MAX_PIXELS):
        super().__init__()
        self.size = size  # the one square size a fixed-size generator takes (DTN); None = any
        self.max_pixels = max_pixels  # refused above this, before decoding or running a network
        # The Keras models are kept out of the SavedModel's object graph (object.__setattr__
        # bypasses tf.Module's tracking): tracked, every weight was saved twice, once under
        # them and once under tf_variables below.
        untracked = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        untracked("readers", {name: model for name, (model, _, _) in (readers or {}).items()})
        self.reader_outputs = {name: (key, fn) for name, (_, key, fn) in (readers or {}).items()}
        untracked("nets", {name: net for name, (net, _) in generators.items()})
        self.channels = {name: c for name, (_, c) in generators.items()}
        # The second input of a conditional generator: style weights, or domain labels; 0 = none.
        self.conditions = {name: int(net.inputs[1].shape[-1]) if len(net.inputs) > 1 else 0
                           for name, net in self.nets.items()}
        self.condition = "labels" if labels else "style_weights"
        self.labels = labels
        untracked("discriminator", labels.discriminator if labels and labels.multi_label else None)
        self.multiple = multiple
        # The underlying tf.Variables, tracked explicitly as keras.export.ExportArchive does:
        # without this the TFLite converter reads every Keras 3 weight as NaN.
        nets = [*self.nets.values(), *([self.discriminator] if self.discriminator else []), *self.readers.values()]
        self.tf_variables = [v.value for net in nets for v in net.variables]

    def translate(self, name: str, images, style_map=None):
        x = image_header.checked_images(images, self.max_pixels) * 2.0 - 1.0
        if self.size:
            return (tf.cast(self.nets[name](x, training=False), tf.float32) + 1.0) / 2.0
        if style_map is None:
            padded, height, width = pad_to_multiple(x, self.multiple)
            out = self.nets[name](padded, training=False)
        else:  # the map is padded with the image, so that both stay aligned
            both, height, width = pad_to_multiple(tf.concat([x, style_map], -1), self.multiple)
            c = self.channels[name]
            out = self.nets[name]([both[..., :c], both[..., c:]], training=False)
        return (tf.cast(out[:, :height, :width, :], tf.float32) + 1.0) / 2.0

    def classify(self, images):
        """Attribute probabilities of images in [0, 1] of any size, preprocessed as the held-out
        images are (resized to the load size, centre-cropped to the training size)."""
        load, crop = self.labels.load_size, self.labels.crop_size
        x = tf.image.resize(image_header.checked_images(images, self.max_pixels), [load, load], method="bicubic",
                            antialias=True)
        top = (load - crop) // 2
        x = tf.clip_by_value(x[:, top: top + crop, top: top + crop, :], 0.0, 1.0) * 2.0 - 1.0
        return tf.sigmoid(tf.cast(self.discriminator(x, training=False)[1], tf.float32))

    def target(self, text, image):
        """The label vector [N] that ``text`` names for ``image`` [1, H, W, 3]: a domain's name
        (single-label), or attribute settings "A=1,B=0" ("A" alone = "A=1") over the attributes
        the classifier reads off the image (multi-label). Unknown names fail, naming them."""
        names = tf.constant(self.labels.names)
        parts = tf.strings.split(tf.strings.split(tf.strings.strip(text), ","), "=")  # ragged [given, 1 or 2]
        dense = tf.strings.strip(parts.to_tensor(default_value="", shape=[None, 2]))
        keys, values = dense[:, 0], tf.strings.to_number(tf.where(parts.row_lengths() > 1, dense[:, 1], "1"))
        matches = tf.cast(tf.equal(keys[:, None], names[None, :]), tf.float32)  # [given, N]
        listing = ", ".join(self.labels.names)
        checks = [tf.debugging.Assert(tf.reduce_all(tf.reduce_any(matches > 0, axis=1)),
                                      [tf.strings.format("unknown domain in {}; this model knows: " + listing, text)])]
        if self.labels.multi_label:
            checks.append(tf.debugging.Assert(tf.reduce_all((values == 0.0) | (values == 1.0)), [
                tf.strings.format("{}: attribute values are 0 or 1", text)]))
        else:
            checks.append(tf.debugging.Assert(tf.equal(tf.shape(keys)[0], 1), [
                tf.strings.format("{}: name one domain of " + listing, text)]))
        with tf.control_dependencies(checks):
            given = tf.reduce_max(matches, axis=0)  # which entries the text sets
            if not self.labels.multi_label:
                return given
            chosen = tf.reduce_sum(matches * values[:, None], axis=0)
            estimated = tf.round(self.classify(image)[0])
            return tf.where(given > 0, chosen, estimated)

    def png(self, name: str, data, condition=None):
        """One encoded image translated, as PNG bytes; ``condition``: style weights [N], or the
        target domain named as a string."""
        image = decode_rgb(image_header.checked(data, self.max_pixels))[None]
        if self.size:
            image = tf.clip_by_value(tf.image.resize(image, [self.size, self.size], antialias=True), 0.0, 1.0)
        if self.channels[name] == 1:
            image = tf.image.rgb_to_grayscale(image)
        if condition is not None and self.labels:
            condition = self.target(condition, image)
        style_map = None if condition is None else label_planes(condition[None], image)
        result = self.translate(name, image, style_map)[0]
        return tf.io.encode_png(tf.image.convert_image_dtype(result, tf.uint8, saturate=True))

    def tiling_signatures(self, name: str, image_spec) -> dict:
        """For images too large to translate whole: NAME_statistics (an image, or a downscaled
        copy -> every instance norm's mean and variance, and the multiple of pixels at which
        tiles must start) and NAME_tile (a tile and those statistics -> the tile translated as
        part of the whole image)."""
        def statistics(images):
            with SharedStatistics() as shared:
                self.translate(name, images)
            # tiles must start at multiples of the down-sampling factor: strided convolutions
            # see another grid elsewhere
            return {"statistics": shared.flat(), "tile_multiple": tf.fill(tf.shape(images)[:1], self.multiple)}

        def tile(images, statistics):
            with SharedStatistics(statistics):
                return {"images": self.translate(name, images)}

        record = tf.function(statistics, input_signature=[image_spec]).get_concrete_function()
        size = record.structured_outputs["statistics"].shape[-1]
        apply = tf.function(tile, input_signature=[image_spec, tf.TensorSpec([None, size], tf.float32,
                                                                             name="statistics")])
        return {f"{name}_statistics": record, f"{name}_tile": apply.get_concrete_function()}

    def signatures(self) -> dict:
        out = {}
        key = self.condition
        for name, net in self.nets.items():
            channels, n = self.channels[name], self.conditions[name]
            image_spec = tf.TensorSpec([None, self.size, self.size, channels], tf.float32, name="images")
            bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")
            has_bytes = channels in (1, 3) and net.output_shape[-1] == channels  # images in and out
            if n:
                floats = tf.function(
                    lambda images, condition, name=name: {
                        "images": self.translate(name, images, label_planes(condition, images))},
                    input_signature=[image_spec, tf.TensorSpec([None, n], tf.float32, name=key)])
                maps = tf.function(
                    lambda images, condition, name=name: {"images": self.translate(name, images, condition)},
                    input_signature=[image_spec, tf.TensorSpec([None, None, None, n], tf.float32,
                                                               name=MAP_INPUTS[key])])
                out[f"{name}_map"] = maps.get_concrete_function()
                # the bytes endpoint takes style weights, or the target domain by name
                condition_spec = (tf.TensorSpec([None], tf.string, name="domain") if self.labels
                                  else tf.TensorSpec([None, n], tf.float32, name=key))
                encoded = tf.function(
                    lambda image_bytes, condition, name=name: {"output_bytes": tf.map_fn(
                        lambda args: self.png(name, *args), (image_bytes, condition), fn_output_signature=tf.string)},
                    input_signature=[bytes_spec, condition_spec])
            else:
                floats = tf.function(lambda images, name=name: {"images": self.translate(name, images)},
                                     input_signature=[image_spec])
                encoded = tf.function(
                    lambda image_bytes, name=name: {"output_bytes": tf.map_fn(
                        lambda data: self.png(name, data), image_bytes, fn_output_signature=tf.string)},
                    input_signature=[bytes_spec])
            out[name] = floats.get_concrete_function()
            if not n and not self.size and any(isinstance(layer, InstanceNorm) for layer in net.layers):
                out.update(self.tiling_signatures(name, image_spec))
            if has_bytes:
                out[f"{name}_bytes"] = encoded.get_concrete_function()
        for name, model in self.readers.items():
            key, fn = self.reader_outputs[name]
            out[name] = tf.function(
                lambda images, model=model, key=key, fn=fn: {key: fn(tf.cast(model(
                    image_header.checked_images(images, self.max_pixels) * 2.0 - 1.0), tf.float32))},
                input_signature=[tf.TensorSpec(model.input_shape, tf.float32, name="images")]).get_concrete_function()
        if self.discriminator is not None:
            out["classify"] = tf.function(
                lambda images: {"probabilities": self.classify(images)},
                input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")]).get_concrete_function()
        first = next(iter(self.nets))
        out["serving_default"] = out[first]
        return out


def calibration(module: ServingModule, images) -> dict | None:
    """Representative inputs per float signature from training images in [-1, 1] (one image
    per call, as a phone runs the model; a multi-style model's images in each style in turn)."""
    if images is None:
        return None
    out = {}
    for name in module.nets:
        n = module.conditions[name]
        inputs = []
        for k, image in enumerate(np.asarray(images, np.float32)):
            values = {"images": (image[None] + 1.0) / 2.0}
            if n:
                values[module.condition] = np.eye(n, dtype=np.float32)[k % n][None]
            inputs.append(values)
        out[name] = inputs
    return out
