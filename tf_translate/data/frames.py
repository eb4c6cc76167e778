"""Stacks of frames for pix2pix: strips (K frames side by side in one image; an A|B pair is
a strip of 2) and windows of consecutive video frames. A source is random-access: ``len``,
``load(i)`` -> uint8 (K, H, W, 3), ``shape`` and ``label(i)``, like ``ImageSource``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tf_translate.data import video
from tf_translate.data.images import DataError, read_image, scan_images
from tf_translate.data.sources import resize_square


def layout(frames: int, inputs, targets, direction: str = "a2b") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Input and target frame indices of a stack of ``frames``, checked.

    Defaults: a pair (2 frames) maps A to B (``direction`` a2b) or B to A; a longer stack
    maps its first and last frame to the ones between them (frame interpolation).
    """
    if direction not in ("a2b", "b2a"):
        raise DataError(f"direction {direction!r}: expected a2b or b2a")
    if inputs is None:
        inputs = ((0,) if direction == "a2b" else (1,)) if frames == 2 else (0, frames - 1)
    inputs = tuple(int(i) for i in inputs)
    if targets is None:
        targets = tuple(i for i in range(frames) if i not in inputs)
    targets = tuple(int(i) for i in targets)
    for name, chosen in (("input", inputs), ("target", targets)):
        if not chosen:
            raise DataError(f"no {name} frames: give at least one")
        wrong = [i for i in chosen if not 0 <= i < frames]
        if wrong:
            raise DataError(f"{name} frame(s) {','.join(map(str, wrong))} out of range: a stack has {frames} "
                            f"frames, 0..{frames - 1}")
        if len(set(chosen)) != len(chosen):
            raise DataError(f"{name} frames {','.join(map(str, chosen))} repeat a frame")
    both = sorted(set(inputs) & set(targets))
    if both:
        raise DataError(f"frame(s) {','.join(map(str, both))} are both input and target")
    return inputs, targets


def blend_weights(inputs, targets) -> np.ndarray:
    """The linear baseline of each target frame from the input frames, as a float64
    (len(inputs), len(targets)) matrix: the cross-fade ``(1 - p) * before + p * after`` of the
    nearest input frames around a target (frame interpolation), else the nearest input frame
    (the earlier one on a tie); an A|B pair's baseline is the input itself."""
    weights = np.zeros((len(inputs), len(targets)))
    for k, t in enumerate(targets):
        before = [i for i in inputs if i < t]
        after = [i for i in inputs if i > t]
        if before and after:
            i0, i1 = max(before), min(after)
            p = (t - i0) / (i1 - i0)
            weights[inputs.index(i0), k], weights[inputs.index(i1), k] = 1.0 - p, p
        else:
            weights[min(range(len(inputs)), key=lambda j: (abs(inputs[j] - t), inputs[j])), k] = 1.0
    return weights


def is_crossfade(weights: np.ndarray, k: int) -> bool:
    """Whether target ``k``'s baseline mixes two input frames (it lies between them)."""
    return int(np.count_nonzero(weights[:, k])) == 2


def is_interpolation(weights: np.ndarray) -> bool:
    """Whether a layout (its ``blend_weights``) is frame interpolation: two input frames, every
    target between them."""
    return weights.shape[0] == 2 and all(is_crossfade(weights, k) for k in range(weights.shape[1]))


class StripSource:
    """Image files (``items``, already checked by :func:`strip_files`) each holding
    ``frames`` equal-width frames side by side; every frame is resized to ``size`` x ``size``."""

    def __init__(self, items: list[Path], *, frames: int, size: int, max_pixels: int, name: str):
        self.items, self.frames, self.size, self.max_pixels, self.name = items, frames, size, max_pixels, name
        self.shape = (frames, size, size, 3)
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index) -> np.ndarray:
        index = int(index)
        if index not in self._cache:
            image = read_image(self.items[index], max_pixels=self.max_pixels)
            width = image.shape[1] // self.frames
            self._cache[index] = np.stack([resize_square(np.ascontiguousarray(image[:, k * width:(k + 1) * width]),
                                                         self.size) for k in range(self.frames)])
        return self._cache[index]

    def label(self, index) -> str:
        return self.items[int(index)].name


