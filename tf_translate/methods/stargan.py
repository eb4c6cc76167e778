"""StarGAN: one generator for many domains."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tf_translate import replicas, seeding
from tf_translate.config import opt
from tf_translate.errors import UsageError
from tf_translate.methods.base import DomainLabels, TranslationModel
from tf_translate.nn import losses, networks
from tf_translate.nn.layers import label_planes
from tf_translate.registry import register

TARGET_LABELS, GP_MIX = 11, 12  # seeding purposes: the target domains, the penalty's mixing weights
GENERATORS = ("stargan", "fast_style")
G_LOSSES, D_LOSSES = ("G_total", "G_adv", "G_cls", "rec"), ("D_total", "D_adv", "D_cls", "gp")


@dataclasses.dataclass(frozen=True)
class StarGANConfig:
    generator: str = opt("stargan", "stargan (c7s1-64, d128, d256, residual blocks, u128, u64, c7s1-3, zero "
                                    "padding, 4x4 sampling) | fast_style (Johnson's transform network, as the "
                                    "founding write-up used: 9x9 outer and 3x3 sampling convolutions, reflection "
                                    "padding; his sizes with --filters 32 --n-blocks 5); the label enters as "
                                    "planes beside the image", GENERATORS)
    filters: int = opt(64, "generator filters of the first layer")
    n_blocks: int = opt(6, "residual blocks of the generator")
    disc_filters: int = opt(64, "discriminator filters of the first layer")
    disc_layers: int = opt(6, "4x4 stride-2 discriminator layers; the image size must be a multiple of 2^layers")
    lambda_cls: float = opt(1.0, "weight of the domain classification losses")
    lambda_rec: float = opt(10.0, "weight of the reconstruction L1 |x - G(G(x, c), c')|")
    lambda_gp: float = opt(10.0, "weight of WGAN-GP's gradient penalty")
    n_critic: int = opt(5, "discriminator updates per generator update")
    attrs: tuple[str, ...] = opt((), "attributes of an attribute table (--data TABLE) to translate, e.g. "
                                     "Black_Hair,Blond_Hair,Brown_Hair,Male,Young: multi-label, sigmoid "
                                     "cross-entropy (default: all the table's)")


@register("stargan", adam="pytorch", config=StarGANConfig, data_kind="domains", evaluation="domains",
          overrides={"data": {"load_size": 128, "crop_size": 128, "batch_size": 16, "domains": ()},
                     "train": {"lr": 1e-4, "beta_1": 0.5, "beta_2": 0.999, "epochs": 10, "decay_epochs": 10}},
          demo={"data": {"load_size": 72, "crop_size": 64, "batch_size": 8},
                "model": {"filters": 32, "disc_filters": 32},
                "train": {"epochs": 30, "decay_epochs": 15, "sample_every": 105, "checkpoint_every": 105,
                          "validate_every": 105}},
          demo_result="315 steps in 3 min 50 s; not yet a translation: every output is the same checkerboard "
                      "pattern whatever its input and target, read as its target texture by a domain classifier "
                      "33 % of the time (chance) (docs/gallery)")
class StarGAN(TranslationModel):
    """StarGAN (Choi, Choi, Kim, Ha, Kim, Choo, CVPR 2018, arXiv 1711.09020).

    G(x, c): the target label c tiled into planes beside the image; D: six 4x4 stride-2
    convolutions without norm, heads D_src (real/fake per patch) and D_cls (domain logits).
    D: -D_src(x) + D_src(G(x, c)) + ``lambda_gp`` GP + ``lambda_cls`` cls(D_cls(x), c');
    G, every ``n_critic``-th step: -D_src(G(x, c)) + ``lambda_cls`` cls(D_cls(G(x, c)), c) +
    ``lambda_rec`` |x - G(G(x, c), c')|, c' the original label. Single-label domains use
    softmax cross-entropy, attributes sigmoid. Targets: a random other domain (single-label),
    or the labels of the batch shuffled (attributes, as StarGAN's code does).
    """

    loss_names = G_LOSSES + D_LOSSES
    generator_roles = ("G",)
    discriminator_roles = ("D",)
    validation_key = "val_rec_l1"
    validation_mode = "min"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        m, data = config.model, config.data
        if m.generator not in GENERATORS:
            raise UsageError(f"--generator {m.generator!r}: expected one of {', '.join(GENERATORS)}")
        if m.n_critic < 1:
            raise UsageError(f"--n-critic must be at least 1, not {m.n_critic}")
        self.domain_names = tuple(data.domains)
        self.multi_label = bool(m.attrs)  # attributes (set from the table's by the data)
        n = len(self.domain_names)
        shape = dict(filters=m.filters, n_blocks=m.n_blocks, conditions=n, condition_at="input")
        if m.generator == "stargan":
            shape.update(outer_kernel=7, sampling_kernel=4, pad="zero", use_bias=False)  # as its model.py
        else:
            shape.update(outer_kernel=9)
        self.G = networks.resnet_generator(**shape, name="G")
        self.D = networks.stargan_discriminator(image_size=data.crop_size, n_domains=n, filters=m.disc_filters,
                                                n_layers=m.disc_layers, name="D")
        self.nets = {"G": self.G, "D": self.D}
        self.generator_every = m.n_critic
        self.panel_titles = ("input", *self.domain_names)

    def call(self, x, training=False):
        """G(x) to the first domain."""
        x = tf.convert_to_tensor(x)
        return self.translate(x, tf.one_hot(tf.zeros(tf.shape(x)[:1], tf.int32), len(self.domain_names)), training)

    def translate(self, x, labels, training=False):
        """G(x, c) for label vectors ``labels`` (batch, domains)."""
        return self.G([x, label_planes(tf.cast(labels, x.dtype), x)], training=training)

    def target_labels(self, labels):
        """Targets for a batch: a random other domain each (single-label), or the batch's own
        labels in a random order (attributes)."""
        key = seeding.derive(self.seed, TARGET_LABELS, self.step)
        n = tf.shape(labels)[0]
        if self.multi_label:  # a permutation of the global batch's labels
            every = replicas.gather(labels)
            order = tf.argsort(tf.random.stateless_uniform(tf.shape(every)[:1], key))
            return replicas.local_rows(tf.gather(every, order), n)
        k = len(self.domain_names)
        shift = replicas.draw(lambda m: tf.random.stateless_uniform([m], key, 1, k, dtype=tf.int32), n)
        return tf.one_hot((tf.argmax(labels, axis=1, output_type=tf.int32) + shift) % k, k)

    def mixing_weights(self, x):
        """The gradient penalty's weights of the real images, one uniform number per sample."""
        key = seeding.derive(self.seed, GP_MIX, self.step)
        return replicas.draw(lambda n: tf.random.stateless_uniform([n], key), tf.shape(x)[0])

    def classification(self, logits, labels):
        return losses.domain_classification(logits, labels, self.multi_label)

    def make_train_function(self, force=False):
        """Two train functions, with and without G's update, and the n_critic schedule chosen
        between them on the host each step. Not a ``tf.cond`` around G's update: it would hold
        the gradient all-reduce, which tf.distribute cannot run inside control flow, and XLA on
        CPU ran the convolutions inside that conditional many times slower (a 64 px step: 4.2 s
        with n_critic 5, 17.7 s with 1, against 0.6 s for D's update alone)."""
        if self.train_function is not None and not force:
            return self.train_function
        both = self._make_function(lambda data: self.train_step(data, update_g=True))
        critic_only = self._make_function(lambda data: self.train_step(data, update_g=False))
        self.train_function = lambda iterator: (both if self.g_due() else critic_only)(iterator)
        return self.train_function

    def g_due(self) -> bool:
        """G's update comes after every n_critic-th of D's, as solver.py's ``(i + 1) % n_critic == 0``."""
        return (int(self.step.numpy()) + 1) % self.run_config.model.n_critic == 0

    def discriminator_update(self, x, c_org, c_trg, alpha):
        m = self.run_config.model
        fake = self.translate(x, c_trg, training=True)  # outside the tape: D's loss needs no gradient of G
        with tf.GradientTape() as tape:
            src_real, cls_real = self.D(x, training=True)
            src_fake, _ = self.D(fake, training=True)
            adv = losses.gan_loss("wgan", src_real, True) + losses.gan_loss("wgan", src_fake, False)
            cls = self.classification(cls_real, c_org)
            gp = losses.gradient_penalty(lambda images: self.D(images, training=True)[0], x, fake, alpha)
            total = self.reduce(adv + m.lambda_cls * cls + m.lambda_gp * gp, x)
        finite = self.apply_gradients(self.d_optimizer, tape, total, self.discriminator_roles)
        return finite, dict(zip(D_LOSSES, (total, *(self.reduce(v, x) for v in (adv, cls, gp)))))

    def generator_update(self, x, c_org, c_trg):
        m = self.run_config.model
        with tf.GradientTape() as tape:
            fake = self.translate(x, c_trg, training=True)
            src, cls = self.D(fake, training=True)
            adv, cls = losses.gan_loss("wgan", src, True), self.classification(cls, c_trg)
            rec = losses.l1(self.translate(fake, c_org, training=True), x)
            total = self.reduce(adv + m.lambda_cls * cls + m.lambda_rec * rec, x)
        finite = self.apply_gradients(self.g_optimizer, tape, total, self.generator_roles)
        return finite, dict(zip(G_LOSSES, (total, *(self.reduce(v, x) for v in (adv, cls, rec)))))

    def train_step(self, data, update_g: bool | None = None):
        """D's update, then G's if ``update_g`` (None, in an eager call: as the n_critic schedule says)."""
        x, c_org = data
        c_trg = self.target_labels(c_org)
        finite_d, d_losses = self.discriminator_update(x, c_org, c_trg, self.mixing_weights(x))
        if update_g is None:
            update_g = self.g_due()
        if update_g:
            finite_g, g_losses = self.generator_update(x, c_org, c_trg)
        else:
            finite_g, g_losses = tf.constant(True), {k: tf.zeros([]) for k in G_LOSSES}
        # G's trackers average over the steps that updated G only
        return self.record({**d_losses, **g_losses}, tf.logical_and(finite_d, finite_g),
                           weights={k: tf.constant(float(update_g)) for k in g_losses})

    def generators(self) -> dict:
        return {"translate": (self.G, 3)}

    def down_factor(self) -> int:
        return 4

    def domain_labels(self):

        data = self.run_config.data
        return DomainLabels(self.domain_names, self.multi_label, self.D, data.load_size, data.crop_size)

    def sample_rows(self, batch):
        x, labels = batch
        rows = []
        for i in range(len(x)):
            targets = columns(self.multi_label, labels[i])
            outs = self.translate(tf.repeat(x[i: i + 1], len(targets), axis=0), targets).numpy()
            rows.append([x[i], *outs])
        return rows

    def validate(self, held_out) -> dict:
        """On held-out images translated to every domain: the reconstruction L1 back to the
        original label (lower is better), and how often D_cls names the target."""
        x, labels = held_out
        errors, hits = [], []
        for i in range(len(x)):
            targets = columns(self.multi_label, labels[i])
            image = tf.repeat(x[i: i + 1], len(targets), axis=0)
            fake = self.translate(image, targets)
            back = self.translate(fake, tf.repeat(labels[i: i + 1], len(targets), axis=0))
            errors.append(float(tf.reduce_mean(tf.abs(back - image))))
            logits = self.D(fake)[1].numpy()
            if self.multi_label:
                hits.append(float(np.mean((logits > 0) == (targets > 0))))
            else:
                hits.append(float(np.mean(np.argmax(logits, 1) == np.arange(len(targets)))))
        return {self.validation_key: float(np.mean(errors)), "val_target_accuracy": float(np.mean(hits))}


def columns(multi_label: bool, label: np.ndarray) -> np.ndarray:
    """Target labels, one per domain, for an input of ``label``: each domain (single-label),
    or the input's attributes with that one switched (attributes)."""
    one_hot = np.eye(len(label), dtype=np.float32)
    return np.where(one_hot > 0, 1.0 - label, label).astype(np.float32) if multi_label else one_hot
