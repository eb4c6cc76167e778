"""Neural style transfer by optimisation (Gatys, Ecker, Bethge 2015, arXiv 1508.06576).

No network is trained: the pixels of one image are optimised so that its VGG-16 features
match a content image and its Gram matrices match a style image, with the losses of a
:mod:`tf_translate.nn.perceptual` preset (``gatys``: the paper; ``chainer-gogh``: the program
the founding write-up ran). Adam steps in TensorFlow, or L-BFGS (scipy's L-BFGS-B, which
keeps the pixels inside their bounds), and every ``save_every`` iterations a picture for the
animation. This is not a training run (no data set, checkpoint or export), so it is a
function and a command (``scripts/stylize.py``) rather than a registered method;
``scripts/train.py --method gatys`` forwards to it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from tf_translate.config import opt
from tf_translate.data import photos
from tf_translate.data.pictures import save_gif
from tf_translate.data.pipeline import to_uint8
from tf_translate.errors import UsageError
from tf_translate.nn import features, perceptual
from tf_translate.registry import register

# Caffe's mean pixel (RGB, 0-255): chainer-gogh's image is mean-subtracted, starts as uniform
# noise in [-20, 20] around it and is clipped to [-120, 136] about it after each step.
CAFFE_MEAN_RGB = np.asarray(features.CAFFE_MEAN_BGR[::-1], np.float32)


@dataclasses.dataclass(frozen=True)
class GatysConfig:
    preset: str = opt("gatys", "loss preset: gatys (the paper: relu1_1..relu5_1 Gram, relu4_2 content) | "
                      "chainer-gogh (pre-ReLU conv1_2..conv4_3 Gram, conv3_3 + conv4_3 content) | "
                      "johnson (fast style's perceptual loss)")
    size: int = opt(256, "longer side of the output in px (the content image is scaled to it)")
    style_size: int | None = opt(None, "longer side the style image is scaled to (default: --size); "
                                       "smaller = larger brush strokes")
    iterations: int = opt(300, "optimiser iterations")
    optimizer: str = opt("lbfgs", "lbfgs (scipy L-BFGS-B: few hundred iterations suffice) | adam (as chainer-gogh)", ("lbfgs", "adam"))
    lr: float | None = opt(None, "Adam learning rate in [-1, 1] pixel units (default: chainer-gogh's 4.0 on "
                                 "0-255 pixels = 0.0314)")
    content_weight: float | None = opt(None, "alpha, chainer-gogh's --lam (default: the preset's; raise it "
                                             "to keep more of the subject)")
    style_weight: float | None = opt(None, "beta (default: the preset's)")
    tv_weight: float | None = opt(None, "total-variation weight, on 0-255 pixel values (default: the preset's, "
                                        "0 but for johnson; e.g. 1e-5 smooths noise)")
    init: str | None = opt(None, "noise (uniform +-20 of 255 about the mean pixel, as chainer-gogh) | content "
                                 "(default: the preset's)", ("noise", "content"))
    weights: str = opt("torchvision", "VGG-16 weights: torchvision (offline, scripts/fetch_weights.py) | "
                                      "keras (Caffe-derived, downloaded by Keras)")
    save_every: int = opt(10, "write an intermediate image (and GIF frame) every N iterations")
    seed: int = opt(0, "seed of the noise start")


# The sources' own settings (perceptual.CAFFE_SCALE keeps their weights meaningful on our VGG).
# chainer-gogh's Adam lr 4.0 is in its 0-255 pixel units: 4.0 / 127.5 = 0.0314 in [-1, 1] units.
PRESET_DEFAULTS = {
    "gatys": {"lr": 4.0 / 127.5, "content_weight": 1.0, "style_weight": 1e3, "init": "noise"},  # alpha/beta 1e-3
    "chainer-gogh": {"lr": 4.0 / 127.5, "content_weight": 0.005, "style_weight": 1.0, "init": "noise"},  # lam
    # Johnson et al.'s perceptual loss, with fast style's defaults: what a transform network
    # minimises, optimised per image instead (the fast-style quality reference).
    "johnson": {"lr": 4.0 / 127.5, "content_weight": 1.0, "style_weight": 1e-4, "tv_weight": 1e-6, "init": "content"},
}


def resolved(cfg: GatysConfig) -> GatysConfig:
    """``cfg`` with the preset's defaults filled in, after checking every choice."""
    if cfg.preset not in PRESET_DEFAULTS:
        raise UsageError(f"unknown preset {cfg.preset!r}; expected one of {', '.join(PRESET_DEFAULTS)}")
    if cfg.optimizer not in ("adam", "lbfgs"):
        raise UsageError(f"optimizer {cfg.optimizer!r}: expected adam or lbfgs")
    defaults = {"tv_weight": 0.0, **PRESET_DEFAULTS[cfg.preset]}
    out = dataclasses.replace(cfg, **{k: v for k, v in defaults.items() if getattr(cfg, k) is None})
    if out.init not in ("noise", "content"):
        raise UsageError(f"init {out.init!r}: expected noise or content")
    if out.iterations < 1 or out.size < 1 or out.save_every < 1:
        raise UsageError("iterations, size and save_every must be positive")
    return out


