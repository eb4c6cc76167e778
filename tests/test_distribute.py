"""Training under tf.distribute: every method under MirroredStrategy over two logical CPUs ends
where one device ends on the same global batch; two workers on loopback train and checkpoint
under MultiWorkerMirroredStrategy; mixed precision trains and exports float32 models."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tf_translate
from tests.conftest import tiny_config
from tf_translate import config, registry
from tf_translate.training import distribute

ROOT = Path(__file__).resolve().parents[1]
METHODS = registry.names(distributable=True)
# one replica under MirroredStrategy differs from one device only where a method writes a
# variable in its step outside the optimizer (CycleGAN's image pools) or draws per replica
# (DTN's stage 1: the random starts of its adversarial examples, drawn for the global batch)
ONE_REPLICA = ("cyclegan", "dtn")


@pytest.fixture(scope="session")
def mirrored(tmp_path_factory) -> dict:
    """One process (two logical CPUs must be set before TensorFlow starts) trains every
    distributable method 4 steps on one device and under MirroredStrategy."""
    work = tmp_path_factory.mktemp("mirrored")
    out = work / "results.json"
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "distributed_run.py"), str(out), str(work), *METHODS,
                           "--resume", "cyclegan", "--one-replica", ",".join(ONE_REPLICA)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("method,replicas", [(m, "two") for m in METHODS] + [(m, "one") for m in ONE_REPLICA])
def test_mirrored_training_equals_one_device(mirrored, method, replicas):
    """Over two logical CPUs, and over one device: one replica, what --strategy mirrored gives on
    a CPU-only or one-GPU machine (CycleGAN's image pools then write a mirrored variable)."""
    result = mirrored[method] if replicas == "two" else mirrored[method]["one_replica"]
    assert result["replicas"] == (2 if replicas == "two" else 1)
    assert result["steps"] == result["mirrored_steps"] == 4
    # every logged loss and learning rate of every step: the losses are reduced by the global
    # batch, per-sample randomness is drawn for it, batch norm is synchronised (a wrong reduction
    # is off by a factor). Fast style's perceptual losses are sums over VGG feature maps, whose
    # float32 rounding depends on the kernels the batch split picks: relative 9.0e-5 measured on
    # an AVX-512/AMX CPU, below 1e-5 on the AVX2 ones. PyTorch's Adam epsilon (training.adam,
    # 316x smaller than Keras' at the first step) passes more of the gradients' rounding into the
    # weights: CycleGAN's losses 2.2e-5 apart at step 4 on the AVX-512/AMX CPU.
    tolerance = 2e-4 if method == "fast_style" else 1e-4
    assert result["logged_values"] >= 8 and result["max_logged_difference"] < tolerance
    # each network gives the same outputs on the same inputs. Fast style's Adam (lr 1e-3) turns
    # rounding differences of near-zero gradients into full steps of opposite sign: on the
    # AVX-512/AMX CPU its generator's outputs differed by 0.020 after 4 steps (below 1e-3 on AVX2);
    # StarGAN's G by 1.8e-3 on session 27's AVX2 CPU (its losses within the tolerance above)
    bound = {"fast_style": 5e-2, "stargan": 5e-3}.get(method, 1e-3)
    assert max(result["max_output_difference"].values()) < bound
    # and the same weights, but for biases a normalisation removes: their gradient is rounding
    # noise, which Adam turns into full steps (fast style's lr 1e-3: about 4e-3 after 4 steps)
    assert result["max_weight_difference"] < 1e-2


def test_a_one_device_checkpoint_resumes_under_mirrored(mirrored):
    result = mirrored["cyclegan"]
    assert result["resumed_steps"] == 4
    # the image pools came back too (a pool restored empty would be off by whole images);
    # 2.1e-4 measured: rounding of near-zero gradients turned into steps by Adam, as above
    assert result["max_resumed_weight_difference"] < 1e-3


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_and_checkpoint(tmp_path, unpaired_dir):
    cfg = tiny_config("cyclegan", tmp_path, str(unpaired_dir), data={"batch_size": 2},
                      export={"tflite": False}, train={"validate_every": 2})
    settings = tmp_path / "tiny.json"
    settings.write_text(cfg.to_json())
    workers = [f"localhost:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                      "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "train.py"), "--method", "cyclegan", "--config", str(settings),
             "--strategy", "multiworker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in processes:
        try:
            _, err = process.communicate(timeout=600)
        finally:
            process.kill()
        assert process.returncode == 0, err[-3000:]
    run = Path(cfg.train.output)
    from tf_translate.training import trainer

    assert trainer.checkpoint_step(run / "checkpoints") == 4  # the chief's
    assert trainer.checkpoint_step(run / "workers" / "worker-1" / "checkpoints") == 4
    assert (run / "samples").is_dir() and not (run / "workers" / "worker-1" / "samples").exists()
    versions = list(Path(cfg.export.export_dir).iterdir())
    assert [v.name for v in versions] == ["1"]  # one export, by the chief
    import tensorflow as tf

    # the workers read their halves of each global batch and end where one device ends
    from tests.distributed_run import cancelled

    alone = tiny_config("cyclegan", tmp_path / "alone", str(unpaired_dir), data={"batch_size": 2},
                        export={"export": False})
    tf_translate.train(alone)
    one = trainer.restore(config.load(alone.run_dir / "config.json"))
    two = trainer.restore(config.load(run / "config.json"))
    skip = set().union(*(cancelled(net) for net in one.nets.values()))
    differences = [float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0))
                   for a, b in zip(one.weights, two.weights) if a.path not in skip]
    # all but a few within 1e-4 (measured: 37 of 41 below 1e-6); where a gradient is near zero
    # its rounding, which differs with the batch split, sets the sign of Adam's step (PyTorch's
    # epsilon, training.adam): 4 tensors 4e-4 to 1e-3 apart, at most 4 steps of lr 2e-4 either way
    worst = sorted(differences)
    assert len(worst) > 30 and worst[-6] < 1e-4 and worst[-1] < 2 * 4 * 2e-4, " ".join(f"{d:.1e}" for d in worst[-8:])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(one.G(x).numpy(), two.G(x).numpy(), atol=1e-4)
    chief = tf.train.load_checkpoint(str(run / "checkpoints"))
    other = tf.train.load_checkpoint(str(run / "workers" / "worker-1" / "checkpoints"))
    names = [n for n in chief.get_variable_to_shape_map() if n.startswith(("model/", "g_optimizer/"))]
    assert len(names) > 50  # the weights, pools, step and optimizer state: the same on both workers
    assert all(np.array_equal(chief.get_tensor(n), other.get_tensor(n)) for n in names)


def test_tf_config_errors_are_one_line():
    for text, message in [("{", "TF_CONFIG: expected"), ('{"cluster": {}}', "TF_CONFIG: expected"),
                          ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
                           "task index 3 is outside the 1 workers")]:
        with pytest.raises(ValueError, match=message):
            distribute.check_tf_config(text)


def test_batch_that_does_not_split_over_replicas_is_refused(tmp_path, unpaired_dir):
    from tf_translate.training import trainer

    class Four:  # what prepare() reads of a strategy
        num_replicas_in_sync = 4

    cfg = tiny_config("cyclegan", tmp_path, str(unpaired_dir), data={"batch_size": 2})
    with pytest.raises(trainer.TrainingError, match="--batch-size 2 does not split over 4 replicas"):
        trainer.prepare(cfg, Four())
