"""pix2pix: the U-Net, frame layouts, identical jitter across frames, the video window
sampler and its held-out block, the cross-fade baseline, export of stacked channels,
video interpolation, and bad input."""

import dataclasses
import subprocess

import imageio_ffmpeg
import keras
import numpy as np
import pytest
from PIL import Image

import tf_translate
from tests.conftest import coded_video, frame_index, tiny_config, write_images
from tf_translate import config, export, registry
from tf_translate import data as tf_data
from tf_translate.apps import interpolate, translate
from tf_translate.data import frames as fr
from tf_translate.data import paired, video
from tf_translate.data.frames import blend_weights
from tf_translate.data.images import DataError
from tf_translate.metrics import evaluate
from tf_translate.metrics.minterpolate import minterpolate_batch
from tf_translate.nn import features, networks
from tf_translate.nn.layers import StatelessDropout
from tf_translate.training import trainer

VIDEO_MODEL = {"frame_gap": 2, "holdout": 0.25, "generator": "flow"}  # windows of 3 frames: 0 and 2 in, 1 out


def test_unet_at_the_smallest_size_its_depth_allows():
    net = networks.unet_generator(in_channels=6, out_channels=15, depth=4, filters=4)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 6)).astype("float32")
    out = net(x).numpy()
    assert out.shape == (2, 16, 16, 15) and out.min() >= -1 and out.max() <= 1
    bottleneck = keras.Model(net.input, net.get_layer("down4_conv").output)(x)
    assert bottleneck.shape[1:3] == (1, 1)
    names = {layer.name for layer in net.layers}
    assert {"down2_norm", "down3_norm"} <= names and not {"down1_norm", "down4_norm"} & names
    dropouts = [layer.name for layer in net.layers if isinstance(layer, StatelessDropout)]
    assert dropouts == ["up4_dropout", "up3_dropout", "up2_dropout"]  # the first three decoder blocks
    np.testing.assert_array_equal(net(x, training=False), net(x, training=False))  # deterministic at test time
    assert not np.array_equal(net(x, training=True), net(x, training=True))  # noise while training
    assert [networks.unet_depth(s) for s in (256, 128, 132, 32)] == [8, 7, 7, 5]


def test_frame_layouts_and_their_errors():
    assert fr.layout(2, None, None, "a2b") == ((0,), (1,))
    assert fr.layout(2, None, None, "b2a") == ((1,), (0,))
    assert fr.layout(7, None, None) == ((0, 6), (1, 2, 3, 4, 5))
    assert fr.layout(7, (0, 6), (3,)) == ((0, 6), (3,))
    for inputs, targets, message in (((0, 7), None, "out of range"), ((0, 6), (1, 6), "both input and target"),
                                     ((0, 0), None, "repeat"), ((), None, "no input")):
        with pytest.raises(DataError, match=message):
            fr.layout(7, inputs, targets)
    with pytest.raises(DataError, match="direction"):
        fr.layout(2, None, None, "up")


def test_identical_jitter_across_frames(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    for i in range(3):  # strips of three identical noise frames: any per-frame difference in crop or flip shows
        frame = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([frame] * 3, axis=1)).save(tmp_path / "train" / f"{i}.png")
    cfg = tiny_config("pix2pix", tmp_path, str(tmp_path), model={"holdout": 0.0})
    data = tf_data.load("paired", cfg)
    assert (data.inputs, data.targets) == ((0, 2), (1,))
    batches = list(data.training(batch_size=1, flip=True, seed=0, first_step=0, steps=8))
    assert len(batches) == 8
    for x, y in batches:
        x, y = x.numpy(), y.numpy()
        assert x.shape == (1, 32, 32, 6) and y.shape == (1, 32, 32, 3)
        np.testing.assert_array_equal(x[..., :3], x[..., 3:])
        np.testing.assert_array_equal(x[..., :3], y)


def test_strips_that_do_not_divide_into_frames_are_named(tmp_path, capsys):
    write_images(tmp_path / "train", 3, seed=0, size=(120, 36))
    write_images(tmp_path / "train", 1, seed=1, size=(121, 36), names=["odd.png"])
    cfg = tiny_config("pix2pix", tmp_path, str(tmp_path), model={"holdout": 0.0})
    assert len(tf_data.load("paired", cfg).train) == 3
    assert "odd.png: width 121 is not a multiple of 3 frames" in capsys.readouterr().err
    with pytest.raises(DataError, match="only 0 usable training strip"):
        tf_data.load("paired", dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, frames_per_image=7)))


