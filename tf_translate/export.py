"""Export of a model's generator(s): a SavedModel that TF Serving loads as it is, and a
float32 TFLite model checked against it.

Layout: ``EXPORT_DIR/<version>/`` is the SavedModel root (``saved_model.pb``,
``variables/``) with ``config.json``, ``model.tflite`` and ``tflite_parity.json`` beside
them. A version is written under a hidden temporary name and renamed when complete, so TF
Serving (which polls for the highest numeric folder) never sees a half-written one
(``staging``).

Every signature refuses, with InvalidArgument and before decoding or running a network, a
request over the export's pixel limit (``ExportConfig.max_pixels``): an encoded image whose
header declares more pixels (``image_header``), or float images of more batch x height x
width. The TFLite files carry no such check (TFLite has no assertion op); the Python
``Exported`` refuses and splits calls by the same limit.

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

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_translate import image_header, serving_config, staging
from tf_translate.config import SERVING_MAX_PIXELS
from tf_translate.data.pipeline import to_uint8
from tf_translate.layers import InstanceNorm, SharedStatistics, StatelessDropout, label_planes

PARITY_TOLERANCE = 1e-3  # max |TFLite - SavedModel| on [0, 1] outputs for the float32 model


class ExportError(RuntimeError):
    pass


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


@dataclasses.dataclass
class DomainLabels:
    """A generator conditioned on named domains (StarGAN): the label vector's entries, whether
    they are attributes (multi-label), and, for attributes, the discriminator whose
    classification head reads them off a photo (``classify``) with its training sizes."""
    names: tuple[str, ...]
    multi_label: bool
    discriminator: object = None
    load_size: int = 0
    crop_size: int = 0


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


def next_version(root: Path) -> int:
    versions = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.exists() else []
    return max(versions, default=0) + 1


def export_model(model, cfg, *, examples=None, export_dir: str | Path | None = None, representative=None) -> Path:
    """Write the next version of ``model``'s generators; returns the version folder.
    ``representative``: training images (float [-1, 1]) to calibrate an int8 or int16x8 variant."""
    root = Path(export_dir or cfg.export_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging.remove_stale(root)
    version = next_version(root)
    with staging.staging(root, version) as tmp:
        module = ServingModule(model.generators(), model.down_factor(), model.domain_labels(), model.input_size(),
                               model.readers(), max_pixels=cfg.export.max_pixels)
        for net in module.nets.values():
            for layer in net.layers:
                if isinstance(layer, StatelessDropout):
                    layer.at_test = cfg.export.test_dropout
        signatures = module.signatures()
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        serving_config.write_warmup(tmp, signatures, domains=module.labels.names if module.labels else (),
                                    max_pixels=module.max_pixels)
        cfg.save(tmp / "config.json")
        if cfg.export.tflite:
            with tempfile.TemporaryDirectory(prefix="tf_translate_fixed_") as fixed:
                if FIXED_SIZE_VARIANTS & set(cfg.export.tflite_variants):
                    # the same generators without the padding (no index arithmetic) at the training size
                    sized = ServingModule(model.generators(), model.down_factor(), model.domain_labels(),
                                          size=model.input_size() or cfg.data.crop_size)
                    every = sized.signatures()
                    tf.saved_model.save(sized, fixed, signatures={n: every[n] for n in sized.nets})
                write_tflite(tmp, list(module.nets), examples, check=not cfg.export.test_dropout,
                             variants=cfg.export.tflite_variants, representative=calibration(module, representative),
                             fixed_size=Path(fixed))
        final = root / str(version)
        os.rename(tmp, final)
    print(f"exported {final}", flush=True)
    return final


TFLITE_VARIANTS = ("float32", "float16", "dynamic-int8", "int8", "int16x8")
CALIBRATED = {"int8", "int16x8"}  # variants whose activations are quantized on representative images
# int16x8 is converted from signatures of the training size: the converter cannot calibrate
# 16-bit activations through the dynamic-size padding ("Max and min for dynamic tensors should
# be recorded during calibration: Failed for tensor FloorMod"), a known converter bug.
FIXED_SIZE_VARIANTS = {"int16x8"}


def needs_calibration(variants) -> bool:
    return bool(CALIBRATED & set(variants))


def tflite_file(variant: str) -> str:
    return "model.tflite" if variant == "float32" else f"model_{variant}.tflite"


def convert_tflite(saved_model: Path, names: list[str], variant: str, representative=None) -> bytes:
    """One TFLite variant of the float signatures, builtin ops only: float32; float16 weights;
    dynamic-int8 (int8 weights, float activations); int8 (weights and activations, calibrated
    on ``representative``: {signature: [input dicts]}, float in and out); int16x8 (int8
    weights, 16-bit activations, calibrated likewise; ops without a 16-bit kernel stay float)."""
    if variant not in TFLITE_VARIANTS:
        raise ExportError(f"unknown TFLite variant {variant!r}; expected one of {', '.join(TFLITE_VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=names)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant in CALIBRATED:
        if not representative:
            raise ExportError(f"{variant} TFLite needs representative images (from the training data)")

        def samples():
            for name, inputs in representative.items():
                for values in inputs:
                    yield (name, values) if len(names) > 1 else values

        converter.representative_dataset = samples
    with warnings.catch_warnings():  # int8 calibration runs TF's own deprecated interpreter inside
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        try:
            flat = converter.convert()
        except Exception as e:  # the converter raises its own types; its first line names the op
            first = next((line for line in str(e).splitlines() if "op" in line.lower()), str(e).splitlines()[0])
            raise ExportError(f"{saved_model}: cannot convert to {variant} TFLite with builtin ops only: {first.strip()}") from None
    flex = flex_ops(flat)
    if flex:
        raise ExportError(f"TFLite model needs Flex (TF) ops {', '.join(flex)}; only builtin ops are allowed")
    return flat


def write_tflite(saved_model: Path, names: list[str], examples=None, check: bool = True,
                 variants=("float32",), representative=None, fixed_size: Path | None = None) -> dict | None:
    """Convert the float signatures to each TFLite variant (``model.tflite`` is float32; the
    FIXED_SIZE_VARIANTS from ``fixed_size``, the same signatures at the training size) and
    check them against the SavedModel (not for a model with test-time dropout, whose outputs
    differ on every call): float32 must agree within PARITY_TOLERANCE; the quantized variants'
    max error and PSNR are reported in ``tflite_parity.json``."""
    for variant in variants:
        source = fixed_size if variant in FIXED_SIZE_VARIANTS else saved_model
        (saved_model / tflite_file(variant)).write_bytes(convert_tflite(source, names, variant, representative))
    if not check:
        return None
    report = tflite_parity(saved_model, names, examples)
    report["variants"] = {v: tflite_parity(saved_model, names, examples, variant=v)["signatures"]
                          for v in variants if v != "float32"}
    (saved_model / "tflite_parity.json").write_text(json.dumps(report, indent=2))
    worst = max(r["max_abs_error"] for r in report["signatures"].values())
    if not worst <= PARITY_TOLERANCE:  # NaN fails too
        raise ExportError(f"TFLite output differs from the SavedModel by {worst:.2e} (> {PARITY_TOLERANCE})")
    return report


def flex_ops(flat: bytes) -> list[str]:
    """Names of TF (Flex) ops in a TFLite flatbuffer."""
    ops = set()
    interpreter = litert_interpreter(flat)
    for detail in interpreter._get_ops_details():
        if detail["op_name"].startswith("Flex") or detail["op_name"] == "DELEGATE":
            ops.add(detail["op_name"])
    return sorted(ops)


def litert_interpreter(flat: bytes):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=flat)


def run_tflite(interpreter, name: str, images: np.ndarray, **inputs) -> np.ndarray:
    runner = interpreter.get_signature_runner(name)
    return runner(images=images.astype(np.float32), **{k: v.astype(np.float32) for k, v in inputs.items()})["images"]


def tflite_parity(saved_model: Path, names: list[str], examples=None, variant: str = "float32",
                  limit: int | None = 2) -> dict:
    """Max and mean |TFLite - SavedModel| and PSNR per signature on the first ``limit`` of
    ``examples`` (float [-1, 1] batches per signature input) or, without them, on a fixed
    random image of an odd size."""
    loaded = tf.saved_model.load(str(saved_model))
    interpreter = litert_interpreter((saved_model / tflite_file(variant)).read_bytes())
    report = {"tolerance": PARITY_TOLERANCE, "signatures": {}}
    for i, name in enumerate(names):
        fn = loaded.signatures[name]
        channels = fn.structured_input_signature[1]["images"].shape[-1]
        if examples is not None and i < len(examples):
            images = (np.asarray(examples[i][:limit], np.float32) + 1.0) / 2.0
        else:  # an odd size, or the size of a fixed-size variant
            shape = interpreter.get_signature_runner(name).get_input_details()["images"]["shape_signature"]
            height, width = (int(n) if n > 0 else default for n, default in zip(shape[1:3], (37, 45)))
            images = np.random.default_rng(0).random((1, height, width, channels), dtype=np.float32)
        extra = {}
        for key in CONDITIONS.intersection(fn.structured_input_signature[1]):  # an even blend of all
            n = fn.structured_input_signature[1][key].shape[-1]
            extra[key] = np.full((1, n), 1.0 / n, np.float32)
        expected = [fn(images=tf.constant(image[None]), **extra)["images"].numpy()[0] for image in images]
        errors = []
        for image, want in zip(images, expected):
            got = run_tflite(interpreter, name, image[None], **extra)[0]
            errors.append(np.abs(got - want))
        errors = np.stack(errors)
        mse = float(np.mean(errors**2))
        report["signatures"][name] = {"max_abs_error": float(errors.max()), "mean_abs_error": float(errors.mean()),
                                      "psnr_db": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
                                      "images": int(len(images)), "shape": list(images.shape[1:])}
    return report


class Exported:
    """An exported version folder, for inference in Python (what translate and evaluate use)."""

    def __init__(self, path: str | Path):
        from tf_translate import config

        self.path = Path(path)
        if not (self.path / "saved_model.pb").exists():
            raise FileNotFoundError(f"{self.path}: not an exported model version (no saved_model.pb)")
        self.config = config.load(self.path / "config.json")
        self.module = tf.saved_model.load(str(self.path))
        # the float signatures that draw images (not the bytes, map and reader ones)
        self.names = [n for n, fn in self.module.signatures.items() if n != "serving_default"
                      and not n.endswith(("_bytes", "_map", "_tile")) and "images" in fn.structured_outputs]

    @property
    def max_pixels(self) -> int:
        """The most pixels (batch x height x width) one call takes: the limit set at export."""
        return self.config.export.max_pixels

    @property
    def in_channels(self) -> int:
        return int(self.module.signatures[self.names[0]].structured_input_signature[1]["images"].shape[-1])

    @property
    def input_size(self) -> int | None:
        """The one square size a fixed-size model (DTN) takes; None = any height and width."""
        return self.module.signatures[self.names[0]].structured_input_signature[1]["images"].shape[1]

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.config.data.domains)

    @property
    def condition(self) -> str | None:
        """The second input of a conditional model: "style_weights" (multi-style fast style),
        "labels" (StarGAN's target domains); None for any other model."""
        inputs = self.module.signatures[self.names[0]].structured_input_signature[1]
        return next((key for key in sorted(CONDITIONS) if key in inputs), None)

    @property
    def styles(self) -> int:
        """Number of styles a conditional (multi-style) model blends; 0 for any other model."""
        if self.condition != "style_weights":
            return 0
        return int(self.module.signatures[self.names[0]].structured_input_signature[1]["style_weights"].shape[-1])

    @property
    def multi_label(self) -> bool:
        """Whether a StarGAN model's labels are attributes (several on at once)."""
        return bool(getattr(self.config.model, "attrs", ()))

    def signature_for(self, to: str | None) -> str:
        """The float signature whose target domain is ``to`` (default: serving_default's); a
        StarGAN model has one signature for every domain."""
        if to is None or self.condition == "labels":
            return self.names[0]
        matches = [n for n in self.names if n.endswith(f"2{to}")]
        if not matches:
            targets = sorted({n.split("2", 1)[-1] for n in self.names})
            raise ValueError(f"unknown target domain {to!r}; this model translates to: {', '.join(targets)}")
        return matches[0]

    def classify(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities of float [0, 1] NHWC images: a multi-label StarGAN model's
        attributes (its discriminator's classification head; any size), or DTN's source
        classes (f with its stage-1 head; the training size)."""
        return self._read("classify", "probabilities", images)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """DTN's f(x) of float [0, 1] NHWC images at the training size: (batch, features)."""
        return self._read("encode", "features", images)

    def _read(self, name: str, key: str, images: np.ndarray) -> np.ndarray:
        if name not in self.module.signatures:
            raise ValueError(f"{self.path}: this model exports no {name} signature (multi-label StarGAN and DTN "
                             "export classify, DTN encode)")
        return self.module.signatures[name](images=tf.constant(images, tf.float32))[key].numpy()

    def labels_for(self, images: np.ndarray, to: str | None = None, changes: dict | None = None) -> np.ndarray:
        """Target label vectors (batch, N) for a StarGAN model: the one-hot of domain ``to``
        (single-label); or the attributes the model reads off each image with ``changes``
        {name: 0 or 1} (and ``to`` = {to: 1}) applied (multi-label)."""
        names = self.domains
        changes = {**(changes or {}), **({to: 1} if to is not None else {})}
        unknown = [name for name in changes if name not in names]
        if unknown:
            kind = "attribute" if self.multi_label else "domain"
            raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; this model's: {', '.join(names)}")
        if not self.multi_label:
            if to is None or len(changes) != 1:
                raise ValueError(f"name one target domain of {', '.join(names)} (--to NAME); setting and "
                                 "unsetting is for attribute (multi-label) models")
            return np.tile(np.eye(len(names), dtype=np.float32)[names.index(to)], (len(images), 1))
        bad = {name: value for name, value in changes.items() if value not in (0, 1)}
        if bad:
            raise ValueError(f"attribute values are 0 or 1, not {bad}")
        labels = np.round(self.classify(images)).astype(np.float32)
        for name, value in changes.items():
            labels[:, names.index(name)] = value
        return labels

    def __call__(self, images: np.ndarray, to: str | None = None, style_weights=None, labels=None,
                 changes: dict | None = None) -> np.ndarray:
        """float [0, 1] NHWC -> float [0, 1] NHWC. A multi-style model takes ``style_weights``:
        (N,) blends its styles globally, (height, width, N) per pixel (the ``_map`` signature).
        A StarGAN model takes ``labels`` of those shapes or (batch, N), or ``to`` and
        ``changes`` as ``labels_for`` reads them."""
        name = self.signature_for(to)
        takes = f" (it takes {self.condition})" if self.condition else ""
        if style_weights is not None and self.condition != "style_weights":
            raise ValueError(f"style weights do not apply to this model{takes}")
        if (labels is not None or changes) and self.condition != "labels":
            raise ValueError(f"labels and attribute settings are for StarGAN models{takes}")
        if self.condition is None:
            return self._run(name, images)
        if self.condition == "labels":
            value = self.labels_for(images, to, changes) if labels is None else labels
        elif style_weights is None:
            raise ValueError(f"this model blends {self.styles} styles: give style weights "
                             f"(e.g. {','.join(['1'] + ['0'] * (self.styles - 1))})")
        else:
            value = style_weights
        return self._run(name, images, self.condition, np.asarray(value, np.float32))

    def can_tile(self, to: str | None = None) -> bool:
        """Whether the generator for ``to`` has the tiled signatures (``tiled``)."""
        return f"{self.signature_for(to)}_tile" in self.module.signatures

    def tiled(self, image: np.ndarray, to: str | None = None, *, tile: int = 1024, overlap: int = 64,
              statistics_side: int = 1024) -> np.ndarray:
        """float [0, 1] HWC -> HWC, translated in overlapping ``tile`` x ``tile`` tiles that
        every instance norm treats as parts of the whole: its statistics come from the image
        (downscaled so its longer side is at most ``statistics_side``). Tiles are blended with
        weights ramping over the ``overlap``. Unconditional models with instance norm only."""
        name = self.signature_for(to)
        if not self.can_tile(to):
            raise ValueError(f"{self.path}: this model has no tiled signatures (conditional, fixed-size or "
                             "without instance norm): translate the image whole")
        if not 0 <= 2 * overlap < tile:
            raise ValueError(f"tile {tile} and overlap {overlap}: the overlap must be under half the tile")
        if tile * tile > self.max_pixels:
            raise ValueError(f"tiles of {tile}x{tile} are over the limit of {self.max_pixels:,} pixels this model was "
                             f"exported with: use tiles of at most {int(self.max_pixels ** 0.5)}")
        height, width = image.shape[:2]
        scale = min(1.0, statistics_side / max(height, width))
        small = tf.image.resize(image[None], [max(1, round(height * scale)), max(1, round(width * scale))],
                                antialias=True) if scale < 1 else image[None]
        found = self.module.signatures[f"{name}_statistics"](images=tf.constant(small, tf.float32))
        stats, multiple = found["statistics"], int(found["tile_multiple"][0])
        out, total = None, np.zeros((height, width, 1), np.float32)
        for top in tile_starts(height, tile, overlap, multiple):
            for left in tile_starts(width, tile, overlap, multiple):
                part = image[top: top + tile, left: left + tile]
                made = self.module.signatures[f"{name}_tile"](images=tf.constant(part[None], tf.float32),
                                                              statistics=stats)["images"].numpy()[0]
                weight = (blend_ramp(top, part.shape[0], height, overlap)[:, None]
                          * blend_ramp(left, part.shape[1], width, overlap)[None, :])[..., None]
                if out is None:
                    out = np.zeros((height, width, made.shape[-1]), np.float32)
                out[top: top + part.shape[0], left: left + part.shape[1]] += made * weight
                total[top: top + part.shape[0], left: left + part.shape[1]] += weight
        return out / total

    def _run(self, name: str, images: np.ndarray, key: str | None = None, value=None) -> np.ndarray:
        """Call signature ``name`` with condition ``key`` = ``value``: (N,) for every image,
        (batch, N) one each, or (height, width, N) per pixel (the ``_map`` signature)."""
        channels, size, shape = self.in_channels, self.input_size, np.shape(images)
        if len(shape) != 4 or shape[-1] != channels:
            raise ValueError(f"{self.path}: this model takes {channels}-channel NHWC images, not an array of shape {shape}")
        if size and shape[1:3] != (size, size):
            raise ValueError(f"{self.path}: this model takes {size}x{size} images (its training size), not "
                             f"{shape[2]}x{shape[1]}")
        pixels = shape[1] * shape[2]
        if pixels > self.max_pixels:
            raise ValueError(f"{self.path}: a {shape[2]}x{shape[1]} image is over the limit of {self.max_pixels:,} "
                             "pixels this model was exported with (export --max-pixels)")
        extra = {}
        if key is not None:
            n = int(self.module.signatures[name].structured_input_signature[1][key].shape[-1])
            of = f"{n} domains ({', '.join(self.domains)})" if key == "labels" else f"{n} styles"
            per_image = value.ndim == 2 and len(value) == len(images)
            if value.shape[-1:] != (n,) or not (value.ndim in (1, 3) or per_image):
                raise ValueError(f"{key} of shape {value.shape} for a model of {of}: "
                                 f"expected ({n},), (batch, {n}) or (height, width, {n})")
            if value.ndim == 3:
                if value.shape[:2] != np.shape(images)[1:3]:
                    raise ValueError(f"a {MAP_INPUTS[key].replace('_', ' ')} of {value.shape[0]}x{value.shape[1]} for images of "
                                     f"{np.shape(images)[1]}x{np.shape(images)[2]}")
                name, key, value = f"{name}_map", MAP_INPUTS[key], np.stack([value] * len(images))
            elif value.ndim == 1:
                value = np.tile(value, (len(images), 1))
            extra[key] = np.asarray(value, np.float32)
        per_call = max(1, self.max_pixels // pixels)  # batches split to stay within the limit
        return np.concatenate([self.module.signatures[name](
            images=tf.constant(images[start: start + per_call], tf.float32),
            **{k: tf.constant(v[start: start + per_call]) for k, v in extra.items()})["images"].numpy()
            for start in range(0, len(images), per_call)])

    def images(self, images: np.ndarray, to: str | None = None, **condition) -> np.ndarray:
        """uint8 NHWC -> uint8 NHWC (rounded), e.g. decoded files or video frames; ``condition``
        as ``__call__`` takes it."""
        out = self(images.astype(np.float32) / 255.0, to=to, **condition)
        return np.asarray(to_uint8(out * 2.0 - 1.0))


def tile_starts(size: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Where tiles of (at most) ``tile`` pixels start along a side of ``size``: multiples of
    ``multiple``, each overlapping the one before by at least ``overlap``; the last reaches the edge."""
    step = (tile - overlap) // multiple * multiple
    if step < 1:
        raise ValueError(f"tile {tile} with overlap {overlap} leaves no step that is a multiple of {multiple}: "
                         "use larger tiles")
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(starts[-1] + step)
    return starts


def blend_ramp(start: int, length: int, size: int, overlap: int) -> np.ndarray:
    """Blending weights of a tile along one side: rising linearly over ``overlap`` pixels at
    an edge shared with a neighbour, 1 elsewhere (and at the image's own edges)."""
    weight = np.ones(length, np.float32)
    if overlap:
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if start > 0:
            weight[:overlap] = np.minimum(weight[:overlap], ramp)
        if start + length < size:
            weight[-overlap:] = np.minimum(weight[-overlap:], ramp[::-1])
    return weight


def export_run(run_dir: str | Path, *, export_dir: str | Path | None = None, best: bool = False,
               test_dropout: bool | None = None, tflite_variants: tuple[str, ...] | None = None,
               tflite: bool = True, max_pixels: int | None = None) -> Path:
    """Export a run folder's latest (or best) checkpoint as the next version; ``tflite_variants``
    replaces the run's (float32 is always written); ``tflite=False`` writes the SavedModel only;
    ``max_pixels`` replaces the run's pixel limit per request."""
    from tf_translate import config, trainer

    run_dir = Path(run_dir)
    cfg = config.load(run_dir / "config.json")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output=str(run_dir)))
    if test_dropout is not None:
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, test_dropout=test_dropout))
    if tflite_variants is not None:
        unknown = sorted(set(tflite_variants) - set(TFLITE_VARIANTS))
        if unknown:
            raise ExportError(f"unknown TFLite variant {', '.join(unknown)}; expected some of {', '.join(TFLITE_VARIANTS)}")
        variants = ("float32", *(v for v in tflite_variants if v != "float32"))
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, tflite=True, tflite_variants=variants))
    if not tflite:
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, tflite=False))
    if max_pixels is not None:  # ExportConfig refuses a value under 1
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, max_pixels=max_pixels))
    representative = None
    if cfg.export.tflite and needs_calibration(cfg.export.tflite_variants):
        from tf_translate import data as tf_data, registry

        representative = trainer.representative(tf_data.load(registry.get(cfg.method).data_kind, cfg), cfg)
    return export_model(trainer.restore(cfg, best), cfg, export_dir=export_dir, representative=representative)
