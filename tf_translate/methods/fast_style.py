"""Fast style transfer: a feed-forward transform network trained with perceptual losses."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tf_translate import replicas, seeding
from tf_translate.config import opt
from tf_translate.data import photos
from tf_translate.methods.base import TranslationModel
from tf_translate.nn import networks, perceptual
from tf_translate.nn.layers import NORMS, label_planes
from tf_translate.registry import register

STYLE_CHOICE = 7  # seeding purpose: which style a training sample is stylised in


@dataclasses.dataclass(frozen=True)
class FastStyleConfig:
    style: tuple[str, ...] | None = opt(None, "style image(s), comma-separated; several train one conditional "
                                              "multi-style network (Yanai & Tanno 2017). Default: scikit-image's "
                                              "ihc.png")
    style_size: int | None = opt(None, "longer side the style image is scaled to for its Gram matrices "
                                       "(default: the crop size); smaller = larger strokes")
    filters: int = opt(32, "filters of the first layer (c9s1-32)")
    n_blocks: int = opt(5, "residual blocks of 128 filters at 1/4 size")
    norm: str = opt("instance", f"{' | '.join(NORMS)}: instance (Ulyanov et al.) improves on the paper's batch", NORMS)
    upsample: str = opt("resize", "resize (nearest 2x resize + 3x3 conv: no checkerboard) | transpose (the "
                                  "paper's fractionally strided convolutions)", networks.UPSAMPLE)
    content_weight: float = opt(1.0, "weight of the content loss at relu2_2 (Johnson's code: 1)")
    style_weight: float = opt(1e-4, "weight of the style loss at relu1_2, relu2_2, relu3_3, relu4_3 (the paper's "
                                    "squared Frobenius norms; Johnson's code takes their mean over the C x C "
                                    "entries with weight 5, which on these layers and photos amounts to 1e-4 "
                                    "here); lower it to keep more of the subject")
    tv_weight: float = opt(1e-6, "total variation weight on 0-255 pixels (Johnson's code: 1e-6)")
    weights: str = opt("torchvision", "VGG-16 weights of the loss network: torchvision (offline) | keras")


@register("fast_style", evaluation="perceptual", config=FastStyleConfig, data_kind="photos", bfloat16=True,
          overrides={"data": {"load_size": 256, "crop_size": 256, "batch_size": 4},
                     "train": {"lr": 1e-3, "beta_1": 0.9, "epochs": 2, "decay_epochs": 0},
                     "export": {"tflite_variants": ("float32", "float16", "int8")}},
          demo={"data": {"load_size": 144, "crop_size": 128, "batch_size": 2},
                "train": {"epochs": 12, "decay_epochs": 0, "sample_every": 60, "checkpoint_every": 60,
                          "validate_every": 60}},
          demo_result="360 steps in 1 min 47 s; the photos take the style's brown strokes, with cyan blobs; "
                      "perceptual loss 6.25e4 against 7.03e4 for the photo itself, 2.92 times that of optimising "
                      "each photo (docs/gallery)")
class FastStyle(TranslationModel):
    """Perceptual-loss style transfer (Johnson, Alahi, Fei-Fei, ECCV 2016, arXiv 1603.08155),
    and its conditional multi-style form (Yanai & Tanno, ICMR 2017) with several styles.

    G: the ResNet transform network (c9s1-32, d64, d128, 5 residual blocks, u64, u32,
    c9s1-3; instance norm; u64 and u32 as resize-convolutions unless ``upsample=transpose``).
    Loss: ``content_weight`` * ℓ_feat(relu2_2) + ``style_weight`` * Σ ℓ_style(relu1_2,
    relu2_2, relu3_3, relu4_3) + ``tv_weight`` * TV, from the frozen VGG-16 of
    :mod:`tf_translate.nn.features` (which is not part of the model's weights). With
    N styles G takes a second input, a per-pixel N-channel style-weight map; each training
    photo is stylised in one style drawn at random.
    """

    loss_names = ("total", "content", "style", "tv")
    generator_roles = ("G",)
    discriminator_roles = ()
    validation_key = "val_loss"
    validation_mode = "min"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        m = config.model
        self.styles = tuple(m.style or (photos.default_style(),))
        self.G = networks.resnet_generator(filters=m.filters, n_blocks=m.n_blocks, n_down=2, outer_kernel=9,
                                           conditions=len(self.styles) if len(self.styles) > 1 else 0,
                                           norm_kind=m.norm, upsample=m.upsample, name="G")
        self.nets = {"G": self.G}
        # A plain object, not an attribute Keras tracks: the VGG is no part of the checkpoints.
        self.perceptual = perceptual.PerceptualLoss("johnson", weights=m.weights)
        crop = config.data.crop_size
        self.perceptual.check_size(crop, crop, f"the crop size {crop}")
        targets = [self.perceptual.style_targets(photos.load_image(path, m.style_size or crop))
                   for path in self.styles]
        self.style_grams = {n: tf.concat([t[n] for t in targets], 0) for n in targets[0]}
        self.panel_titles = ("photo", *(f"style {k}" for k in range(len(self.styles))))

    @property
    def conditional(self) -> bool:
        return len(self.styles) > 1

    def call(self, x, training=False):
        """G(x) in the first style."""
        return self.stylize(x, tf.zeros(tf.shape(x)[:1], tf.int32), training=training)

    def stylize(self, x, style_index, training=False):
        """G(x) in the styles ``style_index`` (one per sample)."""
        if not self.conditional:
            return self.G(x, training=training)
        x = tf.convert_to_tensor(x)
        return self.G([x, one_hot_map(style_index, x, len(self.styles))], training=training)

    def terms(self, x, fake, style_index) -> dict:
        """Weighted per-sample loss terms of ``fake`` = G(x) in styles ``style_index``."""
        m = self.run_config.model
        targets = {n: tf.gather(g, style_index) for n, g in self.style_grams.items()}
        return self.perceptual.weighted(fake, self.perceptual.features(fake), self.perceptual.features(x), targets,
                                        content_weight=m.content_weight, style_weight=m.style_weight,
                                        tv_weight=m.tv_weight)

    def train_step(self, x):
        n = tf.shape(x)[0]
        key = seeding.derive(self.seed, STYLE_CHOICE, self.step)
        style_index = replicas.draw(
            lambda k: tf.random.stateless_uniform([k], key, 0, len(self.styles), dtype=tf.int32), n)
        with tf.GradientTape() as tape:
            fake = self.stylize(x, style_index, training=True)
            terms = {k: self.reduce(v, x) for k, v in self.terms(x, fake, style_index).items()}
            total = tf.add_n(list(terms.values()))
        finite = self.apply_gradients(self.g_optimizer, tape, total, self.generator_roles)
        return self.record({"total": total, **terms}, finite)

    def generators(self) -> dict:
        return {"translate": (self.G, 3)}

    def down_factor(self) -> int:
        return 4

    def sample_rows(self, batch):
        (x,) = batch
        columns = [self.stylize(x, tf.fill([len(x)], k)).numpy() for k in range(len(self.styles))]
        return [[x[i], *(c[i] for c in columns)] for i in range(len(x))]

    def validate(self, held_out) -> dict:
        """Mean weighted perceptual loss on held-out photos, each in every style (lower is better)."""
        (x,) = held_out
        values = []
        for k in range(len(self.styles)):
            for i in range(len(x)):
                index = tf.fill([1], k)
                terms = self.terms(x[i: i + 1], self.stylize(x[i: i + 1], index), index)
                values.append(float(tf.add_n(list(terms.values()))[0]))
        return {self.validation_key: float(np.mean(values))}


def one_hot_map(style_index, like, n: int):
    """Per-pixel style weights at ``like``'s size: one-hot ``style_index`` per sample."""
    return label_planes(tf.one_hot(style_index, n, dtype=like.dtype), like)


def sweep_map(height: int, width: int, n: int) -> np.ndarray:
    """A (height, width, n) style map going left to right through styles 0 … n-1, each
    column a linear blend of its two nearest styles (spatial blending's demonstration)."""
    position = np.linspace(0.0, n - 1.0, width)
    weights = np.clip(1.0 - np.abs(position[:, None] - np.arange(n)[None, :]), 0.0, 1.0)
    return np.broadcast_to(weights[None], (height, width, n)).astype(np.float32)
