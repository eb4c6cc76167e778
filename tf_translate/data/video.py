"""Read and write videos with the ffmpeg binary that ships with ``imageio-ffmpeg``.

Everything a user-facing caller can get wrong (missing, empty, corrupt or truncated
files, files without a video stream, videos too large for memory, frames of the wrong
shape) raises :class:`DataError` with a one-line message naming the file. ffmpeg's own
console output is always captured, never shown.

* Frames are ``uint8`` RGB arrays of shape (H, W, 3), at the displayed size: rotation
  metadata (phone videos) is applied by ffmpeg's autorotation.
* Every frame the decoder produces is returned once (``-fps_mode passthrough``);
  without it ffmpeg would duplicate or drop frames of variable-frame-rate videos to
  reach a constant rate, and counts would not match :func:`probe`.
* :func:`write_video` makes H.264 (yuv420p) mp4 files that every player accepts, and
  never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import numbers
import os
import re
import secrets
import stat
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterable, Iterator

import imageio_ffmpeg
import numpy as np

from tf_translate.data.images import DataError

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoInfo",
    "is_video",
    "probe",
    "scaled_size",
    "read_frames",
    "iter_frames",
    "write_video",
]

#: File name suffixes treated as videos (compared in lower case).
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")

# The first video stream that is not an attached picture (cover art), decoded frame by frame.
_VIDEO_STREAM = ["-map", "0:V:0", "-fps_mode", "passthrough"]


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video file."""

    path: Path
    width: int  # displayed size, after rotation metadata
    height: int
    fps: float  # average frame rate, as ffmpeg reports it (two decimals)
    frames: int  # exact: counted by decoding
    has_audio: bool


def is_video(path) -> bool:
    """Whether ``path`` has a video file suffix (the contents are not looked at)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def probe(path) -> VideoInfo:
    """Size, frame rate, exact frame count and audio presence of a video.

    The whole video stream is decoded (without keeping frames) to count its frames,
    because container metadata can be missing or wrong. Raises :class:`DataError`
    ``"<path>: not a readable video (<reason>)"`` for missing, empty, corrupt,
    truncated or non-video files.
    """
    file = _check_file(path)
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1",
           "-i", str(file.absolute()), *_VIDEO_STREAM, "-f", "null", "-"]
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    log = result.stderr
    if result.returncode != 0:
        raise _unreadable(path, _reason(log))
    if "partial file" in log:  # the mov demuxer's word for a file that ends too early
        raise _unreadable(path, "file is truncated")
    inputs, _, outputs = log.partition("\nOutput #0")
    size = re.search(r", (\d+)x(\d+)\b", _stream_line(outputs, "Video") or "")
    counts = re.findall(r"^frame=(\d+)\s*$", result.stdout, re.MULTILINE)
    if size is None or not counts:
        raise _unreadable(path, "ffmpeg's report could not be parsed")
    return VideoInfo(
        path=Path(path),
        width=int(size.group(1)),
        height=int(size.group(2)),
        fps=_fps(_stream_line(inputs, "Video", skip="(attached pic)") or ""),
        frames=int(counts[-1]),
        has_audio=_stream_line(inputs, "Audio") is not None,
    )


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the shorter side ``short_side`` and the aspect ratio kept.

    Both sides are even (as yuv420p video needs) and at least 2: an odd ``short_side``
    becomes the next even number, and the longer side is the even number nearest to
    keeping the aspect ratio (halves up).
    """
    if short_side < 1:
        raise DataError(f"short_side must be at least 1, got {short_side}")
    if width < 1 or height < 1:
        raise DataError(f"video size must be positive, got {width}x{height}")
    short = _even(short_side)
    if width <= height:
        return short, _even(height * short / width)
    return _even(width * short / height), short


def read_frames(path, *, short_side: int | None = None, max_bytes: int = 4 << 30) -> np.ndarray:
    """All frames as one ``uint8`` array (N, H, W, 3), RGB.

    With ``short_side``, frames are scaled by ffmpeg (bicubic) to
    :func:`scaled_size`. The video is probed first; if the frames would need more
    than ``max_bytes`` of memory, :class:`DataError` is raised before any frame is
    kept. Raises :class:`DataError` for unreadable videos and videos without frames.
    """
    info = probe(path)
    if info.frames == 0:
        raise DataError(f"{path}: video has no frames")
    size = (info.width, info.height)
    if short_side is not None:
        size = scaled_size(info.width, info.height, short_side)
    w, h = size
    need = info.frames * h * w * 3
    if need > max_bytes:
        raise DataError(
            f"{path}: {info.frames} frames of {w}x{h} need {_bytes(need)}, more than max_bytes="
            f"{_bytes(max_bytes)}; pass a smaller short_side, raise max_bytes, or stream with iter_frames"
        )
    scale = None if size == (info.width, info.height) else size
    out = np.empty((info.frames, h, w, 3), dtype=np.uint8)
    count = 0
    for frame in _decode(Path(path), scale=scale, expect=size):
        if count == info.frames:
            raise DataError(f"{path}: more frames than the {info.frames} counted; did the file change?")
        out[count] = frame
        count += 1
    if count != info.frames:
        raise DataError(f"{path}: decoded {count} frames, expected {info.frames}; did the file change?")
    return out


