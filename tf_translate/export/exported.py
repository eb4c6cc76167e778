"""An exported version folder loaded for inference in Python (what translate, interpolate
and evaluate use), with tiled translation of images too large to translate whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_translate.data.pipeline import to_uint8
from tf_translate.errors import UsageError
from tf_translate.export.signatures import CONDITIONS, MAP_INPUTS


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
            raise UsageError(f"unknown target domain {to!r}; this model translates to: {', '.join(targets)}")
        return matches[0]

    def classify(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities of float [0, 1] NHWC images: a multi-label StarGAN model's
        attributes (its discriminator's classification head; any size), or DTN's source
        classes (f with its stage-1 head; the training size)."""
        return self._read("classify", "probabilities", images)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """DTN's f(x) of float [0, 1] NHWC images at the training size: (batch, features)."""
        return self._read("encode", "features", images)

    @property
    def aligned(self) -> bool:
        """Whether DTN was trained with --align (it exports encode_aligned)."""
        return "encode_aligned" in self.module.signatures

    def encode_source(self, images: np.ndarray) -> np.ndarray:
        """What DTN's g draws a source image from: f(x), moved to the target's class statistics
        when the model was trained with --align."""
        return self._read("encode_aligned" if self.aligned else "encode", "features", images)

    def _read(self, name: str, key: str, images: np.ndarray) -> np.ndarray:
        if name not in self.module.signatures:
            raise UsageError(f"{self.path}: this model exports no {name} signature (multi-label StarGAN and DTN "
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
            raise UsageError(f"unknown {kind} {', '.join(map(repr, unknown))}; this model's: {', '.join(names)}")
        if not self.multi_label:
            if to is None or len(changes) != 1:
                raise UsageError(f"name one target domain of {', '.join(names)} (--to NAME); setting and "
                                 "unsetting is for attribute (multi-label) models")
            return np.tile(np.eye(len(names), dtype=np.float32)[names.index(to)], (len(images), 1))
        bad = {name: value for name, value in changes.items() if value not in (0, 1)}
        if bad:
            raise UsageError(f"attribute values are 0 or 1, not {bad}")
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
            raise UsageError(f"style weights do not apply to this model{takes}")
        if (labels is not None or changes) and self.condition != "labels":
            raise UsageError(f"labels and attribute settings are for StarGAN models{takes}")
        if self.condition is None:
            return self._run(name, images)
        if self.condition == "labels":
            value = self.labels_for(images, to, changes) if labels is None else labels
        elif style_weights is None:
            raise UsageError(f"this model blends {self.styles} styles: give style weights "
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
            raise UsageError(f"{self.path}: this model has no tiled signatures (conditional, fixed-size or "
                             "without instance norm): translate the image whole")
        if not 0 <= 2 * overlap < tile:
            raise UsageError(f"tile {tile} and overlap {overlap}: the overlap must be under half the tile")
        if tile * tile > self.max_pixels:
            raise UsageError(f"tiles of {tile}x{tile} are over the limit of {self.max_pixels:,} pixels this model was "
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
            raise UsageError(f"{self.path}: this model takes {channels}-channel NHWC images, not an array of shape {shape}")
        if size and shape[1:3] != (size, size):
            raise UsageError(f"{self.path}: this model takes {size}x{size} images (its training size), not "
                             f"{shape[2]}x{shape[1]}")
        pixels = shape[1] * shape[2]
        if pixels > self.max_pixels:
            raise UsageError(f"{self.path}: a {shape[2]}x{shape[1]} image is over the limit of {self.max_pixels:,} "
                             "pixels this model was exported with (export --max-pixels)")
        extra = {}
        if key is not None:
            n = int(self.module.signatures[name].structured_input_signature[1][key].shape[-1])
            of = f"{n} domains ({', '.join(self.domains)})" if key == "labels" else f"{n} styles"
            per_image = value.ndim == 2 and len(value) == len(images)
            if value.shape[-1:] != (n,) or not (value.ndim in (1, 3) or per_image):
                raise UsageError(f"{key} of shape {value.shape} for a model of {of}: "
                                 f"expected ({n},), (batch, {n}) or (height, width, {n})")
            if value.ndim == 3:
                if value.shape[:2] != np.shape(images)[1:3]:
                    raise UsageError(f"a {MAP_INPUTS[key].replace('_', ' ')} of {value.shape[0]}x{value.shape[1]} for images of "
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
        raise UsageError(f"tile {tile} with overlap {overlap} leaves no step that is a multiple of {multiple}: "
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
