"""run(config): strategy -> data -> model -> compile -> restore -> callbacks -> fit -> export
(the exporter handed in: ``tf_translate.train`` hands in ``export.export_trained``)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import keras
import tensorflow as tf

from tf_translate import data as tf_data
from tf_translate import registry
from tf_translate.config import RunConfig, TrainConfig
from tf_translate.errors import TrainingError, UsageError
from tf_translate.methods.base import LinearDecay
from tf_translate.training import callbacks, distribute
from tf_translate.training.adam import Adam

# Settings a resumed run may change; any other difference means a different run. The optimizer's
# settings are among them: its checkpointed state (moments, step) does not depend on them, and the
# learning-rate schedule is a function of the step, so a lower --lr applies from the resumed step.
RESUMABLE_CHANGES = {
    ("train", "lr"), ("train", "beta_1"), ("train", "beta_2"),
    ("train", "epochs"), ("train", "decay_epochs"), ("train", "output"), ("train", "jit_compile"),
    ("train", "log_every"), ("train", "sample_every"), ("train", "checkpoint_every"),
    ("train", "validate_every"), ("train", "keep_checkpoints"), ("train", "strategy"), ("train", "precision"),
    ("export", "export_dir"), ("export", "export"), ("export", "tflite"), ("export", "tflite_variants"),
    ("export", "test_dropout"), ("export", "max_pixels"), ("data", "data"),
}
SILENT_CHANGES = {("train", "output"), ("export", "export_dir")}  # where, not how: not reported


def resolve_jit(setting: str, precision: str = "float32") -> bool:
    """``auto`` = on: XLA measured faster for these networks on AVX2 CPUs and is the usual win
    on GPUs; its first step compiles for about a minute, which ``off`` avoids. But off under
    mixed_bfloat16 on a CPU-only machine, where XLA's CPU code loses the bfloat16 gain (the
    measurements: docs/scaling.md and benchmarks/)."""
    if setting not in ("auto", "on", "off"):
        raise UsageError(f"--jit-compile {setting!r}: expected auto, on or off")
    if setting == "auto" and precision == "mixed_bfloat16":
        return bool(tf.config.list_physical_devices("GPU"))
    return setting != "off"


def _check_same_run(saved: Path, cfg: RunConfig) -> list[str]:
    """Refuse to resume the run in ``saved``'s folder with settings that make it another run;
    return the allowed changes ("lr 0.001 -> 0.0001"), to be reported."""
    old = json.loads(saved.read_text())
    new = cfg.to_dict()
    spec = registry.get(cfg.method)
    if old.get("method") != new["method"]:
        raise TrainingError(f"{saved.parent} holds a {old.get('method')} run; use another --output")
    changed, allowed = [], []
    for section in ("data", "train", "export", "model"):
        for key, value in new[section].items():
            before = old.get(section, {}).get(key)
            if isinstance(value, tuple):
                value = list(value)
            if before == value or (section, key) in SILENT_CHANGES:
                continue
            resumable = (section, key) in RESUMABLE_CHANGES or (section == "model" and key in spec.resumable)
            (allowed if resumable else changed).append(f"{key} {before} -> {value}")
    if changed:
        raise TrainingError(f"{saved.parent} holds a run with other settings ({'; '.join(changed)}); "
                            "use another --output, or delete the folder to start over")
    return allowed


def build_model(cfg: RunConfig, spec, steps_per_epoch: int, precision: str = "float32"):
    """The method's model, compiled with one Adam optimizer per role (PyTorch's update,
    ``training.adam``, or Keras', as ``spec.adam`` says; build under a strategy scope), its
    layers computing in ``precision`` (a Keras dtype policy; variables are float32)."""
    keras.utils.set_random_seed(cfg.train.seed)  # the initial weights
    with distribute.policy(precision):
        model = spec.model(cfg)
    t = cfg.train

    def adam(every=1):
        kind = Adam if spec.adam == "pytorch" else keras.optimizers.Adam
        optimizer = kind(LinearDecay(t.lr, t.epochs, t.decay_epochs, steps_per_epoch, every),
                         beta_1=t.beta_1, beta_2=t.beta_2)
        # float16 gradients underflow: scale the loss (apply_gradients scales and unscales)
        return keras.optimizers.LossScaleOptimizer(optimizer) if precision == "mixed_float16" else optimizer

    model.compile(g_optimizer=adam(model.generator_every), d_optimizer=adam(), jit_compile=resolve_jit(t.jit_compile, precision))
    return model


def training_precision(cfg: RunConfig) -> str:
    return distribute.resolve_precision(cfg.train.precision, registry.get(cfg.method).bfloat16)


def float32_copy(model, cfg: RunConfig):
    """``model``'s weights in a float32 model on one device, for export: exports compute in
    float32 whatever the training precision and strategy."""
    copy = build_model(cfg, registry.get(cfg.method), steps_per_epoch=1)  # outside any strategy scope
    copy.set_weights(model.get_weights())
    return copy


def checkpoint(model) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model, g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer)


def prepare(cfg: RunConfig, strategy=None):
    """Data, model and checkpoint managers of a run, restored from its latest checkpoint if any."""
    spec = registry.get(cfg.method)
    strategy = strategy or tf.distribute.get_strategy()
    data = tf_data.load(spec.data_kind, cfg)
    cfg = data.complete(cfg)
    run_dir = cfg.run_dir
    saved = run_dir / "config.json"
    changes = _check_same_run(saved, cfg) if saved.exists() else []
    batch = cfg.data.batch_size
    if batch % strategy.num_replicas_in_sync:
        raise TrainingError(f"--batch-size {batch} does not split over {strategy.num_replicas_in_sync} replicas: "
                            "use a multiple of the replica count")
    steps_per_epoch = cfg.train.steps_per_epoch or max(1, data.steps_per_epoch_samples // batch)
    with strategy.scope():
        model = build_model(cfg, spec, steps_per_epoch, training_precision(cfg))
    ckpt = checkpoint(model)
    chief = distribute.is_chief(strategy)
    folder = run_dir if chief else distribute.worker_folder(run_dir, strategy)
    latest = tf.train.CheckpointManager(ckpt, folder / "checkpoints", max_to_keep=cfg.train.keep_checkpoints)
    best = tf.train.CheckpointManager(ckpt, folder / "best", max_to_keep=1)
    found = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))  # every worker resumes from the chief's
    if found:
        ckpt.restore(found).assert_existing_objects_matched()
    if chief:
        if changes:
            print(f"{run_dir}: from step {int(model.step.numpy())} on, {'; '.join(changes)}", file=sys.stderr)
        cfg.save(saved)
    return cfg, data, model, latest, best, steps_per_epoch


def run(cfg: RunConfig, strategy=None, exporter=None) -> Path:
    """Train (or resume) the run of ``cfg`` under ``strategy`` (default: ``--strategy``'s), then
    export it with ``exporter(model, cfg, data)`` (float32, one device); returns the export's
    version folder (the run folder when export is off or no exporter is given)."""
    strategy = strategy or distribute.make_strategy(cfg.train.strategy)
    cfg, data, model, latest, best, steps_per_epoch = prepare(cfg, strategy)
    t = cfg.train
    total = (t.epochs + t.decay_epochs) * steps_per_epoch
    step = int(model.step.numpy())
    run_dir = cfg.run_dir
    chief = distribute.is_chief(strategy)
    if step and chief:
        print(f"resuming {run_dir} at step {step} of {total}", file=sys.stderr)
    if step < total:
        with strategy.scope():
            model.before_fit(data, run_dir)
        _fit(cfg, data, model, latest, best, step, total, steps_per_epoch, chief)
    if not cfg.export.export or not chief or exporter is None:
        return run_dir
    if strategy.num_replicas_in_sync > 1 or training_precision(cfg) != "float32":
        model = float32_copy(model, cfg)
    return exporter(model, cfg, data)


def _fit(cfg, data, model, latest, best, step, total, steps_per_epoch, chief=True) -> None:
    t = cfg.train
    run_dir = cfg.run_dir
    writer = tf.summary.create_file_writer(str(run_dir / "logs")) if chief else tf.summary.create_noop_writer()
    dataset = training_batches(data, cfg, step, total, model.distribute_strategy)
    steps = [callbacks.NaNGuard()]
    if chief:  # the other workers train and checkpoint only
        steps += [
            callbacks.Progress(total, steps_per_epoch, step),
            callbacks.Scalars(t.log_every, writer),
            callbacks.Samples(t.sample_every, data.preview(2), run_dir / "samples", writer),
        ]
        if t.validate_every and data.test is not None:
            steps.append(callbacks.Validation(t.validate_every, data.held_out(), best, writer,
                                              run_dir / "best" / "best.json"))
    steps.append(callbacks.Checkpoints(t.checkpoint_every, latest))
    try:
        model.fit(dataset, epochs=1, steps_per_epoch=total - step, verbose=0, shuffle=False, callbacks=steps)
    except KeyboardInterrupt:
        if getattr(model, "nonfinite_step", None) is None:
            latest.save(checkpoint_number=int(model.step.numpy()))
        print(f"\ninterrupted at step {int(model.step.numpy())}; checkpoint saved in {latest.directory}; "
              "run the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        writer.close()
    if model.nonfinite_step is not None:
        found = tf.train.latest_checkpoint(str(latest.directory))
        since = f"its checkpoint of step {found.rsplit('-', 1)[1]}" if found else "the start (no checkpoint yet)"
        raise TrainingError(
            f"non-finite gradients at step {model.nonfinite_step}; training stopped without saving them. To go on "
            f"from {since} with a lower learning rate: python scripts/train.py --method {cfg.method} "
            f"--config {run_dir / 'config.json'} --lr {t.lr / 10 if math.isfinite(t.lr) else TrainConfig.lr:g}")


def training_batches(data, cfg: RunConfig, step: int, total: int, strategy):
    """The batches of steps ``step .. total - 1``. Under MultiWorkerMirroredStrategy each worker's
    input pipeline reads only its replicas' part of every global batch (the samples one device
    would give them), rather than every worker reading everything and keeping its share."""
    def batches(part=(0, 1)):
        return data.training(batch_size=cfg.data.batch_size, flip=cfg.data.flip, seed=cfg.train.seed,
                             first_step=step, steps=total - step, part=part)

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return batches()

    def pipeline(context: tf.distribute.InputContext):
        mine = batches((context.input_pipeline_id, context.num_input_pipelines))
        return mine.unbatch().batch(context.get_per_replica_batch_size(cfg.data.batch_size), drop_remainder=True)

    return strategy.distribute_datasets_from_function(pipeline)


def checkpoint_step(folder) -> int:
    """The training step of the latest checkpoint in ``folder`` (checkpoints are numbered by step)."""
    path = tf.train.latest_checkpoint(str(folder))
    if path is None:
        raise TrainingError(f"{folder}: no checkpoint found")
    return int(path.rsplit("-", 1)[1])


def restore(cfg: RunConfig, best: bool = False):
    """The model of a run folder, restored from its latest (or best) checkpoint, for export."""
    folder = cfg.run_dir / ("best" if best else "checkpoints")
    path = tf.train.latest_checkpoint(str(folder))
    if path is None:
        what = "best checkpoint (train with --validate-every N and a test split)" if best else "checkpoint"
        raise TrainingError(f"{folder}: no {what} found")
    model = build_model(cfg, registry.get(cfg.method), steps_per_epoch=1)  # float32, one device
    checkpoint(model).restore(path).expect_partial()
    return model
