"""--precision: layers compute in 16 bits while variables, losses, outputs and exports stay
float32; float16 scales its loss; ``auto`` picks bfloat16 only where it was measured to pay."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_translate
from tests.conftest import tiny_config
from tf_translate import config, export, registry
from tf_translate.training import distribute, trainer


def test_explicit_settings_are_kept_and_bad_ones_named(monkeypatch):
    for name in ("float32", "mixed_float16", "mixed_bfloat16"):
        assert distribute.resolve_precision(name, bfloat16_measured=False) == name
    with pytest.raises(ValueError, match="--precision 'bf16': expected one of auto, float32"):
        distribute.resolve_precision("bf16", bfloat16_measured=True)


@pytest.mark.parametrize("has_bf16,measured,gpus,expected", [
    (True, True, [], "mixed_bfloat16"), (False, True, [], "float32"), (True, False, [], "float32"),
    (True, True, ["GPU:0"], "float32")])
def test_auto_is_bfloat16_only_on_bf16_cpus_for_measured_methods(monkeypatch, has_bf16, measured, gpus, expected):
    monkeypatch.setattr(distribute, "cpu_has_bf16", lambda: has_bf16)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    assert distribute.resolve_precision("auto", bfloat16_measured=measured) == expected


def test_policy_is_restored():
    before = keras.config.dtype_policy().name
    with distribute.policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before


@pytest.fixture(scope="module")
def bfloat16_run(tmp_path_factory, unpaired_dir):
    tmp = tmp_path_factory.mktemp("bf16")
    cfg = tiny_config("cyclegan", tmp, str(unpaired_dir), train={"precision": "mixed_bfloat16"})
    return cfg, tf_translate.train(cfg)


def test_bfloat16_training_computes_in_bfloat16_and_keeps_float32_weights(tmp_path, unpaired_dir):
    cfg = tiny_config("cyclegan", tmp_path, str(unpaired_dir), train={"precision": "mixed_bfloat16"})
    model = trainer.build_model(cfg, registry.get("cyclegan"), 2, trainer.training_precision(cfg))
    convs = [layer for layer in model.G.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "bfloat16" for layer in convs)
    assert all(w.dtype == "float32" for w in model.G.weights)
    assert model.G.output.dtype == "float32"  # the tanh is float32: losses and outputs
    before = [w.numpy().copy() for w in model.G.trainable_weights]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    logs = model.train_step((tf.constant(x), tf.constant(x)))
    assert float(logs["finite"]) == 1.0 and np.isfinite(float(logs["loss"]))
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.G.trainable_weights))


def test_bfloat16_run_exports_float32_models(bfloat16_run):
    cfg, version = bfloat16_run
    saved = json.loads((version / "config.json").read_text())
    assert saved["train"]["precision"] == "mixed_bfloat16"  # recorded, yet the export computes in float32:
    loaded = tf.saved_model.load(str(version))
    graph = loaded.signatures["serving_default"].graph.as_graph_def()
    dtypes = {attr.type for node in graph.node for key, attr in node.attr.items() if key == "T"}
    dtypes |= {attr.type for f in graph.library.function for node in f.node_def
               for key, attr in node.attr.items() if key == "T"}
    assert tf.bfloat16.as_datatype_enum not in dtypes and tf.float32.as_datatype_enum in dtypes
    parity = json.loads((version / "tflite_parity.json").read_text())  # and TFLite agrees with it
    assert all(entry["max_abs_error"] <= export.PARITY_TOLERANCE for entry in parity["signatures"].values())
    # the checkpoint restores into a float32 model with the same outputs as the export
    restored = trainer.restore(config.load(cfg.run_dir / "config.json"))
    x = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    exported = loaded.signatures["a2b"](images=tf.constant(x))["images"].numpy()
    np.testing.assert_allclose(exported, (restored.G(x * 2 - 1).numpy() + 1) / 2, atol=1e-5)


@pytest.mark.parametrize("method_data", registry.names(distributable=True), indirect=True)
def test_every_method_trains_a_step_in_bfloat16(method_data, tmp_path):
    from tf_translate import data as tf_data

    method, folder = method_data
    cfg = tiny_config(method, tmp_path, str(folder), train={"precision": "mixed_bfloat16"})
    spec = registry.get(method)
    data = tf_data.load(spec.data_kind, cfg)
    cfg = data.complete(cfg)
    model = trainer.build_model(cfg, spec, 2, "mixed_bfloat16")
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    before = [w.numpy().copy() for w in model.G.trainable_weights]
    for _ in range(max(1, int(model.generator_every))):  # StarGAN's G: after n_critic steps
        logs = model.train_step(batch)
        assert float(logs["finite"]) == 1.0 and np.isfinite(float(logs["loss"]))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.G.trainable_weights))
