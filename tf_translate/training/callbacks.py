"""Training callbacks keyed on the global step (so they line up across resumes): progress,
TensorBoard scalars, sample panels, checkpoints, validation with a best checkpoint, NaN guard."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf
from PIL import Image
from tqdm.auto import tqdm

from tf_translate.data.pictures import panel, save_gif
from tf_translate.progress import bar_interval


def _step(model) -> int:
    return int(model.step.numpy())


class StepCallback(keras.callbacks.Callback):
    """Runs ``act(step, logs)`` every ``every`` global steps and once more at the end."""

    def __init__(self, every: int):
        super().__init__()
        self.every = every
        self.last = None

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if self.every and step % self.every == 0:
            self.last = step
            self.act(step, logs or {})

    def on_train_end(self, logs=None):
        step = _step(self.model)
        if self.every and self.last != step:
            self.last = step
            self.act(step, logs or {})

    def act(self, step: int, logs: dict) -> None:
        raise NotImplementedError


class Progress(keras.callbacks.Callback):
    """A progress bar over the whole run's steps with the latest losses and the epoch."""

    def __init__(self, total_steps: int, steps_per_epoch: int, first_step: int):
        super().__init__()
        self.total, self.per_epoch, self.first = total_steps, steps_per_epoch, first_step
        self.bar = None

    def on_train_begin(self, logs=None):
        compiling = " and compiling it with XLA (about a minute)" if getattr(self.model, "jit_compile", False) else ""
        print(f"step {self.first + 1} of {self.total}: building the training step{compiling}", file=sys.stderr,
              flush=True)
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if self.bar is None:  # the clock starts after the first step, so that its rate is the steps'
            print(f"first step done in {time.perf_counter() - self.started:.0f} s", file=sys.stderr)
            self.bar = tqdm(total=self.total, initial=step, unit="step", dynamic_ncols=True, file=sys.stderr,
                            mininterval=bar_interval())
        self.bar.update(step - self.bar.n)
        if step % 5 == 0 or step == self.total:
            shown = {k: f"{float(v):.3f}" for k, v in (logs or {}).items() if k not in ("loss", "finite")}
            self.bar.set_postfix(epoch=f"{(step - 1) // self.per_epoch + 1}", **shown, refresh=False)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()


class Scalars(StepCallback):
    """Losses and learning rates to TensorBoard."""

    def __init__(self, every: int, writer):
        super().__init__(every)
        self.writer = writer

    def act(self, step, logs):
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                if name != "finite":
                    tf.summary.scalar(f"loss/{name}", float(value))
            for role in ("g_optimizer", "d_optimizer"):
                opt = getattr(self.model, role, None)
                if opt is not None:
                    tf.summary.scalar(f"lr/{role}", float(opt.learning_rate))


class Samples(StepCallback):
    """Sample panels of fixed images as PNG files (samples/step_NNNNNN.png) and TensorBoard images;
    for stacks of frames also an animated GIF per sample, generated beside real."""

    def __init__(self, every: int, batch, folder: Path, writer):
        super().__init__(every)
        self.batch, self.folder, self.writer = batch, Path(folder), writer

    def act(self, step, logs):
        picture = panel(self.model.sample_rows(self.batch), self.model.panel_titles)
        self.folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(self.folder / f"step_{step:07d}.png")
        with self.writer.as_default(step=step):
            tf.summary.image("samples", picture[None], step=step)
        for i, columns in enumerate(self.model.sequences(self.batch)):
            save_gif(self.folder / f"step_{step:07d}_sample{i}.gif",
                     [panel([list(frame)], self.model.sequence_titles) for frame in zip(*columns)])


class Checkpoints(StepCallback):
    """Saves a checkpoint (atomic, numbered by step) every ``every`` steps and at the end."""

    def __init__(self, every: int, manager: tf.train.CheckpointManager):
        super().__init__(every)
        self.manager = manager

    def act(self, step, logs):
        if getattr(self.model, "nonfinite_step", None) is not None:
            return  # never checkpoint weights that a non-finite update has touched
        if self.manager.latest_checkpoint is None or not self.manager.latest_checkpoint.endswith(f"-{step}"):
            self.manager.save(checkpoint_number=step)


class Validation(StepCallback):
    """The method's validation measure on held-out data; keeps the best checkpoint beside the latest."""

    def __init__(self, every: int, held_out, manager: tf.train.CheckpointManager, writer, record: Path):
        super().__init__(every)
        self.held_out, self.manager, self.writer, self.record = held_out, manager, writer, Path(record)
        self.best = json.loads(self.record.read_text()) if self.record.exists() else None

    def act(self, step, logs):
        scores = self.model.validate(self.held_out)
        key, mode = self.model.validation_key, self.model.validation_mode
        with self.writer.as_default(step=step):
            for name, value in scores.items():
                tf.summary.scalar(f"validation/{name}", value)
        value = scores[key]
        better = self.best is None or (value < self.best[key] if mode == "min" else value > self.best[key])
        if better and math.isfinite(value):
            self.manager.save(checkpoint_number=step)
            self.best = {"step": step, key: value, **scores}
            tmp = self.record.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.best, indent=2))
            tmp.replace(self.record)
        shown = "".join(f", {name} {scores[name]:.4f}" for name in self.model.validation_shown if name in scores)
        tqdm.write(f"step {step}: {key} {value:.4f}" + (" (best so far)" if better else
                                                         f" (best {self.best[key]:.4f} at step {self.best['step']})")
                   + shown)


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first step whose gradients were not finite, before it is checkpointed."""

    def on_train_begin(self, logs=None):
        self.model.nonfinite_step = None

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None and "finite" in logs and float(logs["finite"]) < 1.0:
            self.model.nonfinite_step = _step(self.model)
            self.model.stop_training = True
