"""Training callbacks keyed on the global step (so they line up across resumes): progress,
TensorBoard scalars, sample panels, checkpoints, validation with a best checkpoint, NaN guard."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from tf_translate.data.pipeline import to_uint8


def bar_interval() -> float:
    """Seconds between progress bar updates: live on a terminal, sparse in a log file."""
    return 1.0 if sys.stderr.isatty() else 30.0


def _step(model) -> int:
    return int(model.step.numpy())


def panel(rows: list, titles: tuple[str, ...] = (), gap: int = 2, min_width: int = 72) -> np.ndarray:
    """A grid of float [-1, 1] images (rows of columns) as one uint8 RGB picture with column
    titles; images narrower than ``min_width`` are enlarged by a whole factor (nearest), so
    that 32-px digits can be seen and their titles fit."""
    scale = -(-min_width // rows[0][0].shape[1])
    height, width = (side * scale for side in rows[0][0].shape[:2])
    header = 14 if titles else 0
    n_cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (n_cols * (width + gap) + gap, header + len(rows) * (height + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((gap + c * (width + gap) + 2, 1), title, fill="black")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            tile = np.asarray(to_uint8(image))
            if tile.shape[-1] == 1:
                tile = np.repeat(tile, 3, axis=-1)
            tile = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
            canvas.paste(Image.fromarray(tile), (gap + c * (width + gap), header + gap + r * (height + gap)))
    return np.asarray(canvas)


def save_gif(path: Path, pictures: list[np.ndarray], ms_per_frame: int = 250) -> None:
    """An animated GIF of uint8 RGB pictures, looping forever."""
    images = [Image.fromarray(p) for p in pictures]
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)


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
        self.bar = tqdm(total=self.total, initial=self.first, unit="step", dynamic_ncols=True, file=sys.stderr,
                        mininterval=bar_interval())

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
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
        for i, (made, real) in enumerate(self.model.sequences(self.batch)):
            save_gif(self.folder / f"step_{step:07d}_sample{i}.gif",
                     [panel([[m, r]], ("generated", "real")) for m, r in zip(made, real)])


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
