"""Raising a video's frame rate with a frame-interpolation model (``tf-translate interpolate``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from tf_translate.data import video
from tf_translate.data.images import DataError, read_image
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


def interpolate_pair(model_dir, first, last, output) -> list[Path]:
    """The model's ``gap - 1`` frames between two images of one size, written as
    ``output/frame_1.png`` ... (``frame_0`` and ``frame_GAP`` are the two given frames)."""
    model = Exported(model_dir)
    gap = interpolation_gap(model)
    ends = [read_image(path, max_pixels=model.config.export.max_pixels) for path in (first, last)]
    if ends[0].shape != ends[1].shape:
        (h0, w0), (h1, w1) = ends[0].shape[:2], ends[1].shape[:2]
        raise DataError(f"{first} is {w0}x{h0} but {last} is {w1}x{h1}: the two frames must be the same size")
    made = model.images(np.concatenate(ends, axis=-1)[None])[0]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, frame in enumerate([ends[0], *(made[..., 3 * j: 3 * j + 3] for j in range(gap - 1)), ends[1]]):
        paths.append(output / f"frame_{k}.png")
        Image.fromarray(frame).save(paths[-1])
    return paths
