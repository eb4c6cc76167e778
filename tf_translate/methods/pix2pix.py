"""pix2pix: paired translation with a conditional GAN, for any number of stacked channels."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tf_translate import seeding
from tf_translate.config import opt
from tf_translate.data.frames import blend_weights, is_crossfade, layout
from tf_translate.errors import UsageError
from tf_translate.methods.base import TranslationModel
from tf_translate.nn import losses, networks
from tf_translate.nn.layers import NORMS, StatelessDropout
from tf_translate.registry import register


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig:
    filters: int = opt(64, "generator filters of the first U-Net level (C64)")
    depth: int | None = opt(None, "U-Net levels; default: down to 1x1 at the crop size (8 for 256, 7 for 128)")
    dropout: float = opt(0.5, "dropout rate of the first three decoder blocks")
    disc_filters: int = opt(64, "discriminator filters of the first layer")
    disc_layers: int = opt(3, "PatchGAN depth (3 = 70x70 receptive field)")
    norm: str = opt("instance", f"{' | '.join(NORMS)} (batch norm only with batches > 1)", NORMS)
    gan_loss: str = opt("vanilla", "vanilla (binary cross-entropy, the paper) | lsgan | wgan", losses.GAN_LOSSES)
    lambda_l1: float = opt(100.0, "weight of the L1 loss between G(x) and y")
    direction: str = opt("a2b", "for A|B pairs: a2b translates the left image into the right one, b2a back")
    frames_per_image: int = opt(2, "frames side by side in each image file (an A|B pair is 2)")
    input_frames: tuple[int, ...] | None = opt(None, "input frame indices, e.g. 0,6 (default: A, or the first "
                                               "and last frame of a longer stack)")
    target_frames: tuple[int, ...] | None = opt(None, "target frame indices, e.g. 1,2,3,4,5 (default: the others)")
    frame_gap: int = opt(6, "videos: source frames between the two input frames; a window holds gap + 1 frames")
    holdout: float = opt(0.2, "without a test/ folder: the last part held out (videos: a time block)")
    residual: str = opt("auto", "on: G learns a correction to the linear blend of its input frames (the "
                        "cross-fade around each target frame; for a pair, the input) instead of the whole "
                        "target; auto: on when targets lie between input frames (frame interpolation)", ("on", "off", "auto"))


@register("pix2pix", evaluation="paired", config=Pix2PixConfig, data_kind="paired", bfloat16=True,
          demo={"data": {"load_size": 132, "crop_size": 128},
                "model": {"filters": 32, "disc_filters": 32},
                "train": {"epochs": 3, "decay_epochs": 2, "sample_every": 92, "checkpoint_every": 92,
                          "validate_every": 92}},
          demo_result="frame interpolation of the embedded clip, 460 steps in 2 min 38 s; 31.14 dB PSNR over the "
                      "five generated frames against 31.19 dB for the cross-fade of the two inputs: not yet better "
                      "than the cross-fade (docs/gallery)")
class Pix2Pix(TranslationModel):
    """pix2pix (Isola, Zhu, Zhou, Efros, CVPR 2017, arXiv 1611.07004).

    G: a U-Net from the stacked input frames to the stacked target frames; D: a 70x70
    PatchGAN on the channel concatenation (x, y). Losses: conditional GAN (binary
    cross-entropy) + ``lambda_l1 * |y - G(x)|``; the discriminator's loss halved; each step
    updates D, then G against the updated D, as the reference implementation does.
    """

    loss_names = ("G_total", "G_adv", "L1", "D")
    generator_roles = ("G",)
    discriminator_roles = ("D",)
    validation_key = "val_l1"
    validation_mode = "min"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        m, crop = config.model, config.data.crop_size
        self.inputs, self.targets = layout(m.frames_per_image, m.input_frames, m.target_frames, m.direction)
        self.in_channels, self.out_channels = 3 * len(self.inputs), 3 * len(self.targets)
        self.depth = m.depth or networks.unet_depth(crop)
        if 2**self.depth > crop:
            raise UsageError(f"a U-Net of depth {self.depth} needs crops of at least {2 ** self.depth} px, got {crop}")
        weights = blend_weights(self.inputs, self.targets)
        if m.residual not in ("on", "off", "auto"):
            raise UsageError(f"residual {m.residual!r}: expected on, off or auto")
        between = any(is_crossfade(weights, k) for k in range(len(self.targets)))
        self.residual = m.residual == "on" or (m.residual == "auto" and between)
        self.G = networks.unet_generator(in_channels=self.in_channels, out_channels=self.out_channels,
                                         depth=self.depth, filters=m.filters, norm_kind=m.norm,
                                         dropout=m.dropout, blend=weights if self.residual else None, name="G")
        self.D = networks.patch_discriminator(in_channels=self.in_channels + self.out_channels,
                                              filters=m.disc_filters, n_layers=m.disc_layers, norm_kind=m.norm,
                                              name="D")
        self.nets = {"G": self.G, "D": self.D}
        for k, layer in enumerate(l for l in self.G.layers if isinstance(l, StatelessDropout)):
            layer.seed_fn = lambda k=k: seeding.derive(self.seed, seeding.DROPOUT, self.step, k)
        self.panel_titles = self._titles()

    def train_step(self, data):
        x, y = data
        m = self.run_config.model
        gan, reduce = self.gan, lambda per_sample: self.reduce(per_sample, x)  # noqa: E731
        with tf.GradientTape() as g_tape:
            fake = self.G(x, training=True)
            with tf.GradientTape() as d_tape:
                d_real, d_fake = self._real_and_fake_scores(tf.concat([x, y], -1),
                                                            tf.concat([x, tf.stop_gradient(fake)], -1))
                d_total = reduce(0.5 * (gan(d_real, True) + gan(d_fake, False)))
            with g_tape.stop_recording():
                finite_d = self.apply_gradients(self.d_optimizer, d_tape, d_total, self.discriminator_roles)
            g_adv = gan(self.D(tf.concat([x, fake], -1), training=True), True)
            l1 = losses.l1(fake, y)
            g_total = reduce(g_adv + m.lambda_l1 * l1)
        finite_g = self.apply_gradients(self.g_optimizer, g_tape, g_total, self.generator_roles)
        return self.record({"G_total": g_total, "G_adv": reduce(g_adv), "L1": reduce(l1), "D": d_total},
                           tf.logical_and(finite_g, finite_d))

    def _real_and_fake_scores(self, real, fake):
        """D's scores of the real and the fake pairs: in one call on a doubled batch (faster;
        the same result, since every norm but batch norm is per sample), or two with batch norm."""
        if self.run_config.model.norm == "batch":
            return self.D(real, training=True), self.D(fake, training=True)
        return tf.split(self.D(tf.concat([real, fake], 0), training=True), 2)

    def generators(self) -> dict:
        return {"translate": (self.G, self.in_channels)}

    def down_factor(self) -> int:
        return 2**self.depth

    # --- pictures ------------------------------------------------------------------------

    def _titles(self) -> tuple[str, ...]:
        if len(self.inputs) == len(self.targets) == 1:
            return ("input", "generated", "real")
        return (*(f"input {i}" for i in self.inputs), *(f"generated {i}" for i in self.targets),
                *(f"real {i}" for i in self.targets))

    def sample_rows(self, batch):
        x, y = batch
        fake = self.G(x, training=False).numpy()
        return [[*frames_of(x[i]), *frames_of(fake[i]), *frames_of(y[i])] for i in range(len(x))]

    def sequences(self, batch) -> list[tuple[list, list]]:
        """Per sample, (generated, real) sequences of every frame in time order, the input
        frames in their places in both; empty for a plain pair (nothing to animate)."""
        x, y = batch
        if len(self.inputs) + len(self.targets) <= 2:
            return []
        fake = self.G(x, training=False).numpy()
        out = []
        for i in range(len(x)):
            given = dict(zip(self.inputs, frames_of(x[i])))
            order = sorted((*self.inputs, *self.targets))
            made = {**given, **dict(zip(self.targets, frames_of(fake[i])))}
            real = {**given, **dict(zip(self.targets, frames_of(y[i])))}
            out.append(([made[k] for k in order], [real[k] for k in order]))
        return out

    def validate(self, held_out) -> dict:
        """Mean L1 between G(x) and y on held-out pairs, in [0, 1] units (lower is better)."""
        x, y = held_out
        errors = [float(np.mean(np.abs(self.G(x[i: i + 1], training=False) - y[i: i + 1]))) / 2.0
                  for i in range(len(x))]
        return {self.validation_key: float(np.mean(errors))}


def frames_of(stack: np.ndarray) -> list[np.ndarray]:
    """A (H, W, 3K) stack as K RGB frames."""
    return [stack[..., 3 * k: 3 * k + 3] for k in range(stack.shape[-1] // 3)]