def iter_frames(path) -> Iterator[np.ndarray]:
    """Native-size ``uint8`` (H, W, 3) RGB frames one at a time, for long videos.

    The file is opened at once, so unreadable files raise :class:`DataError` here,
    not at the first frame. Unlike :func:`probe`, nothing checks the whole file up
    front: an mp4 whose index is intact but whose data is cut off gives the frames
    that are present.
    """
    return _decode(Path(path), scale=None, expect=None)


def write_video(path, frames: Iterable[np.ndarray], *, fps: float, audio_from=None, crf: int = 18) -> Path:
    """Encode ``frames`` as an H.264 (libx264, yuv420p) mp4 at ``fps`` and return its path.

    Frames are ``uint8`` (H, W, 3) RGB, all the same size; odd sizes are padded to even
    by repeating the last row / column. ``fps`` may be fractional (29.97). If
    ``audio_from`` is a video with an audio track, that track is copied in (re-encoded
    to AAC if mp4 cannot hold it as is), cut to the length of the new video. ``crf``
    is libx264's quality (0 = lossless coding, 18 = visually lossless, 51 = worst).

    The file is written under a temporary name in the same folder and renamed when
    complete, so an error or Ctrl-C never leaves a partial output. Raises
    :class:`DataError` for bad frames or arguments and when ffmpeg fails.
    """
    out = Path(path)
    if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise DataError(f"{out}: fps must be a positive number, got {fps!r}")
    rate = fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(1_000_000)
    if not 0 <= crf <= 51:
        raise DataError(f"{out}: crf must be in 0..51, got {crf}")
    if not out.parent.is_dir():
        raise DataError(f"{out.parent}: no such folder")
    audio = audio_from is not None and _has_audio(audio_from)
    temps = [_temp_path(out)]
    try:
        count = _encode(out, temps[0], frames, rate, crf, faststart=not audio)
        if audio:
            temps.append(_temp_path(out))
            _mux_audio(out, temps[0], Path(audio_from), temps[1], seconds=float(count / rate))
        os.replace(temps[-1], out)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------
# helpers


def _ffmpeg() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _check_file(path) -> Path:
    """``path`` as a Path if it is a non-empty regular file, else DataError."""
    file = Path(path)
    try:
        st = file.stat()
    except FileNotFoundError:
        raise _unreadable(path, "no such file") from None
    except OSError as e:
        raise _unreadable(path, e.strerror or str(e)) from None
    if stat.S_ISDIR(st.st_mode):
        raise _unreadable(path, "is a folder")
    if not stat.S_ISREG(st.st_mode):  # FIFOs, devices: ffmpeg could block forever
        raise _unreadable(path, "not a regular file")
    if st.st_size == 0:
        raise _unreadable(path, "empty file")
    return file


def _unreadable(path, reason: str) -> DataError:
    return DataError(f"{path}: not a readable video ({reason})")


def _reason(log: str) -> str:
    """A short reason from ffmpeg's stderr."""
    if "matches no streams" in log:
        return "no video stream"
    opening = re.search(r"Error opening input: (.+)", log)
    if opening:
        return opening.group(1).strip()
    return _last_line(log)


def _last_line(log: str) -> str:
    lines = [line.strip() for line in log.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else "no message from ffmpeg"


def _stream_line(section: str, kind: str, skip: str | None = None) -> str | None:
    """The first ``Stream #...: <kind>:`` line of a section of ffmpeg's report."""
    for line in section.splitlines():
        line = line.strip()
        if line.startswith("Stream #") and f": {kind}:" in line and (skip is None or skip not in line):
            return line
    return None


def _fps(line: str) -> float:
    """The "N fps" (average) rate of a stream line, else its "N tbr", else 0.0."""
    for unit in ("fps", "tbr"):
        match = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", line)
        if match:
            return float(match.group(1)) * (1000 if match.group(2) else 1)
    return 0.0


def _even(x: float) -> int:
    return max(2, 2 * math.floor(x / 2 + 0.5))


def _bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n:,} bytes"