def test_split_windows_never_lets_training_touch_the_held_out_block():
    train, test = fr.split_windows(40, 3, 0.25)
    assert test == [30, 32, 34, 36]  # the last 10 frames, windows sharing their end frames
    assert train == list(range(25))  # windows end by frame 26; frames 27-29 are the gap
    assert fr.split_windows(10, 3, 0.0) == (list(range(8)), [])
    with pytest.raises(DataError, match="shorter than one window"):
        fr.split_windows(2, 3, 0.25)
    with pytest.raises(DataError, match="too short to hold out"):
        fr.split_windows(8, 3, 0.25)


def test_video_window_sampler_and_held_out_split(tmp_path, frames_video):
    cfg = tiny_config("pix2pix", tmp_path, str(frames_video), model=VIDEO_MODEL)
    data = tf_data.load("paired", cfg)
    assert (data.frames, data.inputs, data.targets) == (3, (0, 2), (1,))
    windows = [[frame_index(f) for f in data.train.load(i)] for i in range(len(data.train))]
    assert windows == [[s, s + 1, s + 2] for s in range(25)]
    held = [[frame_index(f) for f in data.test.load(i)] for i in range(len(data.test))]
    assert held == [[s, s + 1, s + 2] for s in (30, 32, 34, 36)]
    for x, y in data.training(batch_size=1, flip=False, seed=0, first_step=0, steps=6):
        x, y = x.numpy(), y.numpy()
        first, last, middle = (frame_index((v + 1) * 127.5) for v in (x[0, ..., :3], x[0, ..., 3:], y[0]))
        assert abs(last - first) == 2 and middle == (first + last) // 2 and max(first, last) <= 26  # or backwards
    assert data.complete(cfg).model.frames_per_image == 3


def test_bad_videos(tmp_path):
    short = coded_video(tmp_path / "short.mp4", 4)
    cfg = tiny_config("pix2pix", tmp_path, str(short), model={"frame_gap": 6})
    with pytest.raises(DataError, match="short.mp4: 4 frames, shorter than one window of 7"):
        tf_data.load("paired", cfg)
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(DataError, match="fake.mp4: not a readable video"):
        tf_data.load("paired", dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data=str(fake))))


def test_blend_weights_and_crossfade_against_hand_computed_values():
    np.testing.assert_allclose(blend_weights((0, 3), (1, 2)), [[2 / 3, 1 / 3], [1 / 3, 2 / 3]])
    np.testing.assert_array_equal(blend_weights((1,), (0,)), [[1.0]])  # a b2a pair: the input itself
    np.testing.assert_allclose(blend_weights((0, 2), (4, 1)), [[0.0, 0.5], [1.0, 0.5]])  # 4: nearest input
    first = np.array([[[0, 90, 255]]], np.uint8)
    last = np.array([[[30, 210, 0]]], np.uint8)
    np.testing.assert_array_equal(evaluate.blend([first, last], blend_weights((0, 3), (1,))[:, 0]),
                                  [[[10, 130, 170]]])


def test_residual_generator_starts_from_the_crossfade():
    """The residual U-Net's last layer starts at zero, so its correction is tanh(0) = 0 and a
    new G(x) is exactly the cross-fade of the input frames (the FrameBlend 1x1 convolution)."""
    weights = blend_weights((0, 3), (1, 2))
    G = networks.unet_generator(in_channels=6, out_channels=6, depth=2, filters=4, blend=weights)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 6)).astype(np.float32)
    expected = np.concatenate([(2 / 3) * x[..., :3] + (1 / 3) * x[..., 3:], (1 / 3) * x[..., :3] + (2 / 3) * x[..., 3:]],
                              axis=-1)
    np.testing.assert_allclose(G(x).numpy(), expected, atol=1e-6)


def test_discriminator_scores_real_and_fake_alike_in_one_call_or_two(tmp_path):
    cfg = tiny_config("pix2pix", tmp_path, None)
    model = trainer.build_model(cfg, registry.get("pix2pix"), steps_per_epoch=1)
    real, fake = np.random.default_rng(0).uniform(-1, 1, (2, 1, 32, 32, 9)).astype(np.float32)
    joint = model._real_and_fake_scores(real, fake)  # instance norm: one call on a doubled batch
    for scores, pair in zip(joint, (real, fake)):
        np.testing.assert_allclose(scores, model.D(pair, training=True), atol=1e-5)


@pytest.mark.parametrize("frames, residual, expected", [(3, "auto", True), (2, "auto", False), (2, "on", True),
                                                        (3, "off", False)])
def test_residual_auto_is_on_for_frame_interpolation_only(tmp_path, frames, residual, expected):
    cfg = tiny_config("pix2pix", tmp_path, None, model={"frames_per_image": frames, "residual": residual,
                                                        "generator": "unet"})
    model = trainer.build_model(cfg, registry.get("pix2pix"), steps_per_epoch=1)
    assert model.residual is expected
    assert ("blend" in [layer.name for layer in model.G.layers]) is expected


