import json
import warnings

import numpy as np
import pytest
import tensorflow as tf

import tf_translate
from tests.conftest import tiny_config
from tf_translate import data as tf_data
from tf_translate import registry
from tf_translate.training import callbacks, trainer


@pytest.mark.parametrize("method_data", registry.names(distributable=True), indirect=True)
def test_one_step_finite_and_every_generator_variable_changes(tmp_path, method_data):
    method, folder = method_data
    cfg = tiny_config(method, tmp_path, str(folder))
    data = tf_data.load(registry.get(method).data_kind, cfg)
    cfg = data.complete(cfg)
    model = trainer.build_model(cfg, registry.get(method), steps_per_epoch=2)
    batch = next(iter(data.training(batch_size=1, flip=True, seed=0, first_step=0, steps=1)))
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    # two steps: a residual generator's zero-initialised last layer passes no gradient to the
    # layers before it on the first step
    for _ in range(2):
        logs = model.train_step(batch)
        assert all(np.isfinite(float(v)) for v in logs.values())
        assert float(logs["finite"]) == 1.0
    for role, net in model.nets.items():
        for v in net.trainable_variables:
            assert not np.array_equal(before[v.path], v.numpy()), f"{v.path} did not change"
    assert int(model.step.numpy()) == 2
    if method == "cyclegan":
        assert int(model.pool_x.count.numpy()) == 2  # the pool took the generated images


def test_data_is_a_function_of_seed_and_step(tmp_path, unpaired_dir):
    cfg = tiny_config("cyclegan", tmp_path, str(unpaired_dir))
    data = tf_data.load("unpaired", cfg)
    whole = [b[0].numpy() for b in data.training(batch_size=1, flip=True, seed=3, first_step=0, steps=8)]
    tail = [b[0].numpy() for b in data.training(batch_size=1, flip=True, seed=3, first_step=5, steps=3)]
    for a, b in zip(whole[5:], tail):
        np.testing.assert_array_equal(a, b)
    other = [b[0].numpy() for b in data.training(batch_size=1, flip=True, seed=4, first_step=0, steps=8)]
    assert any(not np.array_equal(a, b) for a, b in zip(whole, other))
    assert whole[0].shape == (1, 32, 32, 3) and whole[0].min() >= -1 and whole[0].max() <= 1


def _weights(run_dir):
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    skip = ("save_counter", "OBJECT_GRAPH")
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if not any(s in k for s in skip)}


def killed_and_resumed(cfg, monkeypatch) -> None:
    """Train ``cfg`` as if killed right after its first checkpoint (step 2), then resume it."""
    original_act = callbacks.Checkpoints.act

    def act_then_die(self, step, logs):
        original_act(self, step, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.Checkpoints, "act", act_then_die)
    with pytest.raises(SystemExit):
        tf_translate.train(cfg)
    monkeypatch.setattr(callbacks.Checkpoints, "act", original_act)
    assert tf.train.latest_checkpoint(str(cfg.run_dir / "checkpoints")).endswith("ckpt-2")
    tf_translate.train(cfg)


RESUME_MODEL = {"cyclegan": {"pool_size": 2}, "pix2pix": {"dropout": 0.5}}  # pool / dropout masks in play


@pytest.mark.parametrize("method_data", registry.names(distributable=True), indirect=True)
def test_resume_equals_uninterrupted(tmp_path, method_data, monkeypatch, op_determinism):
    method, folder = method_data
    # 4 steps: epoch 1 at lr, epoch 2 decaying; crops, flips and the method's own randomness in play
    run = lambda name: tiny_config(method, tmp_path / name, str(folder), export={"export": False},  # noqa: E731
                                   model=RESUME_MODEL.get(method, {}))
    straight = run("straight")
    tf_translate.train(straight)

    resumed = run("resumed")
    killed_and_resumed(resumed, monkeypatch)

    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert a.keys() == b.keys() and len(a) > 20
    step_key = [k for k in a if k.startswith("model/step")][0]
    assert int(a[step_key]) == int(b[step_key]) == 4
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)


def test_validation_keeps_best_checkpoint_and_panels(trained):
    cfg, version = trained
    best = json.loads((cfg.run_dir / "best" / "best.json").read_text())
    assert best["step"] in (2, 4) and np.isfinite(best["val_cycle_l1"])
    assert tf.train.latest_checkpoint(str(cfg.run_dir / "best")).endswith(f"ckpt-{best['step']}")
    panels = sorted((cfg.run_dir / "samples").glob("step_*.png"))
    assert [p.name for p in panels] == ["step_0000002.png", "step_0000004.png"]
    assert list((cfg.run_dir / "logs").glob("events.out.tfevents.*"))


def test_changed_settings_refuse_to_resume(trained):
    cfg, _ = trained
    import dataclasses

    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lambda_cycle=3.0))
    with pytest.raises(trainer.TrainingError, match="lambda_cycle 10.0 -> 3.0"):
        trainer.prepare(other)


def test_a_diverged_run_goes_on_with_a_lower_lr(tmp_path, unpaired_dir, capsys):
    """Resuming with another learning rate is allowed and said; a run that diverges names a
    command that resumes it from its last good checkpoint, and with a lower --lr it finishes."""
    import shlex

    from tf_translate import cli

    cfg = tiny_config("cyclegan", tmp_path, str(unpaired_dir), train={"epochs": 1, "decay_epochs": 0},
                      export={"export": False})
    tf_translate.train(cfg)  # steps 1-2, checkpointed
    settings = tmp_path / "settings.json"
    settings.write_text(cfg.to_json())
    capsys.readouterr()
    code = cli.main(["--method", "cyclegan", "--config", str(settings), "--decay-epochs", "1", "--lr", "1e30"],
                    command="train")
    err = capsys.readouterr().err
    assert code == 2 and f"{cfg.run_dir}: from step 2 on, decay_epochs 0 -> 1; lr 0.0002 -> 1e+30" in err
    assert "non-finite gradients at step 4" in err and "its checkpoint of step 2" in err
    # the guard stopped before the step-4 checkpoint: no weights a non-finite update touched
    assert tf.train.latest_checkpoint(str(cfg.run_dir / "checkpoints")).endswith("ckpt-2")
    command = shlex.split(err.split("lower learning rate: ", 1)[1].splitlines()[0])
    assert command[:2] == ["python", "scripts/train.py"] and command[-2] == "--lr"
    code = cli.main(command[2:-1] + ["2e-4"], command="train")
    assert code == 0 and "lr 1e+30 -> 0.0002" in capsys.readouterr().err
    assert tf.train.latest_checkpoint(str(cfg.run_dir / "checkpoints")).endswith("ckpt-4")


def test_xla_training_runs_and_checkpoints(tmp_path, unpaired_dir):
    """XLA is the default (jit_compile auto); the image pool must not break or retrace it."""
    cfg = tiny_config("cyclegan", tmp_path, str(unpaired_dir), train={"jit_compile": "auto"},
                      export={"export": False}, model={"pool_size": 1})
    assert trainer.resolve_jit(cfg.train.jit_compile)
    assert not trainer.resolve_jit("auto", "mixed_bfloat16") and trainer.resolve_jit("on", "mixed_bfloat16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tf_translate.train(cfg)
    assert not [w for w in caught if "jit_compile" in str(w.message)], "XLA was switched off"
    assert tf.train.latest_checkpoint(str(cfg.run_dir / "checkpoints")).endswith("ckpt-4")
