"""ffmpeg's motion-compensated interpolation, the second baseline of frame interpolation: the
frames it makes and which of them are kept, odd and tiny sizes, many windows in one process,
failures, and its place in the paired evaluation (report, panel, headline, markdown)."""

import numpy as np
import pytest

from tf_translate.data.images import DataError
from tf_translate.metrics import evaluate
from tf_translate.metrics import minterpolate as minterpolate_module
from tf_translate.metrics.minterpolate import minterpolate, minterpolate_batch


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour texture (sums of sinusoids) that block matching can follow."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    waves = [sum(np.sin(rng.uniform(0.05, 0.25) * x + rng.uniform(0.05, 0.25) * y + rng.uniform(0, 6.3))
                 for _ in range(4)) for _ in range(3)]
    return np.clip(128 + 25 * np.stack(waves, axis=-1), 0, 255).astype(np.uint8)


def moved(base: np.ndarray, dx: int, dy: int, h: int, w: int) -> np.ndarray:
    """The (h, w) view of ``base`` whose content has moved ``dx`` right and ``dy`` down."""
    return base[16 - dy: 16 - dy + h, 16 - dx: 16 - dx + w]


def error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b).mean())


def test_the_frames_between_follow_the_motion():
    """Content moving 8 px right in 4 steps: ffmpeg's frames are the content moved 2, 4 and 6 px
    (each nearest to its own shift, not to the ends: the right output frames are kept), far
    nearer to the truth than the cross-fade."""
    base = texture(96, 96)
    first, last = moved(base, 0, 0, 64, 64), moved(base, 8, 0, 64, 64)
    out = minterpolate(first, last, 4)
    assert out.shape == (3, 64, 64, 3) and out.dtype == np.uint8
    for j in range(1, 4):
        errors = [error(out[j - 1], moved(base, s, 0, 64, 64)) for s in range(9)]
        assert int(np.argmin(errors)) == 2 * j
    fade = evaluate.blend([first, last], np.array([0.5, 0.5]))
    assert error(out[1], moved(base, 4, 0, 64, 64)) < 0.5 * error(fade, moved(base, 4, 0, 64, 64))


@pytest.mark.parametrize("size", [(93, 127), (5, 7)])
def test_odd_and_tiny_sizes_work(size):
    """127x93 (not whole 16 px blocks) and 7x5 (below ffmpeg's 32 px minimum) are padded and cropped back."""
    h, w = size
    base = texture(h + 32, w + 32, seed=1)
    first, last = moved(base, 0, 0, h, w), moved(base, 4, 2, h, w)
    out = minterpolate(first, last, 2)
    assert out.shape == (1, h, w, 3) and out.dtype == np.uint8
    if h > 32:
        truth = moved(base, 2, 1, h, w)
        assert error(out[0], truth) < error(evaluate.blend([first, last], np.array([0.5, 0.5])), truth)


def test_many_windows_in_one_process_equal_one_process_per_window(monkeypatch):
    """Windows moving in different directions, back to back in one process: nothing of one window
    reaches the next (fed as first, first, last, last at 1 fps, the last of these windows comes out
    different: the motion search takes predictors from the frames before); and split over processes."""
    base = [texture(64 + 32, 48 + 32, seed=k) for k in (8, 98, 82, 95)]
    shifts = [(10, 9), (4, 10), (8, -10), (-8, 8)]
    first = np.stack([moved(b, 0, 0, 64, 48) for b in base])
    last = np.stack([moved(b, dx, dy, 64, 48) for b, (dx, dy) in zip(base, shifts)])
    each = np.stack([minterpolate(a, b, 3) for a, b in zip(first, last)])
    np.testing.assert_array_equal(minterpolate_batch(first, last, 3, workers=1), each)
    np.testing.assert_array_equal(minterpolate_batch(first, last, 3, workers=2), each)
    monkeypatch.setattr(minterpolate_module, "_CHUNK", 3)  # 4 windows: 2 processes of 2, one at a time
    np.testing.assert_array_equal(minterpolate_batch(first, last, 3, workers=1), each)
    assert minterpolate_batch(first[:0], last[:0], 3).shape == (0, 2, 64, 48, 3)