def bounds(preset: str, shape) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel lower and upper bounds: chainer-gogh's [-120, 136] about Caffe's mean pixel,
    else the valid range [-1, 1]."""
    if preset == "chainer-gogh":
        lo, hi = (CAFFE_MEAN_RGB - 120) / 127.5 - 1, (CAFFE_MEAN_RGB + 136) / 127.5 - 1
    else:
        lo, hi = np.full(3, -1.0, np.float32), np.full(3, 1.0, np.float32)
    return np.broadcast_to(lo, shape).astype(np.float32), np.broadcast_to(hi, shape).astype(np.float32)


def start(cfg: GatysConfig, content: tf.Tensor) -> np.ndarray:
    """The first image: the content, or chainer-gogh's noise (uniform +-20 of 255 about the mean pixel)."""
    if cfg.init == "content":
        return content.numpy()
    rng = np.random.default_rng(cfg.seed)
    noise = rng.uniform(-20, 20, content.shape).astype(np.float32)
    return (CAFFE_MEAN_RGB + noise) / 127.5 - 1.0


class Objective:
    """L = content_weight * L_content + style_weight * L_style + tv_weight * TV(0-255 pixels),
    and its gradient with respect to the image. One objective serves several content images
    (``set_content``) of the same style: the compiled gradient is reused while sizes repeat."""

    def __init__(self, cfg: GatysConfig, style: tf.Tensor, content: tf.Tensor | None = None):
        self.cfg = cfg
        self.loss = perceptual.PerceptualLoss(cfg.preset, weights=cfg.weights)
        self.loss.check_size(*style.shape[1:3], "the style image")
        self.style_targets = self.loss.style_targets(style)
        self._value_and_grad = tf.function(self._compute, jit_compile=True)
        self.content_targets = None
        if content is not None:
            self.set_content(content)

    def set_content(self, content: tf.Tensor) -> None:
        self.loss.check_size(*content.shape[1:3], "the content image")
        found = self.loss.features(content)
        self.content_targets = {n: tf.cast(found[n], tf.float32) for n in self.loss.preset.content_layers}

    def terms(self, image, content_targets=None) -> dict:
        c = self.cfg
        terms = self.loss.weighted(image, self.loss.features(image), content_targets or self.content_targets,
                                   self.style_targets, content_weight=c.content_weight,
                                   style_weight=c.style_weight, tv_weight=c.tv_weight or None)
        return {k: v[0] for k, v in terms.items()}

    def value_and_grad(self, image):
        return self._value_and_grad(image, self.content_targets)

    def _compute(self, image, content_targets):
        with tf.GradientTape() as tape:
            tape.watch(image)
            terms = self.terms(image, content_targets)
            total = tf.add_n(list(terms.values()))
        return total, terms, tape.gradient(total, image)


def optimise(cfg: GatysConfig, content: tf.Tensor, style: tf.Tensor | None = None, on_iteration=None, *,
             objective: Objective | None = None):
    """Optimises one image for (1, H, W, 3) ``content`` and ``style`` in [-1, 1] (or an
    ``objective`` already made for the style); calls ``on_iteration(iteration, image, history)``
    after each iteration (and for the start, 0). Returns (final image, history of the loss
    terms per iteration, loss evaluations)."""
    cfg = resolved(cfg)
    objective = objective or Objective(cfg, style)
    objective.set_content(content)
    x0 = start(cfg, content)
    lo, hi = bounds(cfg.preset, x0.shape)
    x0 = np.clip(x0, lo, hi)
    history, started = [], time.perf_counter()

    def record(iteration: int, image: np.ndarray, total, terms) -> None:
        history.append({"iteration": iteration, "seconds": time.perf_counter() - started, "total": float(total),
                        **{k: float(v) for k, v in terms.items()}})
        if on_iteration is not None:
            on_iteration(iteration, image, history)

    total, terms, _ = objective.value_and_grad(tf.constant(x0))
    record(0, x0, total, terms)
    run = _adam if cfg.optimizer == "adam" else _lbfgs
    final, evaluations = run(cfg, objective, x0, lo, hi, record)
    return final, history, evaluations


# An optimisation per image, not a trained network: `train --method gatys` runs `stylize`.
@register("gatys", config=GatysConfig, data_kind="photos", evaluation="perceptual", exportable=False,
          distributable=False, command="stylize",
          demo_result="300 L-BFGS iterations at 256 px in 1 min 43 s; the loss falls from 2.72e9 to 9.92e7 and "
                      "the cat keeps its shape, the stained tissue's blue and brown showing mostly in the background "
                      "(docs/gallery)")
