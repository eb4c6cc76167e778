"""Tests for tf_translate.data.video: every video is generated in tmp_path with the bundled ffmpeg."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from tf_translate.data import video
from tf_translate.data.images import DataError
from tf_translate.data.video import (
    VIDEO_SUFFIXES,
    VideoInfo,
    is_video,
    iter_frames,
    probe,
    read_frames,
    scaled_size,
    write_video,
)

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
TESTSRC = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10"]
SINE = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0],
                    [0, 255, 255], [255, 0, 255], [128, 128, 128], [20, 200, 90]], dtype=np.uint8)


# --------------------------------------------------------------------------
# helpers


def ffmpeg(*args) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *map(str, args)], check=True, stdin=subprocess.DEVNULL)


def duration(path: Path) -> float:
    """The container duration in seconds, from ffmpeg's report."""
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", log).groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def colour_frames(size=(64, 48), repeat=3) -> list[np.ndarray]:
    """Solid-colour frames, each colour of COLOURS ``repeat`` times in turn."""
    w, h = size
    return [np.tile(c, (h, w, 1)) for c in COLOURS for _ in range(repeat)]


def frame_means(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1, 3).astype(np.float64).mean(axis=1)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Small test videos: 64x48, 10 fps, 2 s (20 frames), with and without audio, and variants."""
    root = tmp_path_factory.mktemp("videos")
    v = {name: root / name for name in ("av.mp4", "v.mp4", "rot.mp4", "vfr.mp4", "anim.gif", "mulaw.avi")}
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    ffmpeg(*TESTSRC, *SINE, "-t", 2, *h264, "-c:a", "aac", v["av.mp4"])
    ffmpeg(*TESTSRC, "-t", 2, *h264, v["v.mp4"])
    ffmpeg("-display_rotation", 90, "-i", v["v.mp4"], "-c", "copy", v["rot.mp4"])
    # 1 s at 10 fps then 1 s at 30 fps: 40 frames, which a constant-rate reader would pad to 60-odd
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1",
           "-f", "lavfi", "-i", "testsrc=size=64x48:rate=30:duration=1",
           "-filter_complex", "[0][1]concat=n=2:v=1[v]", "-map", "[v]", "-fps_mode", "vfr", *h264, v["vfr.mp4"])
    ffmpeg(*TESTSRC, "-t", 2, v["anim.gif"])
    # mp4 cannot hold mu-law audio: write_video has to re-encode it
    ffmpeg(*TESTSRC, *SINE, "-t", 2, "-c:v", "mpeg4", "-c:a", "pcm_mulaw", v["mulaw.avi"])
    return v


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, videos) -> dict[str, Path]:
    """Files that are not readable videos, by kind."""
    root = tmp_path_factory.mktemp("bad")
    real = videos["av.mp4"].read_bytes()
    files = {
        "missing": root / "missing.mp4",
        "empty": root / "empty.mp4",
        "text": root / "notes.mp4",
        "random": root / "random.mp4",
        "truncated": root / "truncated.mp4",
        "truncated_faststart": root / "truncated_fs.mp4",
        "audio_only": root / "sound.m4a",
        "folder": root / "folder.mp4",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a video\n" * 20)
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    files["truncated"].write_bytes(real[: len(real) // 2])  # index (moov) at the end: gone
    faststart = root / "faststart.mp4"
    ffmpeg("-i", videos["av.mp4"], "-c", "copy", "-movflags", "+faststart", faststart)
    data = faststart.read_bytes()
    files["truncated_faststart"].write_bytes(data[: len(data) // 2])  # index first, frames cut off
    ffmpeg(*SINE, files["audio_only"])
    files["folder"].mkdir()
    return files


# --------------------------------------------------------------------------
# names and sizes


def test_is_video():
    assert is_video("a/clip.mp4") and is_video(Path("CLIP.MOV")) and is_video("x.webm") and is_video("y.gif")
    assert not is_video("photo.png") and not is_video("mp4") and not is_video("notes.txt")
    assert all(s.startswith(".") and s == s.lower() for s in VIDEO_SUFFIXES)


@pytest.mark.parametrize(
    "width, height, short_side, expected",
    [
        (64, 48, 24, (32, 24)),  # landscape, exact
        (48, 64, 24, (24, 32)),  # portrait
        (1920, 1080, 256, (456, 256)),  # 455.1 -> 456 (nearest even)
        (64, 48, 33, (46, 34)),  # odd short side -> next even, long side from it
        (50, 50, 7, (8, 8)),  # square
        (1000, 3, 1, (666, 2)),  # never below 2
        (64, 48, 96, (128, 96)),  # upscaling
    ],
)
def test_scaled_size(width, height, short_side, expected):
    w, h = scaled_size(width, height, short_side)
    assert (w, h) == expected
    assert w % 2 == 0 and h % 2 == 0 and min(w, h) >= 2


def test_scaled_size_rejects_nonsense():
    with pytest.raises(DataError, match="short_side"):
        scaled_size(64, 48, 0)


# --------------------------------------------------------------------------
# probe


def test_probe_values(videos):
    info = probe(videos["av.mp4"])
    assert info == VideoInfo(path=videos["av.mp4"], width=64, height=48, fps=10.0, frames=20, has_audio=True)
    silent = probe(videos["v.mp4"])
    assert (silent.width, silent.height, silent.frames, silent.has_audio) == (64, 48, 20, False)
    gif = probe(videos["anim.gif"])
    assert (gif.width, gif.height, gif.frames) == (64, 48, 20)


def test_probe_and_read_apply_rotation(videos):
    info = probe(videos["rot.mp4"])
    assert (info.width, info.height, info.frames) == (48, 64, 20)
    upright, rotated = read_frames(videos["v.mp4"]), read_frames(videos["rot.mp4"])
    assert rotated.shape == (20, 64, 48, 3)
    np.testing.assert_array_equal(rotated, np.rot90(upright, 1, axes=(1, 2)))  # lossless: same decoded pixels
    assert read_frames(videos["rot.mp4"], short_side=24).shape == (20, 32, 24, 3)  # scaled after rotating


def test_variable_frame_rate_counts_every_decoded_frame_once(videos):
    info = probe(videos["vfr.mp4"])
    assert info.frames == 40
    assert len(read_frames(videos["vfr.mp4"])) == 40
    assert sum(1 for _ in iter_frames(videos["vfr.mp4"])) == 40


# --------------------------------------------------------------------------
# reading


def test_read_frames_shape_and_scaling(videos):
    frames = read_frames(videos["av.mp4"])
    assert frames.shape == (20, 48, 64, 3) and frames.dtype == np.uint8
    assert read_frames(videos["av.mp4"], short_side=24).shape == (20, 24, 32, 3)
    assert read_frames(videos["av.mp4"], short_side=33).shape == (20, 34, 46, 3)


def test_iter_frames_streams_the_same_frames(videos):
    frames = list(iter_frames(videos["v.mp4"]))
    assert len(frames) == 20 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    np.testing.assert_array_equal(np.stack(frames), read_frames(videos["v.mp4"]))


def test_iter_frames_stops_cleanly_when_abandoned(videos):
    frames = iter_frames(videos["v.mp4"])
    first = next(frames)
    frames.close()  # terminates ffmpeg
    assert first.shape == (48, 64, 3)


def test_round_trip_keeps_colours_and_order(tmp_path):
    out = write_video(tmp_path / "colours.mp4", colour_frames(), fps=10)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)  # not a private temp file
    frames = read_frames(out)
    assert frames.shape == (24, 48, 64, 3)
    np.testing.assert_allclose(frame_means(frames), np.repeat(COLOURS, 3, axis=0), atol=6)
    small = read_frames(out, short_side=16)  # bicubic scaling of flat colour keeps the colour
    assert small.shape == (24, 16, 22, 3)
    np.testing.assert_allclose(frame_means(small), np.repeat(COLOURS, 3, axis=0), atol=6)


def test_max_bytes_refused_before_decoding(videos, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("frames were decoded")

    monkeypatch.setattr(video.imageio_ffmpeg, "read_frames", no_decoding)
    with pytest.raises(DataError) as e:
        read_frames(videos["av.mp4"], max_bytes=100_000)
    message = str(e.value)
    assert str(videos["av.mp4"]) in message and "20 frames of 64x48" in message and "184,320 bytes" in message
    assert "short_side" in message and "iter_frames" in message
    # scaled down it fits
    monkeypatch.undo()
    assert read_frames(videos["av.mp4"], short_side=24, max_bytes=100_000).shape == (20, 24, 32, 3)


def test_video_without_frames_is_refused(videos, monkeypatch):
    empty = VideoInfo(path=videos["v.mp4"], width=64, height=48, fps=10.0, frames=0, has_audio=False)
    monkeypatch.setattr(video, "probe", lambda path: empty)
    with pytest.raises(DataError, match="has no frames"):
        read_frames(videos["v.mp4"])


def test_nothing_printed_to_the_terminal(videos, capfd):
    read_frames(videos["rot.mp4"], short_side=24)  # imageio_ffmpeg would warn about the size change
    list(iter_frames(videos["rot.mp4"]))
    with pytest.raises(DataError):
        probe(videos["v.mp4"].with_name("nothing_here.mp4"))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


# --------------------------------------------------------------------------
# bad inputs


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "random", "truncated", "truncated_faststart",
                                  "audio_only", "folder"])
def test_bad_inputs_raise_one_line_data_error(bad_files, kind):
    path = bad_files[kind]
    for call in (probe, read_frames):
        with pytest.raises(DataError) as e:
            call(path)
        message = str(e.value)
        assert message.startswith(f"{path}: not a readable video (") and "\n" not in message
    if kind != "truncated_faststart":  # streaming gives the frames before the cut
        with pytest.raises(DataError, match=re.escape(str(path))):
            iter_frames(path)


def test_bad_input_reasons(bad_files):
    def reason(kind):
        with pytest.raises(DataError) as e:
            probe(bad_files[kind])
        return str(e.value)

    assert reason("missing").endswith("(no such file)")
    assert reason("empty").endswith("(empty file)")
    assert reason("truncated_faststart").endswith("(file is truncated)")
    assert reason("audio_only").endswith("(no video stream)")


# --------------------------------------------------------------------------
# writing


@pytest.mark.parametrize("fps", [60, 10 * 6, 29.97, 29.97 * 6])
def test_write_fractional_fps(tmp_path, fps):
    out = write_video(tmp_path / "clip.mp4", colour_frames(size=(32, 24), repeat=2), fps=fps)
    info = probe(out)
    assert info.frames == 16 and (info.width, info.height) == (32, 24)
    assert info.fps == pytest.approx(fps, abs=0.01)
    assert leftovers(tmp_path) == ["clip.mp4"]


def test_audio_is_copied_and_cut_to_the_video(videos, tmp_path):
    full = write_video(tmp_path / "full.mp4", colour_frames(repeat=3)[:20], fps=10, audio_from=videos["av.mp4"])
    assert probe(full).has_audio and probe(full).frames == 20
    assert duration(full) == pytest.approx(duration(videos["av.mp4"]), abs=0.1)
    half = write_video(tmp_path / "half.mp4", colour_frames(repeat=1)[:5] * 2, fps=10, audio_from=videos["av.mp4"])
    assert probe(half).has_audio and probe(half).frames == 10
    assert duration(half) == pytest.approx(1.0, abs=0.1)  # 2 s of audio cut to the 1 s video
    assert leftovers(tmp_path) == ["full.mp4", "half.mp4"]


def test_audio_reencoded_when_mp4_cannot_hold_it(videos, tmp_path):
    out = write_video(tmp_path / "out.mp4", colour_frames(), fps=10, audio_from=videos["mulaw.avi"])
    assert probe(out).has_audio
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert "Audio: aac" in log


def test_rewrite_in_place_with_own_audio(videos, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(videos["av.mp4"].read_bytes())
    frames = 255 - read_frames(clip)
    write_video(clip, frames, fps=probe(clip).fps, audio_from=clip)
    info = probe(clip)
    assert info.has_audio and info.frames == 20 and leftovers(tmp_path) == ["clip.mp4"]


def test_no_audio_when_source_has_none(videos, tmp_path):
    out = write_video(tmp_path / "out.mp4", colour_frames(), fps=10, audio_from=videos["v.mp4"])
    assert not probe(out).has_audio


def test_odd_frame_sizes_are_padded_with_the_edge(tmp_path):
    frame = np.zeros((49, 65, 3), dtype=np.uint8)
    frame[:, -1] = 200  # last column and last row bright: padding must repeat them
    frame[-1, :] = 200
    out = write_video(tmp_path / "odd.mp4", [frame] * 5, fps=10, crf=0)
    frames = read_frames(out)
    assert frames.shape == (5, 50, 66, 3)
    assert frames[:, :40, -2:].mean() > 150 and frames[:, -2:, :50].mean() > 150
    assert frames[:, :40, :50].mean() < 20


def test_failures_leave_no_files(tmp_path):
    good = colour_frames(size=(32, 24), repeat=1)
    with pytest.raises(DataError, match="frame 8 is 30x24"):
        write_video(tmp_path / "out.mp4", good + [np.zeros((24, 30, 3), np.uint8)], fps=10)
    with pytest.raises(DataError, match="uint8"):
        write_video(tmp_path / "out.mp4", [np.zeros((24, 32, 3), np.float32)], fps=10)
    with pytest.raises(DataError, match="no frames"):
        write_video(tmp_path / "out.mp4", [], fps=10)
    with pytest.raises(DataError, match="fps"):
        write_video(tmp_path / "out.mp4", good, fps=0)

    def interrupted():
        yield from good
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_video(tmp_path / "out.mp4", interrupted(), fps=10)
    assert leftovers(tmp_path) == []


def test_existing_output_survives_a_failed_rewrite(tmp_path):
    out = write_video(tmp_path / "out.mp4", colour_frames(size=(32, 24), repeat=1), fps=10)
    before = out.read_bytes()
    with pytest.raises(DataError):
        write_video(out, [np.zeros((24, 32, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)], fps=10)
    assert out.read_bytes() == before and leftovers(tmp_path) == ["out.mp4"]


def test_ffmpeg_failure_gives_its_last_stderr_line(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'starting' >&2\necho 'No space left on device' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DataError) as e:
        write_video(out_dir / "clip.mp4", colour_frames(size=(32, 24)), fps=10)
    assert str(e.value) == f"{out_dir / 'clip.mp4'}: ffmpeg failed to encode (No space left on device)"
    assert leftovers(out_dir) == []


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        write_video(tmp_path / "nope" / "clip.mp4", colour_frames(), fps=10)
    assert not os.path.exists(tmp_path / "nope")