def test_bad_arguments_and_a_failing_ffmpeg_raise_data_error(monkeypatch, tmp_path):
    frame = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(DataError, match="gap must be an integer of at least 2"):
        minterpolate(frame, frame, 1)
    with pytest.raises(DataError, match="must be the same size"):
        minterpolate(frame, frame[:, :32], 2)
    with pytest.raises(DataError, match=r"last must be uint8 \(H, W, 3\)"):
        minterpolate(frame, frame.astype(np.float32), 2)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(DataError, match=r"^ffmpeg minterpolate: cannot run .*no-ffmpeg") as caught:
        minterpolate(frame, frame, 2)
    assert "\n" not in str(caught.value)
    failing = tmp_path / "failing-ffmpeg"
    failing.write_text("#!/bin/sh\necho 'Error: something went wrong' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(failing))
    with pytest.raises(DataError, match=r"^ffmpeg minterpolate failed \(Error: something went wrong\)$"):
        minterpolate_batch(frame[None], frame[None], 2)


class Stacks:
    """A stand-in for paired video data: windows of 5 frames of moving texture, 0 and 4 in, 1-3 out."""

    inputs, targets, test = (0, 4), (1, 2, 3), "held out"

    def stacks(self, source):
        return np.stack([np.stack([moved(texture(64 + 32, 64 + 32, seed=k), 2 * j, j, 64, 64) for j in range(5)])
                         for k in range(3)])


class CrossFader:
    """A stand-in model: the cross-fade at 1/4, 1/2 and 3/4, as stacked channels."""

    def images(self, x):
        first, last = x[..., :3], x[..., 3:]
        return np.concatenate([evaluate.blend([first, last], np.array([1 - p, p])) for p in (0.25, 0.5, 0.75)], -1)


def test_paired_evaluation_scores_ffmpeg_beside_the_crossfade(monkeypatch, tmp_path):
    monkeypatch.setattr(evaluate, "pretrained", lambda name, report: None)  # no LPIPS: fast
    data = Stacks()
    report = evaluate._paired(CrossFader(), data, tmp_path)
    stacks = data.stacks(None)
    ffmpeg = minterpolate_batch(stacks[:, 0], stacks[:, 4], 4)
    for k, t in enumerate(data.targets):
        frame = report[f"frame {t}"]
        assert list(frame) == ["generated_vs_real", "crossfade_vs_real", "minterpolate_vs_real"]
        assert frame["minterpolate_vs_real"] == evaluate.scores(ffmpeg[:, k], stacks[:, t])
        assert frame["minterpolate_vs_real"]["psnr"] > frame["crossfade_vs_real"]["psnr"]
    assert "minterpolate_vs_real" in report["mean over frames"] and "notes" not in report
    line = evaluate.headline(report)
    mean = report["mean over frames"]
    assert line.startswith(f"PSNR {mean['generated_vs_real']['psnr']:.2f} dB")
    assert f"and ffmpeg minterpolate's {mean['minterpolate_vs_real']['psnr']:.2f} dB" in line
    assert line.endswith(": beats the cross-fade on 0 of 3 frames and ffmpeg minterpolate on 0 of 3 by PSNR")
    text = evaluate.markdown({"model": "m", "method": "pix2pix", "size": 64, "data": "d", **report})
    assert "| frame 2 | ffmpeg minterpolate (mci) vs real |" in text and "minterpolate=fps=<gap>" in text
    # the panel: inputs 0 and 4, generated, cross-fade, ffmpeg mci, real 2, a row per window
    from PIL import Image
    picture = np.asarray(Image.open(report["panel"]))
    cell = 64 * 2 + 2  # 64 px frames are shown at twice their size
    assert picture.shape[:2] == (14 + 3 * cell + 2, 6 * cell + 2)
    np.testing.assert_array_equal(picture[16: 16 + 128: 2, 2 + 4 * cell: 2 + 4 * cell + 128: 2], ffmpeg[0, 1])


def test_paired_evaluation_carries_on_without_ffmpeg(monkeypatch, tmp_path):
    monkeypatch.setattr(evaluate, "pretrained", lambda name, report: None)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    report = evaluate._paired(CrossFader(), Stacks())
    assert "minterpolate_vs_real" not in report["frame 2"] and "crossfade_vs_real" in report["frame 2"]
    assert report["notes"] == [f"the ffmpeg minterpolate baseline was not computed: ffmpeg minterpolate: cannot "
                               f"run {tmp_path / 'no-ffmpeg'} (No such file or directory)"]
    assert evaluate.headline(report).endswith(": beats the cross-fade on 0 of 3 frames by PSNR")


def test_headline_counts_the_frames_each_baseline_loses_on():
    s = lambda psnr: {"psnr": psnr, "ssim": 0.9}  # noqa: E731
    frames = {"frame 1": (30, 29, 31), "frame 2": (28, 27, 27.5), "frame 3": (30, 31, 29)}
    report = {f: {"generated_vs_real": s(g), "crossfade_vs_real": s(c), "minterpolate_vs_real": s(m)}
              for f, (g, c, m) in frames.items()}
    report["mean over frames"] = {k: s(float(np.mean([f[k]["psnr"] for f in report.values()])))
                                  for k in report["frame 1"]}
    assert evaluate.headline(report) == (
        "PSNR 29.33 dB, SSIM 0.900 against the cross-fade's 29.00 dB, 0.900 and ffmpeg minterpolate's 29.17 dB, "
        "0.900: beats the cross-fade on 2 of 3 frames and ffmpeg minterpolate on 2 of 3 by PSNR")
    single = {"translate": {"generated_vs_real": s(30), "crossfade_vs_real": s(29), "minterpolate_vs_real": s(31)}}
    assert evaluate.headline(single).endswith("beats the cross-fade on 1 of 1 frame and ffmpeg minterpolate on 0 of 1 "
                                              "by PSNR")
    translation = {"translate": {"generated_vs_real": s(30), "input_vs_real": s(29)}}
    assert evaluate.headline(translation).endswith("against the input's 29.00 dB, 0.900: better by 1 of 2 measures")
