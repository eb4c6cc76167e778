"""Raising a video's frame rate with a frame-interpolation model (``tf-translate interpolate``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from tf_translate.data import video
from tf_translate.data.images import DataError
from tf_translate.export import Exported
from tf_translate.progress import bar_interval


def interpolation_gap(model: Exported) -> int:
    """The frame gap of a frame-interpolation model: its inputs are the two ends of a window
    and its targets every frame between them; anything else is refused."""
    m = model.config.model
    inputs, targets = tuple(getattr(m, "input_frames", None) or ()), tuple(getattr(m, "target_frames", None) or ())
    gap = getattr(m, "frames_per_image", 1) - 1
    if gap < 2 or inputs != (0, gap) or targets != tuple(range(1, gap)):
        raise DataError(f"{model.path}: not a frame-interpolation model (inputs {inputs}, targets {targets}); "
                        "train one with --method pix2pix on a video")
    return gap


def interpolate_video(model_dir, source, output, *, short_side: int | None = None) -> Path:
    """Insert the model's ``gap - 1`` generated frames between each two consecutive frames of
    ``source``, writing ``output`` at ``gap`` times the frame rate with the source's audio."""
    if Path(output).resolve() == Path(source).resolve():
        raise DataError(f"{output}: the output would overwrite the input video; name another file")
    model = Exported(model_dir)
    gap = interpolation_gap(model)
    info = video.probe(source)
    if info.frames < 2:
        raise DataError(f"{source}: {info.frames} frame(s); interpolation needs at least 2")

    def resized(frame):
        if short_side is None:
            return frame
        width, height = video.scaled_size(frame.shape[1], frame.shape[0], short_side)
        return np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC))

    def frames():
        previous = None
        for frame in tqdm(video.iter_frames(source), total=info.frames, unit="frame", file=sys.stderr,
                          mininterval=bar_interval()):
            frame = resized(frame)
            if previous is not None:
                made = model.images(np.concatenate([previous, frame], axis=-1)[None])[0]
                yield from (made[..., 3 * k: 3 * k + 3] for k in range(gap - 1))
            yield frame
            previous = frame

    return video.write_video(output, frames(), fps=info.fps * gap, audio_from=source)
