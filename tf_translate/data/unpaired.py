"""Unpaired data: two domains A and B (CycleGAN's ``trainA/ trainB/ [testA/ testB/]`` layout,
or a TFDS data set with those splits, such as ``cycle_gan/horse2zebra``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tf_translate.config import DataConfig
from tf_translate.data import pipeline, sources
from tf_translate.data.images import DataError

DEFAULT_SAMPLE = "cartoon2photo"


@dataclasses.dataclass
class UnpairedData:
    domains: tuple[str, str]
    train: tuple[sources.ImageSource, sources.ImageSource]
    test: tuple[sources.ImageSource, sources.ImageSource] | None
    crop_size: int

    @property
    def steps_per_epoch_samples(self) -> int:
        """One epoch passes over the larger domain once (as the PyTorch reference does)."""
        return max(len(s) for s in self.train)

    def complete(self, cfg):
        """``cfg`` with the domain names this data resolved (e.g. from a TFDS name)."""
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, domains=tuple(self.domains)))

    def training(self, *, batch_size: int, flip: bool, seed: int, first_step: int, steps: int,
                 part: tuple[int, int] = (0, 1)):
        """Batches (real_a, real_b) in [-1, 1] for global steps ``first_step .. first_step+steps-1``."""
        src_a, src_b = self.train

        def sample(j):
            a = pipeline.read(src_a, pipeline.pick(src_a, j, seed, 0))
            b = pipeline.read(src_b, pipeline.pick(src_b, j, seed, 1))
            (a,) = pipeline.jitter([a], crop_size=self.crop_size, flip=flip, seed=seed, sample=2 * j)
            (b,) = pipeline.jitter([b], crop_size=self.crop_size, flip=flip, seed=seed, sample=2 * j + 1)
            return pipeline.to_float(a), pipeline.to_float(b)

        return pipeline.indexed(first_step * batch_size, steps * batch_size, batch_size, sample, part)

    def held_out(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Test images of both domains, centre-cropped to the crop size, float [-1, 1]."""
        if self.test is None:
            raise DataError("no test split (testA/ and testB/) to validate on")
        return pipeline.first_images(self.test[0], limit, self.crop_size), pipeline.first_images(self.test[1], limit, self.crop_size)

    def preview(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Fixed images for sample panels: held-out ones when there is a test split."""
        a, b = self.test or self.train
        return pipeline.first_images(a, n, self.crop_size), pipeline.first_images(b, n, self.crop_size)


def load(cfg: DataConfig) -> UnpairedData:
    """Resolve ``cfg.data`` (folder, tfds:NAME, or None = embedded sample) into sources."""
    source = sources.resolve(cfg.data, DEFAULT_SAMPLE)
    spec = sources.tfds_spec(source)
    domains = tuple(cfg.domains)
    if len(domains) != 2:
        raise DataError(f"unpaired data has two domains, got {len(domains)}: {','.join(domains)}")

    if spec is not None:
        if domains == ("a", "b"):
            domains = sources.domain_names_from_tfds(spec) or domains
        make = lambda split, name: sources.tfds_source(spec, split, name, size=cfg.load_size)  # noqa: E731
        train = (make("trainA", domains[0]), make("trainB", domains[1]))
        try:
            test = (make("testA", domains[0]), make("testB", domains[1]))
        except DataError:
            test = None
    else:
        root = Path(source)
        if not root.exists():
            raise DataError(f"{root}: no such folder")
        if not root.is_dir():
            raise DataError(f"{root}: not a folder (expected trainA/ and trainB/ inside)")
        missing = [d for d in ("trainA", "trainB") if not (root / d).is_dir()]
        if missing:
            raise DataError(f"{root}: missing {' and '.join(missing)}/ (unpaired data needs trainA/ and trainB/)")

        def make(sub, name, min_images):
            return sources.folder_source(root / sub, name, size=cfg.load_size, max_pixels=cfg.max_pixels,
                                         min_images=min_images)

        train = (make("trainA", domains[0], cfg.min_images), make("trainB", domains[1], cfg.min_images))
        has_test = (root / "testA").is_dir() and (root / "testB").is_dir()
        test = (make("testA", domains[0], 1), make("testB", domains[1], 1)) if has_test else None
    return UnpairedData(domains=domains, train=train, test=test, crop_size=cfg.crop_size)


def from_config(cfg):
    """The data a run of ``cfg`` trains on (``tf_translate.data.load``)."""
    return load(cfg.data)