def test_ssim_7x7_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 24, 30, 3), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-60, 60, x.shape), 0, 255).astype(np.uint8)
    ours = evaluate.ssim_7x7(x, y)
    theirs = [structural_similarity(a, b, channel_axis=-1, data_range=255) for a, b in zip(x, y)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


@pytest.fixture(scope="module")
def trained_frames(tmp_path_factory, frames_video):
    """A tiny frame-interpolation pix2pix (gap 2) trained 4 steps on the coded video, exported."""
    tmp = tmp_path_factory.mktemp("frames_run")
    cfg = tiny_config("pix2pix", tmp, str(frames_video), model=VIDEO_MODEL, train={"validate_every": 2})
    return cfg, tf_translate.train(cfg)


def test_export_takes_and_returns_stacked_channels(trained_frames):
    cfg, version = trained_frames
    model = export.Exported(version)
    assert model.names == ["translate"] and "translate_bytes" not in model.module.signatures
    x = np.random.default_rng(0).random((1, 37, 45, 6), dtype=np.float32)  # odd size, padded to 16s inside
    out = model(x)
    assert out.shape == (1, 37, 45, 3) and 0 <= out.min() and out.max() <= 1
    keras_model = trainer.restore(config.load(cfg.run_dir / "config.json"))
    assert keras_model.flow and keras_model.down_factor() == 16  # the flow generator
    padded = np.pad(x * 2 - 1, ((0, 0), (0, 11), (0, 3), (0, 0)), mode="symmetric")
    expected = (keras_model.G(padded, training=False).numpy()[:, :37, :45] + 1) / 2
    np.testing.assert_allclose(out, expected, atol=1e-5)
    parity = (version / "tflite_parity.json").read_text()
    assert '"translate"' in parity and not export.flex_ops((version / "model.tflite").read_bytes())
    panels = sorted((cfg.run_dir / "samples").glob("step_*"))
    assert [p.name for p in panels if p.suffix == ".gif"] and [p.name for p in panels if p.suffix == ".png"]


def test_test_time_dropout_is_a_flag_and_off_by_default(exports, tmp_path):
    cfg, version = exports("pix2pix")  # the U-Net (the flow generator has no dropout)
    x = np.random.default_rng(1).random((1, 32, 32, 6), dtype=np.float32)
    default = export.Exported(version)
    np.testing.assert_array_equal(default(x), default(x))
    noisy = export.Exported(export.export_run(cfg.run_dir, export_dir=tmp_path, test_dropout=True))
    assert not np.array_equal(noisy(x), noisy(x))
    assert noisy.config.export.test_dropout and not (noisy.path / "tflite_parity.json").exists()


def test_interpolate_multiplies_frame_rate_and_keeps_audio(trained_frames, tmp_path):
    _, version = trained_frames
    source = tmp_path / "av.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=48x36:rate=5", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-t", "2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(source)],
                   check=True, stdin=subprocess.DEVNULL)
    out = interpolate.interpolate_video(version, source, tmp_path / "out.mp4")
    before, after = video.probe(source), video.probe(out)
    assert after.frames == (before.frames - 1) * 2 + 1
    assert after.fps == pytest.approx(before.fps * 2, rel=0.01) and after.has_audio
    assert (after.width, after.height) == (before.width, before.height)


def test_interpolate_and_translate_refuse_the_wrong_model(trained, trained_frames, tmp_path):
    _, cyclegan = trained
    with pytest.raises(DataError, match="not a frame-interpolation model"):
        interpolate.interpolate_video(cyclegan, tmp_path / "any.mp4", tmp_path / "out.mp4")
    _, frames_model = trained_frames
    image = write_images(tmp_path / "in", 1, seed=0)
    with pytest.raises(DataError, match="takes 6 channels"):
        translate.translate_files(frames_model, [str(image[0])], tmp_path / "out")


