"""ffmpeg's motion-compensated frame interpolation, the second baseline of frame-interpolation
models (beside the linear cross-fade): the in-between frames that

    minterpolate=fps=<gap>:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1

makes from two end frames, run by the ffmpeg binary that ships with ``imageio-ffmpeg``.

The protocol (:func:`minterpolate`): the two end frames, each twice, as 1 fps rgb24 rawvideo
on a pipe (first at 0 s and 1 s, last at 2 s and 3 s); ffmpeg outputs 1 + 2 * gap frames at
``gap`` fps, of which frame ``gap`` is ``first`` (1 s), frame ``2 * gap`` is ``last`` (2 s)
and the ``gap - 1`` frames between are returned. Each end frame goes in twice because the
filter keeps four frames and estimates motion of each against its neighbours on both sides.

Notes on the filter (libavfilter/vf_minterpolate.c):

* It works in YUV: rgb24 is converted to yuv444p and back, so even an end frame copied
  through differs from the original by rounding (0.4 grey levels on average on real footage).
* With ``me_mode=bidir`` the options ``mc_mode=aobmc`` and ``vsbmc=1`` have no effect (they
  act on bilateral motion estimation only); they are passed as the protocol names them.
* Frames must be at least 32 x 32, and motion is estimated on whole 16 x 16 blocks only: the
  pixels past the last whole block fall back to the cross-fade. Frames are therefore padded by
  edge replication to a multiple of 16 (and at least 32) and cropped back, which changes
  nothing at sizes that are already multiples of 16.
* Its scene-change detection (on by default) makes it repeat an end frame instead of
  interpolating when the two differ a lot (about 30 grey levels of mean luma difference).

:func:`minterpolate_batch` gives the same frames for many windows, byte for byte, with one
ffmpeg process for up to 64 windows instead of one per window, and without interpolating
anything but the wanted intervals (see its docstring): at 128 px about 21 ms a window instead
of 65 ms, at 256 px about 100 ms instead of 210 ms (one process at a time).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess

import imageio_ffmpeg
import numpy as np

from tf_translate.data.images import DataError

__all__ = ["FILTER", "minterpolate", "minterpolate_batch"]

#: The filter's options, with ``{gap}`` for the output frame rate.
FILTER = "minterpolate=fps={gap}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1"

_BLOCK, _MIN_SIDE = 16, 32  # minterpolate's macroblock size and smallest frame side
_CHUNK = 64  # windows per ffmpeg process at most (bounds the memory of a process's input and output)


def minterpolate(first: np.ndarray, last: np.ndarray, gap: int) -> np.ndarray:
    """The ``gap - 1`` frames ffmpeg's minterpolate puts between ``first`` and ``last``, as
    uint8 (gap - 1, H, W, 3): the frames at 1/gap, 2/gap, ... of the way from one to the other.

    ``first`` and ``last`` are uint8 RGB (H, W, 3) of the same size (any size of at least
    1 x 1). Raises :class:`DataError` if the arguments are wrong or ffmpeg fails.
    """
    first, last = _check_pair(first, last, gap)
    padded, (h, w) = _pad(np.stack([first, first, last, last])), first.shape[:2]
    out = _run(padded, vf=_filter(gap), expect=1 + 2 * gap)
    return np.ascontiguousarray(out[gap + 1: 2 * gap, :h, :w])


def minterpolate_batch(first: np.ndarray, last: np.ndarray, gap: int, *, workers: int | None = None) -> np.ndarray:
    """:func:`minterpolate` for many windows: ``first`` and ``last`` uint8 (N, H, W, 3), the
    result uint8 (N, gap - 1, H, W, 3), equal to calling :func:`minterpolate` on each pair.

    The windows are split into chunks of at most 64, each run by one ffmpeg process, ``workers``
    at a time (default: the number of CPUs). In a process, window ``w`` is fed as first, first,
    first, last, last with the timestamps w, w, w, w + 1, w (seconds; window 0: 1, 0, 0, 1, 0), so that

    * the filter interpolates only between the third ``first`` and the first ``last``, one
      second apart as in :func:`minterpolate`: the other intervals are empty, and the step
      back in time of the second ``last`` restarts the output clock for the wanted interval;
    * nothing of the previous window reaches the motion estimation: the motion vectors that
      the estimator takes as predictors from the two frames before are those of identical
      frames (zero), as in a process of its own, and the scene-change test compares with an
      identical pair too.

    Each window gives gap + 1 frames (first, the gap - 1 between, last); the first window one
    more before them (a copy of first).
    """
    first, last = _check_frames(first, last, gap, "(N, H, W, 3)")
    if len(first) == 0:
        return np.zeros((0, gap - 1, *first.shape[1:]), np.uint8)
    workers = max(1, min(workers or os.cpu_count() or 1, len(first)))
    chunks = np.array_split(np.arange(len(first)), max(workers, -(-len(first) // _CHUNK)))
    if len(chunks) == 1:
        return _batch(first, last, gap)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # ffmpeg runs outside the GIL
        parts = list(pool.map(lambda idx: _batch(first[idx], last[idx], gap), chunks))
    return np.concatenate(parts)


# --------------------------------------------------------------------------
# helpers


def _ffmpeg() -> str:
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:  # no binary found at all
        raise DataError(f"ffmpeg minterpolate: no ffmpeg ({e})") from None


def _filter(gap: int) -> str:
    return FILTER.format(gap=gap)


def _check_pair(first, last, gap) -> tuple[np.ndarray, np.ndarray]:
    return _check_frames(first, last, gap, "(H, W, 3)")


def _check_frames(first, last, gap, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """``first`` and ``last`` as arrays if they are uint8 RGB of ``shape`` (3 or 4 axes), the
    same size and not empty, and ``gap`` an integer of at least 2; else DataError."""
    if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 2:
        raise DataError(f"ffmpeg minterpolate: gap must be an integer of at least 2, got {gap!r}")
    first, last = np.asarray(first), np.asarray(last)
    ndim = shape.count(",") + 1
    for name, frames in (("first", first), ("last", last)):
        if frames.dtype != np.uint8 or frames.ndim != ndim or frames.shape[-1] != 3 or 0 in frames.shape[-3:]:
            raise DataError(f"ffmpeg minterpolate: {name} must be uint8 {shape}, got {frames.dtype} {frames.shape}")
    if first.shape != last.shape:
        raise DataError(f"ffmpeg minterpolate: first is {first.shape} but last is {last.shape}; "
                        "they must be the same size")
    return first, last


def _padded_side(n: int) -> int:
    return max(_MIN_SIDE, -(-n // _BLOCK) * _BLOCK)


def _pad(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) padded at the bottom and right by edge replication to whole 16 x 16 blocks
    and at least 32 x 32."""
    h, w = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, _padded_side(h) - h), (0, _padded_side(w) - w), (0, 0)), mode="edge")