def stylize(cfg: GatysConfig, content_path, style_path, output: Path, *, log=print) -> dict:
    """Optimises one image; writes ``output``/result.png, steps/*.png, optimisation.gif,
    losses.json and losses.png; returns the summary written into losses.json."""
    cfg = resolved(cfg)
    output = Path(output)
    (output / "steps").mkdir(parents=True, exist_ok=True)
    content = photos.load_image(content_path, cfg.size)
    style = photos.load_image(style_path, cfg.style_size or cfg.size)
    frames, started = [], time.perf_counter()

    def save(iteration: int, image: np.ndarray, history: list) -> None:
        if iteration % cfg.save_every == 0 or iteration == cfg.iterations:
            picture = np.asarray(to_uint8(image[0]))
            Image.fromarray(picture).save(output / "steps" / f"iteration_{iteration:05d}.png")
            frames.append(picture)
            log(f"iteration {iteration}/{cfg.iterations}: loss {history[-1]['total']:.4g} ("
                + ", ".join(f"{k} {v:.3g}" for k, v in history[-1].items()
                            if k not in ("iteration", "seconds", "total")) + ")")

    final, history, evaluations = optimise(cfg, content, style, save)
    seconds = time.perf_counter() - started
    Image.fromarray(np.asarray(to_uint8(final[0]))).save(output / "result.png")
    save_gif(output / "optimisation.gif", frames, ms_per_frame=120)
    iterations = history[-1]["iteration"]
    summary = {"config": dataclasses.asdict(cfg), "content": str(content_path), "style": str(style_path),
               "size": list(final.shape[1:3]), "iterations": iterations, "loss_evaluations": evaluations,
               "seconds": seconds, "iterations_per_s": iterations / seconds, "history": history}
    (output / "losses.json").write_text(json.dumps(summary, indent=1) + "\n")
    loss_chart(history, output / "losses.png")
    log(f"{iterations} iterations ({evaluations} loss evaluations) in {seconds:.1f} s: "
        f"{iterations / seconds:.2f} iterations/s -> {output / 'result.png'}")
    return summary


def _adam(cfg, objective, x0, lo, hi, record):
    image = tf.Variable(x0)
    optimizer = keras.optimizers.Adam(cfg.lr)
    for i in range(1, cfg.iterations + 1):
        total, terms, grad = objective.value_and_grad(tf.convert_to_tensor(image))
        optimizer.apply_gradients([(grad, image)])
        image.assign(tf.clip_by_value(image, lo, hi))
        record(i, image.numpy(), total, terms)  # the loss is that of the image before this step
    return image.numpy(), cfg.iterations


def _lbfgs(cfg, objective, x0, lo, hi, record):
    from scipy.optimize import Bounds, minimize

    shape, evaluations, last = x0.shape, [0], {}

    def value_and_grad(flat):
        evaluations[0] += 1
        total, terms, grad = objective.value_and_grad(tf.constant(flat.reshape(shape), tf.float32))
        last.update(total=total, terms=terms)
        return float(total), grad.numpy().astype(np.float64).ravel()

    iteration = [0]

    def step(flat):
        iteration[0] += 1
        record(iteration[0], flat.reshape(shape).astype(np.float32), last["total"], last["terms"])

    result = minimize(value_and_grad, x0.astype(np.float64).ravel(), jac=True, method="L-BFGS-B",
                      bounds=Bounds(lo.ravel(), hi.ravel()), callback=step,
                      # no tolerance stops: the losses' scale depends on the VGG weights and preset
                      # (chainer-gogh's means are ~1e-3 here), so only the iteration budget ends it
                      options={"maxiter": cfg.iterations, "maxfun": 2 * cfg.iterations + 20,
                               "ftol": 0.0, "gtol": 0.0})
    if iteration[0] < cfg.iterations:
        print(f"L-BFGS stopped after {iteration[0]} iterations: {result.message}", file=sys.stderr)
    return result.x.reshape(shape).astype(np.float32), evaluations[0]


def loss_chart(history: list[dict], path: Path, size=(480, 300)) -> None:
    """The loss terms against the iteration on a log scale, as a PNG."""
    keys = [k for k in history[0] if k not in ("iteration", "seconds")]
    width, height, margin = size[0], size[1], 40
    values = np.array([[max(h[k], 1e-12) for k in keys] for h in history])
    logs = np.log10(values)
    low, high = logs.min(), max(logs.max(), logs.min() + 1e-6)
    last = max(history[-1]["iteration"], 1)
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([margin, 10, width - 10, height - margin], outline="black")
    colours = ["black", "#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    for j, key in enumerate(keys):
        points = [(margin + (width - 10 - margin) * h["iteration"] / last,
                   height - margin - (height - margin - 10) * (logs[i, j] - low) / (high - low))
                  for i, h in enumerate(history)]
        draw.line(points, fill=colours[j % len(colours)], width=2)
        draw.text((margin + 6, 14 + 12 * j), key, fill=colours[j % len(colours)])
    draw.text((margin, height - margin + 6), f"iteration 0 .. {last}", fill="black")
    draw.text((2, 10), f"1e{high:.1f}", fill="black")
    draw.text((2, height - margin - 10), f"1e{low:.1f}", fill="black")
    canvas.save(path)