class _DropSizeWarning(logging.Filter):
    """imageio_ffmpeg warns whenever output and coded sizes differ, i.e. on every scaled or rotated read."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is different from the source frame size" not in record.getMessage()


@contextlib.contextmanager
def _quiet_size_warning():
    logger, drop = logging.getLogger("imageio_ffmpeg"), _DropSizeWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _decode(path: Path, *, scale: tuple[int, int] | None, expect: tuple[int, int] | None) -> Iterator[np.ndarray]:
    """Start ffmpeg on ``path`` now and return a generator of its RGB frames."""
    file = _check_file(path)
    params = list(_VIDEO_STREAM)
    if scale is not None:
        params += ["-vf", f"scale={scale[0]}:{scale[1]}:flags=bicubic"]
    reader = imageio_ffmpeg.read_frames(str(file.absolute()), input_params=["-nostdin"], output_params=params)
    try:
        with _quiet_size_warning():
            meta = next(reader)
    except Exception as e:  # OSError carrying ffmpeg's stderr, or a report imageio_ffmpeg cannot parse
        reader.close()
        text = str(e)
        reason = _reason(text) if "=== stderr ===" in text else "ffmpeg's report could not be parsed"
        raise _unreadable(path, reason) from None
    size = tuple(meta["size"])
    if expect is not None and size != tuple(expect):
        reader.close()
        raise DataError(f"{path}: ffmpeg gives {size[0]}x{size[1]} frames, expected {expect[0]}x{expect[1]}")
    return _frames(path, reader, size)


def _frames(path, reader: Iterator[bytes], size: tuple[int, int]) -> Iterator[np.ndarray]:
    w, h = size
    with contextlib.closing(reader):
        while True:
            try:
                data = next(reader)
            except StopIteration:
                return
            except Exception as e:  # RuntimeError: ffmpeg stopped mid-frame
                raise DataError(f"{path}: could not decode a frame ({_last_line(str(e))})") from None
            yield np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)


def _has_audio(path) -> bool:
    """Whether the file has an audio stream (its header only is read)."""
    file = _check_file(path)
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(file.absolute())]
    log = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace").stderr
    if "Error opening input" in log:
        raise _unreadable(path, _reason(log))
    return _stream_line(log.partition("\nOutput #0")[0], "Audio") is not None


def _temp_path(out: Path) -> Path:
    """An unused hidden name next to ``out``.

    ffmpeg creates the file, so the video gets the usual permissions (mkstemp's are 0600).
    """
    return out.with_name(f".{out.stem}.{secrets.token_hex(6)}.part.mp4")


def _check_frame(out: Path, index: int, frame, shape: tuple | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise DataError(f"{out}: frame {index} must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if shape is not None and frame.shape != shape:
        raise DataError(f"{out}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                        f"frame 0 was {shape[1]}x{shape[0]}; all frames must have the same size")
    return frame


def _encode(out: Path, temp: Path, frames: Iterable[np.ndarray], fps: Fraction, crf: int, *,
            faststart: bool) -> int:
    """Stream frames through libx264 into ``temp``; return how many were written."""
    items = iter(frames)
    first = next(items, None)
    if first is None:
        raise DataError(f"{out}: no frames to write")
    shape = _check_frame(out, 0, first, None).shape
    h, w = shape[0], shape[1]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w + w % 2}x{h + h % 2}", "-framerate", str(fps),
           "-i", "pipe:0", "-an", "-c:v", "libx264", "-preset", "medium", "-crf", str(crf),
           "-pix_fmt", "yuv420p", *(["-movflags", "+faststart"] if faststart else []),
           "-f", "mp4", str(temp.absolute())]
    with tempfile.TemporaryFile() as log:
        # A session of its own: Ctrl-C reaches Python only, which then kills ffmpeg.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log,
                                start_new_session=True)
        count = 0
        try:
            frame = first
            try:
                while frame is not None:
                    frame = _check_frame(out, count, frame, shape)
                    if h % 2 or w % 2:
                        frame = np.pad(frame, pad, mode="edge")
                    proc.stdin.write(np.ascontiguousarray(frame).data)
                    count += 1
                    frame = next(items, None)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg died; its exit status and log say why
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.returncode != 0:
            raise DataError(f"{out}: ffmpeg failed to encode ({_read_log(log)})")
    return count


def _mux_audio(out: Path, video: Path, audio_from: Path, temp: Path, *, seconds: float) -> None:
    """Copy ``video`` and the first audio track of ``audio_from`` (at most ``seconds``) into ``temp``."""
    log = ""
    for codec in ("copy", "aac"):
        cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y",
               "-i", str(video.absolute()), "-t", f"{seconds:.6f}", "-i", str(audio_from.absolute()),
               "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", codec,
               "-movflags", "+faststart", "-f", "mp4", str(temp.absolute())]
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
        if result.returncode == 0:
            return
        log = result.stderr
    raise DataError(f"{out}: ffmpeg failed to add the audio of {audio_from} ({_last_line(log)})")


def _read_log(log: IO[bytes]) -> str:
    log.seek(0)
    return _last_line(log.read().decode(errors="replace"))
