"""Translating image files with an exported model (``tf-translate translate``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from tf_translate.apps.outputs import output_paths
from tf_translate.data.images import DataError, ImageError, input_files, read_image
from tf_translate.data.pipeline import to_uint8
from tf_translate.errors import UsageError
from tf_translate.export import Exported
from tf_translate.progress import bar_interval

MIN_SIDE = 8  # reflection padding inside the generators needs at least this many pixels


def translate_files(model_dir, inputs: list[str], output: str | Path, *, to: str | None = None,
                    style_weights=None, changes: dict | None = None, grid: bool = False,
                    batch: int = 8, tile: int = 1024, overlap: int = 128) -> list[Path]:
    """Translate every readable image to ``output/<stem>.png`` (``output_paths``: never two inputs
    to one name); unreadable ones are named and skipped, and DataError if none is written.
    ``style_weights``: one weight per style of a multi-style model. ``changes``: {attribute: 0
    or 1} for a multi-label StarGAN model (the others as the model reads them off the image).
    ``grid``: instead, ``output/<stem>_grid.png``, the image beside its translation to every
    domain (StarGAN; attributes: each switched in turn) or style. Consecutive images of one
    size are translated ``batch`` at a time; an image with a side over ``tile`` (0: never) in
    overlapping tiles that share the whole image's instance-norm statistics, where the model
    allows it (``Exported.tiled``)."""
    if batch < 1:
        raise UsageError(f"--batch {batch}: must be at least 1")
    model = Exported(model_dir)
    if model.in_channels not in (1, 3):
        raise DataError(f"{model.path}: this model takes {model.in_channels} channels (stacked frames), not one "
                        "image; for frame interpolation use scripts/interpolate.py")
    if grid and not model.condition:
        raise DataError(f"{model.path}: --grid shows one column per domain or style; this model has one direction "
                        "(use --to)")
    if not grid:  # unknown domains and bad weights fail before any work
        side = model.input_size or MIN_SIDE
        model(np.zeros((1, side, side, model.in_channels), np.float32), to=to, style_weights=style_weights,
              changes=changes)
    files = input_files(inputs)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    targets, renamed = output_paths(files, output, tag="_grid" if grid else "")
    for line in renamed:
        print(f"note: {line}", file=sys.stderr)
    written, pending = [], []  # pending: (target, image) of one shape, translated together

    def flush():
        if pending:
            out = model.images(np.stack([image for _, image in pending]), to=to, style_weights=style_weights,
                               changes=changes)
            for (target, _), made in zip(pending, out):
                save_image(made, target)
                written.append(target)
            pending.clear()

    for path, target in tqdm(list(zip(files, targets)), unit="image", disable=len(files) < 2, file=sys.stderr,
                             mininterval=bar_interval()):
        try:
            image = model_input(model, read_image(path, max_pixels=model.config.data.max_pixels))
            height, width = image.shape[:2]
            if min(height, width) < MIN_SIDE:
                raise ImageError(f"{path}: {width}x{height} is too small (at least {MIN_SIDE} px a side)")
            tiled = tile and max(height, width) > tile and model.can_tile(to) and not grid
            if height * width > model.max_pixels and not tiled:
                raise ImageError(f"{path}: {width}x{height} is over the limit of {model.max_pixels:,} pixels this "
                                 "model was exported with, and it cannot be tiled: resize it first")
        except ImageError as e:
            tqdm.write(f"skipping {e}", file=sys.stderr)
            continue
        if grid:
            Image.fromarray(grid_picture(model, image)).save(target)
            written.append(target)
            continue
        if tiled:
            made = model.tiled(image.astype(np.float32) / 255.0, to=to, tile=tile, overlap=overlap)
            save_image(np.asarray(to_uint8(made * 2.0 - 1.0)), target)
            written.append(target)
            continue
        if pending and (image.shape != pending[0][1].shape or len(pending) == batch):
            flush()
        pending.append((target, image))
    flush()
    if not written:
        raise DataError(f"nothing written: none of the {len(files)} input file(s) could be translated")
    return written


def save_image(image: np.ndarray, target: Path) -> None:
    """A uint8 HWC image (1 or 3 channels) as a greyscale or RGB file."""
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(target)


def model_input(model: Exported, image: np.ndarray) -> np.ndarray:
    """A decoded RGB image as ``model`` takes it: greyscale for a 1-channel model, resized to
    the training size for a fixed-size one (DTN)."""
    if model.in_channels == 3 and not model.input_size:
        return image
    picture = Image.fromarray(image)
    if model.input_size:
        picture = picture.resize((model.input_size, model.input_size), Image.BICUBIC)
    if model.in_channels == 1:
        return np.asarray(picture.convert("L"))[..., None]
    return np.asarray(picture)


def grid_picture(model: Exported, image: np.ndarray) -> np.ndarray:
    """uint8 ``image`` beside its translation to every domain (attributes: the model's reading
    of the image with each attribute switched in turn) or style, titled."""
    from tf_translate.data.pictures import panel
    from tf_translate.methods.stargan import columns

    x = image[None].astype(np.float32) / 255.0
    if model.condition == "labels":
        read = model.labels_for(x)[0] if model.multi_label else np.zeros(len(model.domains), np.float32)
        targets = columns(model.multi_label, read)
        titles = [("-" if on else "+") + name if model.multi_label else name
                  for name, on in zip(model.domains, read)]
        key = "labels"
    else:
        targets = np.eye(model.styles, dtype=np.float32)
        titles = [f"style {k}" for k in range(model.styles)]
        key = "style_weights"
    outs = [model(x, **{key: t})[0] for t in targets]
    return panel([[x[0] * 2.0 - 1.0, *(o * 2.0 - 1.0 for o in outs)]], ("input", *titles))
