"""Train each method named on the command line for a few steps on one device and under
MirroredStrategy over two logical CPUs (with ``--one-replica``, also over one device: what
``--strategy mirrored`` gives on a CPU-only or one-GPU machine), with the same global batch,
and write how far apart they end.

Run in its own process (``tests/test_distribute.py`` does): the logical devices must be set
before TensorFlow initialises. Usage: ``distributed_run.py OUT.json WORK_DIR METHOD...``.
``--steps N`` trains longer (the benchmark of mirrored over one device).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_translate
from tests.conftest import tiny_config  # noqa: E402
from tf_translate import config  # noqa: E402
from tf_translate.training import distribute, trainer

NORM_LAYERS = (keras.layers.BatchNormalization, keras.layers.GroupNormalization)


def cancelled(net: keras.Model) -> set[str]:
    """Paths of the weights whose gradient is zero in exact arithmetic: a convolution's bias
    that a normalisation removes again (its gradient is rounding noise, which Adam scales to a
    full step), and the moving mean of a batch norm behind it, which follows that bias."""
    from tf_translate.nn.layers import InstanceNorm

    out = set()
    for layer in net.layers:
        bias = getattr(layer, "bias", None)
        consumers = [node.operation for node in layer._outbound_nodes]
        if bias is not None and consumers and all(isinstance(c, (*NORM_LAYERS, InstanceNorm)) for c in consumers):
            out.add(bias.path)
            out.update(c.moving_mean.path for c in consumers if isinstance(c, keras.layers.BatchNormalization))
    return out


STRATEGIES: dict = {}  # one of each per process: a second MirroredStrategy's collectives clash with the first's


def made(name: str) -> tf.distribute.Strategy:
    if name not in STRATEGIES:
        STRATEGIES[name] = (tf.distribute.MirroredStrategy(["/cpu:0"]) if name == "mirrored-one"
                            else distribute.make_strategy(name))
    return STRATEGIES[name]


def train(method: str, strategy: str, folder: Path, steps: int, decay_epochs: int = 1):
    """``steps`` steps (or half of them with ``decay_epochs=0``) of global batch 2 in ``folder``/run."""
    cfg = tiny_config(method, folder, None, data={"batch_size": 2}, export={"export": False},
                      train={"steps_per_epoch": steps // 2, "checkpoint_every": steps // 2, "sample_every": steps,
                             "decay_epochs": decay_epochs})
    started = time.perf_counter()
    tf_translate.train(cfg, made(strategy))
    seconds = time.perf_counter() - started
    return trainer.restore(config.load(cfg.run_dir / "config.json")), seconds


def logged(run_dir: Path) -> dict:
    """{(tag, step): value} of the scalars a run wrote to TensorBoard."""
    out = {}
    for path in sorted((run_dir / "logs").glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in (v for v in event.summary.value if v.tag.startswith(("loss/", "lr/"))):
                out[value.tag, event.step] = float(tf.make_ndarray(value.tensor))
    return out


def compare(method: str, work: Path, steps: int, resume: bool, one_replica: bool) -> dict:
    one, one_s = train(method, "default", work / method / "default", steps)
    out = differences(method, work, one, "mirrored")
    if one_replica:
        out["one_replica"] = differences(method, work, one, "mirrored-one")
    out["seconds"]["default"] = one_s
    if resume:  # the first half on one device, the rest resumed under MirroredStrategy
        skip = set().union(*(cancelled(net) for net in one.nets.values()))
        train(method, "default", work / method / "resumed", steps, decay_epochs=0)
        resumed, _ = train(method, "mirrored", work / method / "resumed", steps)
        out["resumed_steps"] = int(resumed.step.numpy())
        out["max_resumed_weight_difference"] = max(
            float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0))
            for a, b in zip(one.weights, resumed.weights) if a.path not in skip)
    return out


def differences(method: str, work: Path, one, strategy: str) -> dict:
    """Train under ``strategy`` and compare with the one-device run ``one``: every logged value,
    every weight, every network's outputs."""
    steps = int(one.step.numpy())
    two, two_s = train(method, strategy, work / method / strategy, steps)
    logs = [logged(work / method / name / "run") for name in ("default", strategy)]
    assert logs[0] and logs[0].keys() == logs[1].keys(), (sorted(logs[0]), sorted(logs[1]))
    losses = max(abs(logs[0][k] - logs[1][k]) / max(1.0, abs(logs[0][k])) for k in logs[0])
    skip = set().union(*(cancelled(net) for net in one.nets.values()))
    weights, kept = 0.0, 0
    for a, b in zip(one.weights, two.weights):
        if a.path in skip:
            continue
        difference = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
        weights, kept = max(weights, float(np.max(difference, initial=0.0))), kept + 1
    outputs = {}
    rng = np.random.default_rng(0)
    for role, net in one.nets.items():
        inputs = [rng.uniform(-1, 1, (2, *(d or 32 for d in spec.shape[1:]))).astype(np.float32)
                  for spec in net.inputs]
        a, b = net(inputs, training=False), two.nets[role](inputs, training=False)
        a, b = (a if isinstance(a, (list, tuple)) else [a]), (b if isinstance(b, (list, tuple)) else [b])
        outputs[role] = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))
    return {"max_logged_difference": losses, "logged_values": len(logs[0]), "max_weight_difference": weights,
            "weights_compared": kept, "weights_skipped": len(skip), "max_output_difference": outputs,
            "steps": steps, "mirrored_steps": int(two.step.numpy()),
            "replicas": made(strategy).num_replicas_in_sync, "seconds": {strategy: two_s}}


def throughput(method: str, strategy: str, folder: Path, steps: int) -> dict:
    """Images/s of ``steps`` training steps (after 3 untimed) of the method's demo configuration
    (its networks and embedded data; an even global batch) under ``strategy``."""
    from tf_translate import registry

    spec = registry.get(method)
    layer = {"train": {"output": str(folder), "jit_compile": "off", "precision": "float32",
                       "steps_per_epoch": steps + 3}}
    if method == "dtn":  # stage 1 (f) is not what is timed
        layer["model"] = {"encoder_steps": 20}
    cfg = config.build(method, spec.config, spec.overrides, spec.demo, layer)
    batch = cfg.data.batch_size + cfg.data.batch_size % 2
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=batch))
    cfg, data, model, *_ = trainer.prepare(cfg, made(strategy))
    with made(strategy).scope():
        model.before_fit(data, cfg.run_dir)
    ends = []
    timer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda *_, **__: ends.append(time.perf_counter()))
    model.fit(trainer.training_batches(data, cfg, 0, steps + 3, model.distribute_strategy), epochs=1,
              steps_per_epoch=steps + 3, verbose=0, callbacks=[timer])
    return {"batch": batch, "images_per_s": batch * steps / (ends[-1] - ends[2])}


def main() -> None:
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("work")
    parser.add_argument("methods", nargs="+")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--throughput", type=int, metavar="STEPS",
                        help="instead: images/s of the demo configuration, one device against mirrored")
    parser.add_argument("--resume", default="", help="methods also resumed under mirrored from a one-device checkpoint")
    parser.add_argument("--one-replica", default="", help="methods also trained under mirrored over one device")
    args = parser.parse_args()
    if args.throughput:
        results = {m: {s: throughput(m, s, Path(args.work) / m / s, args.throughput) for s in ("default", "mirrored")}
                   for m in args.methods}
        Path(args.out).write_text(json.dumps(results, indent=2))
        return
    results = {m: compare(m, Path(args.work), args.steps, m in args.resume.split(","), m in args.one_replica.split(","))
               for m in args.methods}
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
