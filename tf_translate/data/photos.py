"""One domain of photos: the content images of fast style transfer.

A folder with ``train/`` (and optionally ``test/``) inside, or a flat folder of images (its
last tenth held out), or ``tfds:NAME`` (its ``train`` and ``test`` splits). Without data:
the public-domain photos shipped with the package (the photo side of the CycleGAN
sample): 60 to train on, 8 held out. Images are resized to a load-size square, as
Johnson et al. resized COCO to 256x256, then randomly cropped and flipped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_translate.config import DataConfig
from tf_translate.data import pipeline, sources
from tf_translate.data.images import DataError, read_image

DEFAULT_SAMPLE = sources.SAMPLES / "cartoon2photo"


@dataclasses.dataclass
class PhotoData:
    train: sources.ImageSource
    test: sources.ImageSource | None
    crop_size: int

    @property
    def steps_per_epoch_samples(self) -> int:
        return len(self.train)

    def complete(self, cfg):
        """``cfg`` with its style images (fast style) as absolute paths, the default one named,
        so that the run can be resumed or exported from any folder."""
        styles = getattr(cfg.model, "style", ())
        if styles is None:
            styles = (default_style(),)
        resolved = tuple(str(Path(p).expanduser().resolve()) for p in styles)
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, style=resolved)) if styles else cfg

    def training(self, *, batch_size: int, flip: bool, seed: int, first_step: int, steps: int,
                 part: tuple[int, int] = (0, 1)):
        """Batches of photos in [-1, 1] for global steps ``first_step .. first_step+steps-1``."""
        def sample(j):
            (image,) = pipeline.jitter([pipeline.read(self.train, pipeline.pick(self.train, j, seed, 0))],
                                       crop_size=self.crop_size, flip=flip, seed=seed, sample=j)
            return pipeline.to_float(image)

        return pipeline.indexed(first_step * batch_size, steps * batch_size, batch_size, sample, part)

    def held_out(self, limit: int | None = None) -> tuple[np.ndarray]:
        """(held-out photos,), centre-cropped, float [-1, 1]."""
        if self.test is None:
            raise DataError("no held-out photos to validate on")
        return (pipeline.first_images(self.test, limit, self.crop_size),)

    def preview(self, n: int) -> tuple[np.ndarray]:
        return (pipeline.first_images(self.test or self.train, n, self.crop_size),)


def load(cfg: DataConfig) -> PhotoData:
    size = cfg.load_size
    folder = lambda path, name, least: sources.folder_source(  # noqa: E731
        path, name, size=size, max_pixels=cfg.max_pixels, min_images=least)
    if cfg.data is None:
        return PhotoData(folder(DEFAULT_SAMPLE / "trainB", "photos", 1), folder(DEFAULT_SAMPLE / "testB", "photos", 1),
                         cfg.crop_size)
    spec = sources.tfds_spec(cfg.data)
    if spec is not None:
        train = sources.tfds_source(spec, "train", "photos", size=size)
        try:
            test = sources.tfds_source(spec, "test", "photos", size=size)
        except DataError:
            test = None
        return PhotoData(train, test, cfg.crop_size)
    root = Path(cfg.data)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected photos, or train/ [test/] folders of photos)")
    if (root / "train").is_dir():
        test = folder(root / "test", "photos", 1) if (root / "test").is_dir() else None
        return PhotoData(folder(root / "train", "photos", cfg.min_images), test, cfg.crop_size)
    every = folder(root, "photos", max(2, cfg.min_images))
    cut = len(every) - max(1, len(every) // 10)
    part = lambda items: sources.ImageSource("photos", items, size=size, loader=every._loader,  # noqa: E731
                                             describe=str(root))
    return PhotoData(part(every.items[:cut]), part(every.items[cut:]), cfg.crop_size)


def sample_image(name: str) -> Path:
    """A photo that scikit-image ships in its wheel (``skimage/data``), e.g. chelsea.png."""
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: not in this scikit-image installation")
    return path


def load_image(path, longer_side: int) -> tf.Tensor:
    """An image file as (1, H, W, 3) in [-1, 1], scaled so that its longer side is ``longer_side``."""
    pixels = read_image(path)
    h, w = pixels.shape[:2]
    scale = longer_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    image = tf.image.resize(tf.constant(pixels[None], tf.float32), size, method="bicubic", antialias=True)
    return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)


def default_style() -> str:
    return str(sample_image("ihc.png"))


def from_config(cfg):
    """The data a run of ``cfg`` trains on (``tf_translate.data.load``)."""
    return load(cfg.data)
