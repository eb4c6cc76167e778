"""Where images come from: folders of files, TFDS data sets, and the samples shipped with
the package. A source is random-access (``len`` and ``load(i)``) so that a pipeline can
derive which image it reads from (seed, step) alone, and a resumed run reads what the
uninterrupted one would have read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tf_translate.data.images import DataError, image_files, read_image, scan_images

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


class ImageSource:
    """Random access to the images of one domain and split, resized to a square on load."""

    def __init__(self, name: str, items: list, *, size: int, loader=None, describe: str = ""):
        self.name = name
        self.items = items
        self.size = size
        self.describe = describe or name
        self._loader = loader or (lambda item: item)
        self._cache: dict[int, np.ndarray] = {}
        # Resized images are small: keep them once read, unless the set is large.
        self._cacheable = len(items) * size * size * 3 <= 1 << 30

    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, 3)

    def load(self, index: int) -> np.ndarray:
        index = int(index)
        image = self._cache.get(index)
        if image is None:
            image = resize_square(self._loader(self.items[index]), self.size)
            if self._cacheable:
                self._cache[index] = image
        return image

    def label(self, index: int) -> str:
        item = self.items[int(index)]
        return item.name if isinstance(item, Path) else f"{self.name}_{index:05d}"


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` with bicubic filtering (what the PyTorch references use)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def folder_source(folder: Path, name: str, *, size: int, max_pixels: int, min_images: int) -> ImageSource:
    """A folder of image files; every file is decoded once up front, bad ones are named and skipped."""
    paths = image_files(folder)
    good = scan_images(paths, max_pixels=max_pixels, warn=lambda msg: print(f"skipping {msg}", file=sys.stderr))
    if len(good) < min_images:
        raise DataError(
            f"{folder}: only {len(good)} usable image(s) of {len(paths)} file(s); at least {min_images} needed"
        )
    return ImageSource(name, good, size=size, loader=lambda p: read_image(p, max_pixels=max_pixels),
                       describe=str(folder))


def tfds_source(spec: str, split: str, name: str, *, size: int) -> ImageSource:
    """Images of split ``split`` of the TFDS data set ``spec`` ("NAME[/CONFIG]"), held in memory."""
    import tensorflow_datasets as tfds

    try:
        data = tfds.load(spec, split=split)
    except Exception as e:  # tfds raises many types; the first line says what went wrong
        raise DataError(f"tfds:{spec} split {split}: {str(e).splitlines()[0]}") from None
    images = [_to_rgb(example["image"]) for example in tfds.as_numpy(data)]
    if not images:
        raise DataError(f"tfds:{spec} split {split}: no images")
    return ImageSource(name, images, size=size, describe=f"tfds:{spec}[{split}]")


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def resolve(source: str | None, default_sample: str) -> str:
    """The data source a run reads: the user's, or the embedded sample folder."""
    if source is None:
        return str(SAMPLES / default_sample)
    return source


def tfds_spec(source: str) -> str | None:
    return source[len("tfds:"):] if source.startswith("tfds:") else None


def domain_names_from_tfds(spec: str) -> tuple[str, str] | None:
    """``cycle_gan/horse2zebra`` -> ("horse", "zebra")."""
    config = spec.split("/")[-1]
    if "2" in config:
        a, b = config.split("2", 1)
        if a and b:
            return a, b
    return None
