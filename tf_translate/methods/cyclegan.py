"""CycleGAN: unpaired translation between two domains."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tf_translate.config import opt
from tf_translate.methods.base import TranslationModel
from tf_translate.nn import losses, networks
from tf_translate.nn.layers import NORMS, ImagePool
from tf_translate.nn.losses import GAN_LOSSES
from tf_translate.registry import register


@dataclasses.dataclass(frozen=True)
class CycleGANConfig:
    filters: int = dataclasses.field(default=64, metadata={"help": "generator filters of the first layer (ngf)"})
    n_blocks: int = dataclasses.field(default=9, metadata={"help": "residual blocks: 9 for 256px, 6 for 128px"})
    disc_filters: int = dataclasses.field(default=64, metadata={"help": "discriminator filters of the first layer"})
    disc_layers: int = dataclasses.field(default=3, metadata={"help": "PatchGAN depth (3 = 70x70 receptive field)"})
    norm: str = opt("instance", "normalisation layers", NORMS)
    upsample: str = opt("transpose", "generator up-sampling: the paper's transposed convolutions, or a nearest "
                        "resize then a 3x3 convolution (no checkerboard: Odena et al. 2016)", networks.UPSAMPLE)
    gan_loss: str = opt("lsgan", "adversarial loss", GAN_LOSSES)
    lambda_cycle: float = dataclasses.field(default=10.0, metadata={"help": "weight of the cycle L1 loss"})
    lambda_identity: float = dataclasses.field(
        default=0.5, metadata={"help": "identity L1 weight as a fraction of lambda_cycle (0.5 -> 5.0)"})
    pool_size: int = dataclasses.field(default=50, metadata={"help": "history pool of generated images (0 = off)"})


@register("cyclegan", adam="pytorch", config=CycleGANConfig, data_kind="unpaired", bfloat16=True,
          demo={"data": {"load_size": 72, "crop_size": 64, "domains": ("cartoon", "photo")},
                "model": {"filters": 32, "n_blocks": 6, "disc_filters": 32},
                "train": {"epochs": 4, "decay_epochs": 3, "sample_every": 60, "checkpoint_every": 60,
                          "validate_every": 60}},
          demo_result="420 steps in 2 min (7 min 37 s on an AVX2 machine in float32); not yet a translation: "
                      "the translations are blotchy with a checkerboard, KID x1000 to the target 305 and 292 "
                      "against 192 and 193 for the untranslated images (docs/gallery)")
class CycleGAN(TranslationModel):
    """CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017, arXiv 1703.10593).

    G: X -> Y and F: Y -> X, ResNet generators; D_X and D_Y 70x70 PatchGANs; least-squares
    GAN loss, cycle consistency ``lambda_cycle * (|F(G(x)) - x| + |G(F(y)) - y|)``, identity
    ``lambda_identity * lambda_cycle * (|G(y) - y| + |F(x) - x|)``; discriminator loss halved;
    discriminators see a pool of the last ``pool_size`` generated images. X is domain A.
    """

    loss_names = ("G_total", "G_adv", "cycle", "identity", "D_X", "D_Y")
    generator_roles = ("G", "F")
    discriminator_roles = ("D_X", "D_Y")
    validation_key = "val_cycle_l1"
    validation_mode = "min"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        m, crop = config.model, config.data.crop_size
        # instance norms without scale and shift, as the reference's InstanceNorm2d(affine=False)
        gen = lambda name: networks.resnet_generator(  # noqa: E731
            filters=m.filters, n_blocks=m.n_blocks, norm_kind=m.norm, upsample=m.upsample, affine=False, name=name)
        disc = lambda name: networks.patch_discriminator(  # noqa: E731
            filters=m.disc_filters, n_layers=m.disc_layers, norm_kind=m.norm, affine=False, name=name)
        self.G, self.F = gen("G"), gen("F")
        self.D_X, self.D_Y = disc("D_X"), disc("D_Y")
        self.nets = {"G": self.G, "F": self.F, "D_X": self.D_X, "D_Y": self.D_Y}
        self.pool_x = ImagePool(m.pool_size, (crop, crop, 3), seed=self.seed * 2, name="pool_X")
        self.pool_y = ImagePool(m.pool_size, (crop, crop, 3), seed=self.seed * 2 + 1, name="pool_Y")
        a, b = config.data.domains
        self.panel_titles = ("input", "translated", "reconstructed")
        self.domain_names = (a, b)

    def train_step(self, data):
        real_x, real_y = self.static_batch(data)
        m = self.run_config.model
        gan, reduce = self.gan, lambda per_sample: self.reduce(per_sample, real_x)  # noqa: E731
        with tf.GradientTape(persistent=True) as tape:
            fake_y = self.G(real_x, training=True)
            rec_x = self.F(fake_y, training=True)
            fake_x = self.F(real_y, training=True)
            rec_y = self.G(fake_x, training=True)
            g_adv = gan(self.D_Y(fake_y, training=True), True) + gan(self.D_X(fake_x, training=True), True)
            cycle = losses.l1(rec_x, real_x) + losses.l1(rec_y, real_y)
            g_total = g_adv + m.lambda_cycle * cycle
            if m.lambda_identity > 0:
                identity = losses.l1(self.G(real_y, training=True), real_y) + losses.l1(
                    self.F(real_x, training=True), real_x)
                g_total += m.lambda_identity * m.lambda_cycle * identity
            else:
                identity = tf.zeros_like(cycle)
            g_total = reduce(g_total)

            pooled_y = tf.stop_gradient(self.pool_y.query(fake_y, self.step))
            pooled_x = tf.stop_gradient(self.pool_x.query(fake_x, self.step))
            d_y = 0.5 * (gan(self.D_Y(real_y, training=True), True) + gan(self.D_Y(pooled_y, training=True), False))
            d_x = 0.5 * (gan(self.D_X(real_x, training=True), True) + gan(self.D_X(pooled_x, training=True), False))
            d_total = reduce(d_x + d_y)
        finite_g = self.apply_gradients(self.g_optimizer, tape, g_total, self.generator_roles)
        finite_d = self.apply_gradients(self.d_optimizer, tape, d_total, self.discriminator_roles)
        del tape
        return self.record({"G_total": g_total, "G_adv": reduce(g_adv), "cycle": reduce(cycle),
                            "identity": reduce(identity), "D_X": reduce(d_x), "D_Y": reduce(d_y)},
                           tf.logical_and(finite_g, finite_d))

    def generators(self) -> dict:
        a, b = self.domain_names
        return {f"{a}2{b}": (self.G, 3), f"{b}2{a}": (self.F, 3)}

    def down_factor(self) -> int:
        return 4

    def sample_rows(self, batch):
        x, y = batch
        fake_y, fake_x = self.G(x, training=False), self.F(y, training=False)
        rec_x, rec_y = self.F(fake_y, training=False), self.G(fake_x, training=False)
        rows = []
        for i in range(len(x)):
            rows.append([x[i], fake_y[i].numpy(), rec_x[i].numpy()])
            rows.append([y[i], fake_x[i].numpy(), rec_y[i].numpy()])
        return rows

    def validate(self, held_out) -> dict:
        """Cycle-consistency L1 on held-out images of both domains (lower is better).

        Unpaired data has no ground truth for G(x); how well F undoes G on unseen images is
        the measure that needs none (FID/KID need more images than these sets hold).
        """
        x, y = held_out
        errors = []
        for real, there, back in ((x, self.G, self.F), (y, self.F, self.G)):
            for i in range(len(real)):
                image = real[i: i + 1]
                errors.append(float(np.mean(np.abs(back(there(image, training=False), training=False) - image))))
        return {self.validation_key: float(np.mean(errors))}