def _batch(first: np.ndarray, last: np.ndarray, gap: int) -> np.ndarray:
    """One ffmpeg process for the windows (first[i], last[i]); see :func:`minterpolate_batch`."""
    n, h, w = first.shape[:3]
    stream = _pad(np.stack([first, first, first, last, last], axis=1).reshape(5 * n, h, w, 3))
    # timestamps in seconds by frame number N: window w = N // 5 at w, w, w, w + 1, w (window 0: 1, 0, 0, 1, 0)
    vf = f"settb=1,setpts='floor(N/5)+eq(mod(N,5),3)+eq(N,0)',{_filter(gap)}"
    out = _run(stream, vf=vf, expect=1 + (gap + 1) * n)
    picked = out[1:].reshape(n, gap + 1, *out.shape[1:])[:, 1:gap]  # per window: first, the between, last
    return np.ascontiguousarray(picked[:, :, :h, :w])


def _run(frames: np.ndarray, *, vf: str, expect: int) -> np.ndarray:
    """rgb24 ``frames`` (N, H, W, 3) at 1 fps through the filter chain ``vf``; the output frames."""
    h, w = frames.shape[1:3]
    exe = _ffmpeg()
    cmd = [exe, "-hide_banner", "-nostdin", "-nostats", "-v", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", "1", "-i", "pipe:0",
           "-vf", vf, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    try:
        result = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    except OSError as e:  # no such file, not executable
        raise DataError(f"ffmpeg minterpolate: cannot run {exe} ({e.strerror or e})") from None
    if result.returncode != 0:
        raise DataError(f"ffmpeg minterpolate failed ({_last_line(result.stderr)})")
    size = h * w * 3
    if len(result.stdout) != expect * size:
        raise DataError(f"ffmpeg minterpolate gave {len(result.stdout) / size:g} frames, expected {expect}")
    return np.frombuffer(result.stdout, np.uint8).reshape(expect, h, w, 3)


def _last_line(log: bytes) -> str:
    """ffmpeg's last message, without its "[filter @ 0x...]" prefix."""
    lines = [line.strip() for line in log.decode(errors="replace").splitlines() if line.strip()]
    return re.sub(r"^\[[^\]]*\]\s*", "", lines[-1]) if lines else "no message from ffmpeg"
