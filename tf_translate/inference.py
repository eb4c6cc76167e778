"""Translating image files with an exported model (what scripts/translate.py runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from tf_translate.data.pipeline import to_uint8
from tf_translate.data.images import DataError, ImageError, image_files, read_image
from tf_translate.export import Exported

MIN_SIDE = 8  # reflection padding inside the generators needs at least this many pixels


def input_files(inputs: list[str]) -> list[Path]:
    """Files named, and the files of folders named, in order."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(image_files(path))
        elif path.exists():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return files


def translate_files(model_dir, inputs: list[str], output: str | Path, *, to: str | None = None) -> list[Path]:
    """Translate every readable image to ``output/<stem>.png``; unreadable ones are named and skipped."""
    model = Exported(model_dir)
    model.signature_for(to)  # an unknown --to fails before any work
    files = input_files(inputs)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(files, unit="image", disable=len(files) < 2, file=sys.stderr):
        try:
            image = read_image(path, max_pixels=model.config.data.max_pixels)
            if min(image.shape[:2]) < MIN_SIDE:
                raise ImageError(f"{path}: {image.shape[1]}x{image.shape[0]} is too small (at least {MIN_SIDE} px a side)")
        except ImageError as e:
            tqdm.write(f"skipping {e}", file=sys.stderr)
            continue
        out = model(image[None].astype(np.float32) / 255.0, to=to)[0]
        target = output / f"{path.stem}.png"
        Image.fromarray(np.asarray(to_uint8(out * 2.0 - 1.0))).save(target)
        written.append(target)
    return written
