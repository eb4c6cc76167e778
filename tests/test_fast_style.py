"""Fast style transfer: the frozen loss network, training, any-size inference, export parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tf_translate
from tests.conftest import skip_without_vgg, tiny_config, write_images
from tf_translate import data as tf_data
from tf_translate import registry
from tf_translate.export import Exported
from tf_translate.training import trainer


@pytest.fixture(scope="module")
def style_file(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("style"), 1, seed=9, size=(48, 40))[0]


@pytest.fixture(scope="module")
def trained_fast_style(exports):
    """The tiny fast_style model every export test shares (conftest.exports)."""
    return exports("fast_style")


def test_loss_network_stays_frozen_and_out_of_the_checkpoint(tmp_path, photos_dir, style_file):
    skip_without_vgg()
    cfg = tiny_config("fast_style", tmp_path, str(photos_dir), model={"style": (str(style_file),)})
    spec = registry.get("fast_style")
    model = trainer.build_model(cfg, spec, steps_per_epoch=2)
    vgg = model.perceptual.vgg
    before = [w.numpy().copy() for w in vgg.weights]
    batch = next(iter(tf_data.load("photos", cfg).training(batch_size=2, flip=True, seed=0, first_step=0, steps=1)))
    g_before = [w.numpy().copy() for w in model.G.trainable_weights]
    for _ in range(2):
        logs = model.train_step(batch)
    assert float(logs["finite"]) == 1.0 and all(float(logs[k]) > 0 for k in ("content", "style", "tv"))
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, vgg.weights))
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(g_before, model.G.trainable_weights))
    vgg_ids = {id(w) for w in vgg.weights}
    assert not any(id(w) in vgg_ids for w in model.trainable_variables + model.weights)
    assert len(model.g_optimizer.variables) < 3 * len(model.G.trainable_weights) + 5  # no Adam slots for VGG


def test_trained_export_runs_at_any_size_with_tflite_parity(trained_fast_style):
    cfg, version = trained_fast_style
    parity = json.loads((version / "tflite_parity.json").read_text())
    assert parity["signatures"]["translate"]["max_abs_error"] < 1e-3
    model = Exported(version)
    for height, width in ((37, 45), (64, 96)):
        image = np.random.default_rng(height).random((1, height, width, 3), dtype=np.float32)
        out = model(image)
        assert out.shape == (1, height, width, 3) and 0 <= out.min() and out.max() <= 1
    best = json.loads((cfg.run_dir / "best" / "best.json").read_text())
    assert "val_loss" in json.dumps(best)
    assert sorted(p.name for p in (cfg.run_dir / "samples").glob("*.png"))


def test_missing_style_image_is_named(tmp_path, photos_dir):
    skip_without_vgg()
    cfg = tiny_config("fast_style", tmp_path, str(photos_dir), model={"style": (str(tmp_path / "nope.jpg"),)})
    with pytest.raises(Exception, match="nope.jpg"):
        trainer.build_model(cfg, registry.get("fast_style"), steps_per_epoch=2)


def test_crop_too_small_for_the_loss_network(tmp_path, photos_dir, style_file):
    skip_without_vgg()
    cfg = tiny_config("fast_style", tmp_path, str(photos_dir), model={"style": (str(style_file),)},
                      data={"load_size": 6, "crop_size": 4})
    with pytest.raises(ValueError, match="need at least 8 px"):
        trainer.build_model(cfg, registry.get("fast_style"), steps_per_epoch=2)


def test_flat_photo_folder_holds_out_its_last_tenth(tmp_path):
    write_images(tmp_path / "flat", 20, seed=1)
    cfg = tiny_config("fast_style", tmp_path, str(tmp_path / "flat"))
    data = tf_data.load("photos", cfg)
    assert (len(data.train), len(data.test)) == (18, 2)
    batch = next(iter(data.training(batch_size=2, flip=True, seed=0, first_step=0, steps=1)))
    assert batch.shape == (2, 32, 32, 3) and tf.reduce_min(batch) >= -1


@pytest.fixture(scope="module")
def two_styles(tmp_path_factory, photos_dir):
    """A tiny two-style (conditional) network trained 2 steps and exported: (config, version folder)."""
    skip_without_vgg()
    tmp = tmp_path_factory.mktemp("two_styles")
    styles = write_images(tmp / "styles", 2, seed=11, size=(40, 40))
    cfg = tiny_config("fast_style", tmp, str(photos_dir), model={"style": tuple(map(str, styles))},
                      train={"decay_epochs": 0})
    return cfg, tf_translate.train(cfg)


def test_style_weights_choose_and_blend(two_styles):
    cfg, version = two_styles
    model = Exported(version)
    assert model.styles == 2
    loaded = model.module.signatures
    images = tf.constant(np.random.default_rng(0).random((2, 36, 44, 3), dtype=np.float32))
    weights = tf.constant([[0.3, 0.7], [1.0, 0.0]])
    by_vector = loaded["translate"](images=images, style_weights=weights)["images"].numpy()
    constant_map = tf.tile(weights[:, None, None, :], [1, 36, 44, 1])
    by_map = loaded["translate_map"](images=images, style_map=constant_map)["images"].numpy()
    np.testing.assert_allclose(by_map, by_vector, atol=1e-5)
    # one-hot = the single style, as the Keras network computes it
    restored = trainer.restore(cfg)
    for k in range(2):
        one_hot = tf.one_hot([k, k], 2)
        exported = loaded["translate"](images=images, style_weights=one_hot)["images"].numpy()
        keras_out = (restored.stylize(images * 2 - 1, tf.constant([k, k])).numpy() + 1) / 2  # 36x44: no padding
        np.testing.assert_allclose(exported, keras_out, atol=1e-4)
    assert not np.allclose(by_vector[1], loaded["translate"](images=images, style_weights=tf.constant(
        [[0.3, 0.7], [0.0, 1.0]]))["images"].numpy()[1], atol=1e-4)  # the weights matter
    left_right = np.zeros((2, 36, 44, 2), np.float32)
    left_right[:, :, :22, 0] = left_right[:, :, 22:, 1] = 1  # style 0 on the left, 1 on the right
    spatial = loaded["translate_map"](images=images, style_map=left_right)["images"].numpy()
    assert spatial.shape == (2, 36, 44, 3)
    np.testing.assert_allclose(model(images.numpy(), style_weights=left_right[0]), spatial, atol=1e-6)
    with pytest.raises(ValueError, match="blends 2 styles"):
        model(images.numpy())
    with pytest.raises(ValueError, match="a style map of 36x40 for images of 36x44"):
        model(images.numpy(), style_weights=left_right[0, :, :40])
    with pytest.raises(ValueError, match=r"expected \(2,\), \(batch, 2\) or \(height, width, 2\)"):
        model(images.numpy(), style_weights=[1.0, 0.0, 0.0])
    parity = json.loads((version / "tflite_parity.json").read_text())
    assert parity["signatures"]["translate"]["max_abs_error"] < 1e-3


def test_sweep_map_runs_through_the_styles_left_to_right():
    from tf_translate.methods.fast_style import sweep_map

    weights = sweep_map(2, 5, 3)
    assert weights.shape == (2, 5, 3)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights[0, :, :], [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0.5, 0.5], [0, 0, 1]])


def test_evaluate_draws_the_blend_sheet_of_a_multi_style_network(two_styles, tmp_path):
    from PIL import Image

    from tf_translate.metrics import evaluate

    _, version = two_styles
    report = evaluate.evaluate(version, pictures=tmp_path)
    assert len(report["styles"]) == 2
    sheet = np.asarray(Image.open(report["blend_sheet"]))
    # columns: photo, style 0, style 1, even blend, sweep; rows: the style images, then the held-out photos;
    # 32-px tiles are enlarged 3x (panel's min_width 72)
    tile = 3 * 32
    assert sheet.shape[1] == 2 + 5 * (tile + 2) and sheet.shape[0] == 14 + 2 + (1 + report["photos"]) * (tile + 2)
    assert "blend_sheet.png" in evaluate.markdown(report)


def test_tflite_variants_are_quantized_and_reported(trained_fast_style):
    from ai_edge_litert.interpreter import Interpreter

    _, version = trained_fast_style
    parity = json.loads((version / "tflite_parity.json").read_text())
    assert set(parity["variants"]) == {"float16", "int8"}
    for variant, limit in (("float16", 0.05), ("int8", 0.5)):
        scores = parity["variants"][variant]["translate"]
        assert scores["max_abs_error"] < limit and scores["psnr_db"] > 10, (variant, scores)
    sizes = {v: (version / f).stat().st_size for v, f in (("float32", "model.tflite"), ("float16", "model_float16.tflite"),
                                                          ("int8", "model_int8.tflite"))}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    interpreter = Interpreter(model_path=str(version / "model_int8.tflite"))
    assert any(t["dtype"] == np.int8 for t in interpreter.get_tensor_details())  # int8 activations, not only weights


def test_evaluate_compares_the_network_with_per_photo_optimisation(trained_fast_style, tmp_path):
    from tf_translate.metrics import evaluate

    _, version = trained_fast_style
    report = evaluate.evaluate(version, pictures=tmp_path)
    (style,) = report["styles"].values()
    assert report["photos"] == 2 and len(style["photos"]) == 2
    for photo in style["photos"]:
        # the optimiser starts from the photo and never accepts a worse point; the network is
        # barely trained, so the optimum of its own loss is lower than what it makes
        assert photo["optimised"]["total"] < photo["network"]["total"] and photo["ratio"] > 1
        # the baseline: the photo itself, whose content loss is 0 and which the optimiser starts from
        assert photo["photo"]["content"] == 0 and photo["optimised"]["total"] <= photo["photo"]["total"]
    assert Path(style["sheet"]).exists()
    assert f"(the untranslated photo: {style['mean_photo_total']:.4g})" in evaluate.headline(report)
    assert "mean ratio" in evaluate.markdown(report)