def strip_files(paths: list[Path], *, frames: int, max_pixels: int) -> list[Path]:
    """The files that decode and divide into ``frames`` equal widths; the others are named and skipped."""
    def check(image):
        width = image.shape[1]
        return f"width {width} is not a multiple of {frames} frames" if width % frames else None

    return scan_images(paths, max_pixels=max_pixels, warn=_skip, check=check)


def held_out_split(items: list, holdout: float) -> tuple[list, list]:
    """The first items for training, the last ``holdout`` part held out."""
    n_test = math.ceil(len(items) * holdout) if holdout > 0 else 0
    return items[:len(items) - n_test], items[len(items) - n_test:]


class WindowSource:
    """Windows of ``frames`` consecutive frames from decoded clips ((N, H, W, 3) arrays of one size)."""

    def __init__(self, clips: list[tuple[str, np.ndarray]], starts: list[tuple[int, int]], *, frames: int, name: str):
        self.clips, self.starts, self.frames, self.name = clips, starts, frames, name
        height, width = clips[0][1].shape[1:3]
        self.shape = (frames, height, width, 3)

    def __len__(self) -> int:
        return len(self.starts)

    def load(self, index) -> np.ndarray:
        clip, start = self.starts[int(index)]
        return self.clips[clip][1][start: start + self.frames]

    def label(self, index) -> str:
        clip, start = self.starts[int(index)]
        return f"{Path(self.clips[clip][0]).stem}_frame{start:06d}"


def split_windows(n_frames: int, frames: int, holdout: float) -> tuple[list[int], list[int]]:
    """Window starts for training (every frame) and held-out (one window per ``frames - 1``,
    sharing end frames) from one clip. The held-out block is the clip's last ``holdout``
    part, and a window's length of unused frames separates it from the training frames,
    so no training window overlaps or touches a held-out one. ``holdout`` 1: all held out."""
    if n_frames < frames:
        raise DataError(f"{n_frames} frames: shorter than one window of {frames}")
    if holdout <= 0:
        return list(range(n_frames - frames + 1)), []
    if holdout >= 1:  # footage a model never saw: every window held out
        return [], list(range(0, n_frames - frames + 1, frames - 1))
    test_first = n_frames - max(frames, math.ceil(n_frames * holdout))
    train_end = test_first - frames  # frames [0, train_end) train; [train_end, test_first) are the gap
    if train_end < frames:
        raise DataError(f"{n_frames} frames: too short to hold out {holdout:.0%} and still train on windows of "
                        f"{frames} (use a longer video, a test/ folder, or --holdout 0)")
    return list(range(train_end - frames + 1)), list(range(test_first, n_frames - frames + 1, frames - 1))


def video_sources(paths: list[Path], *, frames: int, load_size: int, holdout: float, test_paths=()):
    """(train, test) WindowSources from video files; test from ``test_paths`` or, without
    them, from a held-out time block at the end of every training clip."""
    clips = [(str(p), _decode(p, load_size, frames)) for p in [*paths, *test_paths]]
    size = clips[0][1].shape[1:3]
    clips = [(p, c if c.shape[1:3] == size else _resize(c, size)) for p, c in clips]
    train, test = [], []
    for k, (path, clip) in enumerate(clips):
        if k < len(paths):
            try:
                tr, te = split_windows(len(clip), frames, 0.0 if test_paths else holdout)
            except DataError as e:
                raise DataError(f"{path}: {e}") from None
            train += [(k, s) for s in tr]
            test += [(k, s) for s in te]
        else:
            test += [(k, s) for s in range(0, len(clip) - frames + 1, frames - 1)]
    return (WindowSource(clips, train, frames=frames, name="train"),
            WindowSource(clips, test, frames=frames, name="test") if test else None)


def _decode(path: Path, load_size: int, frames: int) -> np.ndarray:
    clip = video.read_frames(path, short_side=load_size)
    if len(clip) < frames:
        raise DataError(f"{path}: {len(clip)} frames, shorter than one window of {frames} frames")
    return clip


def _resize(clip: np.ndarray, size) -> np.ndarray:
    height, width = size
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in clip])


def _skip(message: str) -> None:
    print(f"skipping {message}", file=sys.stderr)

