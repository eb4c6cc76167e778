"""pix2pix: paired translation with a conditional GAN, for any number of stacked channels."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tf_translate import seeding
from tf_translate.config import opt
from tf_translate.data.frames import blend_weights, is_crossfade, is_interpolation, layout
from tf_translate.errors import UsageError
from tf_translate.methods.base import TranslationModel
from tf_translate.nn import features, flow, losses, networks
from tf_translate.nn.layers import NORMS, StatelessDropout
from tf_translate.registry import register

GENERATORS = ("auto", "unet", "flow")


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig:
    filters: int = opt(64, "generator filters of the first U-Net level (C64; the widest levels 8 times as many)")
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
    generator: str = opt("auto", "unet: the paper's U-Net; flow: for frame interpolation, flows and visibility "
                         "maps that warp the two input frames (Super SloMo's synthesis on block-matching "
                         "flows refined coarse to fine; docs/methods/pix2pix.md); auto: flow when the targets "
                         "lie between two input frames (measured better than the U-Net, the cross-fade and "
                         "ffmpeg there), else unet", GENERATORS)
    flow_filters: int = opt(32, "flow generator: filters of the finest flow block and of the refinement U-Net")
    lambda_gan: float | None = opt(None, "weight of the adversarial loss; default 1 with the U-Net (the paper), 0 "
                                   "with the flow generator (Super SloMo has none; 1 measured no better, docs/methods)")
    lambda_warp: float = opt(50.0, "flow generator: L1 of each input warped onto the other and onto every "
                             "target (Super SloMo's 0.4 against its reconstruction's 0.8, here against "
                             "--lambda-l1 100)")
    lambda_perceptual: float = opt(0.005, "flow generator: MSE of VGG-16 conv4_3 features of the frames "
                                   "(Super SloMo's weight)")
    lambda_smooth: float = opt(1.0, "flow generator: total variation of the bidirectional flows in pixels "
                               "(Super SloMo's weight)")


@register("pix2pix", adam="pytorch", evaluation="paired", config=Pix2PixConfig, data_kind="paired", bfloat16=True,
          demo={"data": {"load_size": 132, "crop_size": 128},
                "model": {"filters": 32, "disc_filters": 32},
                # the flow generator's held-out scores peak about here, then drift (docs/methods/pix2pix.md)
                "train": {"epochs": 1, "decay_epochs": 1, "sample_every": 92, "checkpoint_every": 92,
                          "validate_every": 46}},
          demo_result="frame interpolation of the embedded clip with the flow generator, 184 steps in 2 min 21 s "
                      "(3 min 28 s with export and --evaluate); on the clip's 4 slow held-out windows 31.15 dB PSNR "
                      "over the five generated frames, level with the cross-fade's 31.19 and ffmpeg minterpolate's "
                      "31.24; on unseen footage (fox.mp4) the shipped model of this recipe beats both on every frame "
                      "(docs/methods/pix2pix.md)")
class Pix2Pix(TranslationModel):
    """pix2pix (Isola, Zhu, Zhou, Efros, CVPR 2017, arXiv 1611.07004).

    G: a U-Net from the stacked input frames to the stacked target frames; D: a 70x70
    PatchGAN on the channel concatenation (x, y). Losses: conditional GAN (binary
    cross-entropy) + ``lambda_l1 * |y - G(x)|``; the discriminator's loss halved; each step
    updates D, then G against the updated D, as the reference implementation does.

    ``--generator flow`` (frame interpolation only): ``nn.flow``'s generator, trained with
    Super SloMo's losses (``_flow_step``), the GAN only with ``lambda_gan`` > 0.
    """

    loss_names = ("G_total", "G_adv", "L1", "D")
    flow_loss_names = ("G_total", "L1", "warp", "smooth", "perceptual", "G_adv", "D")
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
        if 2**self.depth > crop and m.generator != "flow":
            raise UsageError(f"a U-Net of depth {self.depth} needs crops of at least {2 ** self.depth} px, got {crop}")
        weights = blend_weights(self.inputs, self.targets)
        if m.residual not in ("on", "off", "auto"):
            raise UsageError(f"residual {m.residual!r}: expected on, off or auto")
        between = any(is_crossfade(weights, k) for k in range(len(self.targets)))
        self.residual = m.residual == "on" or (m.residual == "auto" and between)
        self.flow = self._uses_flow(m.generator, weights)
        self.lambda_gan = m.lambda_gan if m.lambda_gan is not None else (0.0 if self.flow else 1.0)
        if self.flow:
            self.times = [float(weights[1, k]) for k in range(len(self.targets))]
            self.G, self.G_parts = flow.flow_generator(times=self.times, filters=m.flow_filters, name="G")
            self.depth = 0
            if crop % flow.down_factor():
                raise UsageError(f"the flow generator needs crops that are multiples of {flow.down_factor()} px, "
                                 f"got {crop}")
            self.vgg = (features.vgg16(("conv4_3",), name="vgg16_conv4_3") if m.lambda_perceptual > 0 else None)
            self.loss_names = self.flow_loss_names if self.lambda_gan > 0 else self.flow_loss_names[:-2]
            self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_names}
        else:
            self.G = networks.unet_generator(in_channels=self.in_channels, out_channels=self.out_channels,
                                             depth=self.depth, filters=m.filters, max_filters=8 * m.filters,
                                             norm_kind=m.norm, dropout=m.dropout,
                                             blend=weights if self.residual else None, name="G")
        self.D = networks.patch_discriminator(in_channels=self.in_channels + self.out_channels,
                                              filters=m.disc_filters, n_layers=m.disc_layers, norm_kind=m.norm,
                                              name="D")
        self.nets = {"G": self.G, "D": self.D}
        for k, layer in enumerate(l for l in self.G.layers if isinstance(l, StatelessDropout)):
            layer.seed_fn = lambda k=k: seeding.derive(self.seed, seeding.DROPOUT, self.step, k)
        self.panel_titles = self._titles()

    def _uses_flow(self, generator: str, weights) -> bool:
        """Whether G is the flow generator, which interpolates (two input frames, every target
        between them): asked for, or ``auto`` on such a layout."""
        if generator not in GENERATORS:
            raise UsageError(f"generator {generator!r}: expected one of {', '.join(GENERATORS)}")
        interpolation = is_interpolation(weights)
        if generator == "flow" and not interpolation:
            raise UsageError(f"the flow generator interpolates between two input frames; inputs {self.inputs} and "
                             f"targets {self.targets} are not that (use --generator unet)")
        return generator == "flow" or (generator == "auto" and interpolation)

    def train_step(self, data):
        if self.flow:
            return self._flow_step(data)
        x, y = data
        m = self.run_config.model
        gan, reduce = self.gan, lambda per_sample: self.reduce(per_sample, x)  # noqa: E731
        with tf.GradientTape() as g_tape:
            fake = self.G(x, training=True)
            with g_tape.stop_recording():
                finite_d, d_total = self._discriminator_step(x, y, fake)
            g_adv = gan(self.D(tf.concat([x, fake], -1), training=True), True)
            l1 = losses.l1(fake, y)
            g_total = reduce(self.lambda_gan * g_adv + m.lambda_l1 * l1)
        finite_g = self.apply_gradients(self.g_optimizer, g_tape, g_total, self.generator_roles)
        return self.record({"G_total": g_total, "G_adv": reduce(g_adv), "L1": reduce(l1), "D": d_total},
                           tf.logical_and(finite_g, finite_d))

    def _flow_step(self, data):
        """The flow generator's step: Super SloMo's losses (reconstruction L1, perceptual, warping,
        smoothness), plus pix2pix's conditional GAN when ``lambda_gan`` > 0 (D updated first)."""
        x, y = data
        m = self.run_config.model
        reduce = lambda per_sample: self.reduce(per_sample, x)  # noqa: E731
        with tf.GradientTape() as g_tape:
            parts = self.G_parts(x, training=True)
            fake = parts["frames"]
            terms = {"L1": losses.l1(fake, y), "warp": self._warp_loss(x, y, parts),
                     "smooth": losses.flow_smoothness(parts["flow_01"]) + losses.flow_smoothness(parts["flow_10"])}
            terms["perceptual"] = self._perceptual(fake, y) if self.vgg is not None else tf.zeros_like(terms["L1"])
            g_total = (m.lambda_l1 * terms["L1"] + m.lambda_warp * terms["warp"] + m.lambda_smooth * terms["smooth"]
                       + m.lambda_perceptual * terms["perceptual"])
            finite_d, d_total = tf.constant(True), tf.constant(0.0)
            if self.lambda_gan > 0:
                with g_tape.stop_recording():
                    finite_d, d_total = self._discriminator_step(x, y, fake)
                terms["G_adv"] = self.gan(self.D(tf.concat([x, fake], -1), training=True), True)
                g_total += self.lambda_gan * terms["G_adv"]
            g_total = reduce(g_total)
        finite_g = self.apply_gradients(self.g_optimizer, g_tape, g_total, self.generator_roles)
        logs = {"G_total": g_total, **{name: reduce(v) for name, v in terms.items()}, "D": d_total}
        return self.record({name: logs[name] for name in self.loss_names}, tf.logical_and(finite_g, finite_d))

    def _warp_loss(self, x, y, parts):
        """Super SloMo's warping loss, per sample: each input warped onto the other by the
        bidirectional flows, and onto every target by the linear-motion flows."""
        frame0, frame1 = x[..., :3], x[..., 3:]
        loss = (losses.l1(flow.backward_warp(frame1, parts["flow_01"]), frame0)
                + losses.l1(flow.backward_warp(frame0, parts["flow_10"]), frame1))
        for k, t in enumerate(self.times):
            flow_t0, flow_t1 = flow.linear_motion_flows(parts["flow_01"], parts["flow_10"], t)
            target = y[..., 3 * k: 3 * k + 3]
            loss += (losses.l1(flow.backward_warp(frame0, flow_t0), target)
                     + losses.l1(flow.backward_warp(frame1, flow_t1), target)) / len(self.times)
        return loss

    def _perceptual(self, fake, y):
        """MSE of VGG-16 conv4_3 features of every generated frame against the real one, per sample."""
        k = len(self.times)
        frames = lambda v: tf.concat(tf.split(v, k, -1), 0)  # noqa: E731  (K B, H, W, 3)
        found = self.vgg(tf.concat([frames(fake), tf.stop_gradient(frames(y))], 0), training=False)["conv4_3"]
        made, real = tf.split(tf.cast(found, tf.float32), 2)
        per_frame = losses.mse(made, real)  # (K B,)
        return tf.reduce_mean(tf.stack(tf.split(per_frame, k, 0)), 0)

    def _discriminator_step(self, x, y, fake):
        """D's update on the real pair (x, y) and the generated one (x, G(x)), its loss halved;
        returns (whether its gradients were finite, the loss)."""
        with tf.GradientTape() as d_tape:
            d_real, d_fake = self._real_and_fake_scores(tf.concat([x, y], -1),
                                                        tf.concat([x, tf.stop_gradient(fake)], -1))
            d_total = self.reduce(0.5 * (self.gan(d_real, True) + self.gan(d_fake, False)), x)
        return self.apply_gradients(self.d_optimizer, d_tape, d_total, self.discriminator_roles), d_total

    def _real_and_fake_scores(self, real, fake):
        """D's scores of the real and the fake pairs: in one call on a doubled batch (faster;
        the same result, since every norm but batch norm is per sample), or two with batch norm
        (the fake first, as the reference code: its running statistics come out the same)."""
        if self.run_config.model.norm == "batch":
            fake_scores = self.D(fake, training=True)
            return self.D(real, training=True), fake_scores
        return tf.split(self.D(tf.concat([real, fake], 0), training=True), 2)

    def generators(self) -> dict:
        return {"translate": (self.G, self.in_channels)}

    def down_factor(self) -> int:
        return flow.down_factor() if self.flow else 2**self.depth

    # --- pictures ------------------------------------------------------------------------

    def _titles(self) -> tuple[str, ...]:
        if len(self.inputs) == len(self.targets) == 1:
            return ("input", "generated", "real")
        shown = ()
        if self.flow:  # two inputs
            middle, (first, last) = self.targets[len(self.targets) // 2], self.inputs
            shown = (f"flow {middle}>{first}", f"flow {middle}>{last}", f"visible {middle}<{first}")
        return (*(f"input {i}" for i in self.inputs), *(f"generated {i}" for i in self.targets),
                *(f"real {i}" for i in self.targets), *shown)

    def _pictures(self, x) -> tuple[np.ndarray, list]:
        """G(x), and with the flow generator, per sample and target, its pictures of the flows
        from the target to both inputs (colour-coded on one scale per sample) and of the
        visibility of the first input (white = seen from it, black = from the second)."""
        if not self.flow:
            return self.G(x, training=False).numpy(), [[] for _ in range(len(x))]
        parts = {k: v.numpy() for k, v in self.G_parts(x, training=False).items()}
        shown = []
        for i in range(len(x)):
            t0, t1 = (frames_of(parts[name][i], 2) for name in ("flow_t0", "flow_t1"))
            reach = max(float(np.hypot(f[..., 0], f[..., 1]).max()) for f in (*t0, *t1))
            visible = [np.repeat(parts["visibility"][i][..., k: k + 1] * 2.0 - 1.0, 3, -1) for k in range(len(t0))]
            shown.append([(flow.flow_colours(a, reach), flow.flow_colours(b, reach), v)
                          for a, b, v in zip(t0, t1, visible)])
        return parts["frames"], shown

    def sample_rows(self, batch):
        x, y = batch
        fake, shown = self._pictures(x)
        middle = len(self.targets) // 2
        return [[*frames_of(x[i]), *frames_of(fake[i]), *frames_of(y[i]), *(shown[i][middle] if shown[i] else ())]
                for i in range(len(x))]

    @property
    def sequence_titles(self) -> tuple[str, ...]:
        return ("generated", "real", "flow to first", "flow to last", "visible from first") if self.flow else (
            "generated", "real")

    def sequences(self, batch) -> list[tuple[list, ...]]:
        """Per sample, the generated and the real sequence of every frame in time order, the
        input frames in their places in both (and with the flow generator, its flows and
        visibility maps, blank at the inputs); empty for a plain pair (nothing to animate)."""
        x, y = batch
        if len(self.inputs) + len(self.targets) <= 2:
            return []
        fake, shown = self._pictures(x)
        order = sorted((*self.inputs, *self.targets))
        blank = np.ones_like(x[0][..., :3])
        out = []
        for i in range(len(x)):
            given = dict(zip(self.inputs, frames_of(x[i])))
            made = {**given, **dict(zip(self.targets, frames_of(fake[i])))}
            real = {**given, **dict(zip(self.targets, frames_of(y[i])))}
            columns = [[made[k] for k in order], [real[k] for k in order]]
            if shown[i]:
                extra = {**{k: (blank, blank, blank) for k in self.inputs}, **dict(zip(self.targets, shown[i]))}
                columns += [[extra[k][c] for k in order] for c in range(3)]
            out.append(tuple(columns))
        return out

    def validate(self, held_out) -> dict:
        """Mean L1 between G(x) and y on held-out pairs, in [0, 1] units (lower is better)."""
        x, y = held_out
        errors = [float(np.mean(np.abs(self.G(x[i: i + 1], training=False) - y[i: i + 1]))) / 2.0
                  for i in range(len(x))]
        return {self.validation_key: float(np.mean(errors))}


def frames_of(stack: np.ndarray, channels: int = 3) -> list[np.ndarray]:
    """A (H, W, C K) stack as K frames of ``channels`` (RGB frames; flows: 2)."""
    return [stack[..., channels * k: channels * (k + 1)] for k in range(stack.shape[-1] // channels)]