def test_evaluate_scores_every_frame_beside_the_crossfade(trained_frames, tmp_path):
    cfg, version = trained_frames
    report = evaluate.evaluate(version, pictures=tmp_path)
    data = paired.load(cfg)
    stacks = data.stacks(data.test)
    halfway = np.round((stacks[:, 0].astype(float) + stacks[:, 2]) / 2).astype(np.uint8)
    expected = evaluate.scores(halfway, stacks[:, 1])
    crossfade = report["translate"]["crossfade_vs_real"]
    assert report["samples"] == 4 and {k: crossfade[k] for k in expected} == pytest.approx(expected)
    with_lpips = {"lpips"} if (features.cache_dir() / features.CACHE_FILE).exists() else set()
    assert set(report["translate"]["generated_vs_real"]) == {"psnr", "ssim", "ssim_7x7", "l1", *with_lpips}
    assert "crossfade vs real" in evaluate.markdown(report)
    made = report["translate"]["generated_vs_real"]
    ffmpeg = minterpolate_batch(stacks[:, 0], stacks[:, 2], 2)[:, 0]  # the second baseline
    by_ffmpeg = report["translate"]["minterpolate_vs_real"]  # solid greys: often exact, PSNR inf
    assert {k: by_ffmpeg[k] for k in expected} == pytest.approx(evaluate.scores(ffmpeg, stacks[:, 1]))
    assert "ffmpeg minterpolate (mci) vs real" in evaluate.markdown(report)
    line = evaluate.headline(report)
    assert line.startswith(f"PSNR {made['psnr']:.2f} dB") and f"against the cross-fade's {crossfade['psnr']:.2f} dB" \
        in line and " and ffmpeg minterpolate's " in line and line.endswith(" of 1 by PSNR")
    # the panel: per held-out window, the two inputs, the middle frame generated, cross-faded, by ffmpeg, real
    picture = np.asarray(Image.open(report["panel"]))
    size = stacks.shape[2]
    scale = -(-72 // size)  # small frames are shown enlarged
    cell = size * scale + 2
    assert picture.shape[:2] == (14 + 4 * cell + 2, 6 * cell + 2)
    for column, frame in ((0, stacks[0, 0]), (1, stacks[0, 2]), (3, halfway[0]), (4, ffmpeg[0]), (5, stacks[0, 1])):
        left = 2 + column * cell
        np.testing.assert_array_equal(picture[16: 16 + size * scale: scale, left: left + size * scale: scale], frame)


def test_interpolate_two_images_and_refuse_mismatched_ones(trained_frames, tmp_path):
    _, version = trained_frames
    first, last = write_images(tmp_path / "in", 2, seed=3, size=(40, 36))
    written = interpolate.interpolate_pair(version, first, last, tmp_path / "out")
    assert [p.name for p in written] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(written[0])), np.asarray(Image.open(first)))
    assert np.asarray(Image.open(written[1])).shape == (36, 40, 3)
    other = write_images(tmp_path / "other", 1, seed=4, size=(44, 36))[0]
    with pytest.raises(DataError, match=r"is 40x36 but .* is 44x36: the two frames must be the same size"):
        interpolate.interpolate_pair(version, first, other, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_evaluate_on_footage_the_model_never_saw_scores_every_window(trained_frames, tmp_path):
    _, version = trained_frames
    other = coded_video(tmp_path / "other.mp4", 13)  # windows of 3 frames sharing ends: starts 0, 2, ..., 10
    report = evaluate.evaluate(version, str(other))
    assert report["samples"] == 6 and report["held_out"].startswith("every window")


def test_interpolation_windows_are_also_played_backwards(tmp_path, frames_video):
    """Half the training windows run backwards (the same task, the motion reversed): their
    input frames swap and their targets come in reverse order, consistently."""
    cfg = tiny_config("pix2pix", tmp_path, str(frames_video), model={"frame_gap": 4, "holdout": 0.25})
    data = tf_data.load("paired", cfg)
    assert data.reversible
    directions = []
    for x, y in data.training(batch_size=1, flip=False, seed=0, first_step=0, steps=16):
        x, y = ((v.numpy()[0] + 1) * 127.5 for v in (x, y))
        first, last = frame_index(x[..., :3]), frame_index(x[..., 3:])
        middle = [frame_index(y[..., 3 * k: 3 * k + 3]) for k in range(3)]
        step = 1 if last > first else -1
        assert abs(last - first) == 4 and middle == [first + step, first + 2 * step, first + 3 * step]
        directions.append(step)
    assert 3 <= directions.count(-1) <= 13



def test_a_packed_model_ships_as_float16_and_exports_on_first_use(trained_frames, tmp_path, monkeypatch):
    from tf_translate import pretrained

    cfg, version = trained_frames
    monkeypatch.setenv("TF_TRANSLATE_CACHE", str(tmp_path / "cache"))
    packed = pretrained.pack(cfg.run_dir, tmp_path / "interpolation")
    with np.load(packed / pretrained.WEIGHTS) as arrays:
        assert {arrays[k].dtype for k in arrays.files} == {np.dtype("float16")}
    made = pretrained.export_dir(packed)
    assert made.parent.parent == tmp_path / "cache" / "shipped" and pretrained.export_dir(packed) == made  # cached
    x = np.random.default_rng(3).random((1, 32, 48, 6), dtype=np.float32)
    np.testing.assert_allclose(export.Exported(made)(x), export.Exported(version)(x), atol=2e-3)
    assert interpolate.interpolation_gap(export.Exported(made)) == 2
