"""Perceptual losses on a frozen VGG-16: the content and style (Gram) terms of Gatys et al.
(``gatys``), of the chainer-gogh program (``chainer-gogh``) and of Johnson et al.
(``johnson``), each as in its source (Gatys et al. 2015; Johnson et al. 2016).

Every term returns one value per sample. The sources' loss weights (the paper's alpha/beta,
chainer-gogh's lam, Johnson's content and style weights) were set for Caffe's VGG-16, whose
features are larger than those of the torchvision network we use by default, and content
terms grow with the features squared, style terms with their fourth power: the same weights
would here give far too much content. So features are multiplied by ``CAFFE_SCALE`` of their
weight set, calibrated once (see below), and the sources' weights keep their meaning.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tf_translate.errors import UsageError
from tf_translate.nn import features, losses


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    pooling: str  # of the VGG: avg (Gatys et al., chainer-gogh) or max (Johnson et al.)
    style_layers: tuple[str, ...]
    content_layers: tuple[str, ...]
    style_scale: float  # per layer, times the reduced squared Gram difference
    style_reduce: str  # "sum" or "mean" of the squared Gram difference over its C x C entries
    content_scale: float
    content_reduce: str  # "sum" or "mean" of the squared feature difference


# Feature scale per VGG weight set: Caffe's own (keras) 1; torchvision's 86.6 = sqrt(7500),
# measured: with chainer-gogh's losses on its cat and style_0 (128 px, 100 L-BFGS iterations),
# unscaled torchvision features need lam = 1e-6 for the balance chainer-gogh shows at
# lam = 0.0075 (ratio 7500); the paper preset agrees (alpha/beta 1e-7 unscaled looks like 1e-3).
# A fixed input-range argument gives the same order: torchvision inputs are 0-255 / (255 * 0.226).
CAFFE_SCALE = {"torchvision": 7500**0.5, "keras": 1.0}

PRESETS = {
    # E_l = Σ(G−A)² / (4 N² M²) = ¼ Σ(g−a)² with g = G / (N M); w_l = 1/5; L_content = ½ Σ(F−P)² at conv4_2.
    "gatys": Preset("gatys", "avg", ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), ("relu4_2",),
                    style_scale=1 / 20, style_reduce="sum", content_scale=0.5, content_reduce="sum"),
    # chainer-gogh: pre-ReLU features; Σ_l MSE(g_l, a_l) / 4; content MSE at conv3_3 and conv4_3.
    "chainer-gogh": Preset("chainer-gogh", "avg", ("conv1_2", "conv2_2", "conv3_3", "conv4_3"),
                           ("conv3_3", "conv4_3"), style_scale=1 / 4, style_reduce="mean",
                           content_scale=1.0, content_reduce="mean"),
    # Johnson et al.: ℓ_style = Σ_l ‖G_l(ŷ) − G_l(y_s)‖²_F; ℓ_feat = ‖φ(ŷ) − φ(y)‖² / (C H W) at relu2_2.
    "johnson": Preset("johnson", "max", ("relu1_2", "relu2_2", "relu3_3", "relu4_3"), ("relu2_2",),
                      style_scale=1.0, style_reduce="sum", content_scale=1.0, content_reduce="mean"),
}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown loss preset {name!r}; expected one of {', '.join(PRESETS)}") from None


def _reduced(kind: str, difference):
    """Sum or mean of the squared difference, per sample."""
    return losses.sum_squares(difference) if kind == "sum" else losses.mse(difference, 0.0)


class PerceptualLoss:
    """Content and style terms of a :class:`Preset` on one frozen VGG-16 (images in [-1, 1])."""

    def __init__(self, preset_name: str, weights: str = "torchvision"):
        self.preset = preset(preset_name)
        p = self.preset
        self.layers = tuple(dict.fromkeys(p.style_layers + p.content_layers))
        self.vgg = features.vgg16(self.layers, weights=weights, pooling=p.pooling, name=f"vgg16_{p.pooling}")
        self.min_size = features.min_size(self.layers)
        self.scale = CAFFE_SCALE[weights]

    def check_size(self, height: int, width: int, what: str) -> None:
        if min(height, width) < self.min_size:
            raise UsageError(f"{what} is {width}x{height}: the {self.preset.name} losses use VGG-16 features "
                             f"down to {features.CONVS[features.deepest(self.layers)]} "
                             f"and need at least {self.min_size} px a side")

    def features(self, images) -> dict:
        """Named VGG feature maps, in Caffe's feature magnitude (``CAFFE_SCALE``)."""
        return {k: v * self.scale for k, v in self.vgg(images, training=False).items()}

    def style_targets(self, images) -> dict:
        """Gram matrices of the style image(s) at the style layers: {layer: (batch, C, C)}."""
        found = self.features(images)
        return {name: losses.gram(found[name]) for name in self.preset.style_layers}

    def style(self, found: dict, targets: dict):
        return style_loss(self.preset, found, targets)

    def content(self, found: dict, targets: dict):
        return content_loss(self.preset, found, targets)


    def weighted(self, image, found: dict, content_targets: dict, style_targets: dict, *,
                 content_weight: float, style_weight: float, tv_weight: float | None) -> dict:
        """Per-sample weighted terms of ``image`` (whose features are ``found``): content, style
        and, unless ``tv_weight`` is None, total variation on 0-255 pixel values."""
        terms = {"content": content_weight * self.content(found, content_targets),
                 "style": style_weight * self.style(found, style_targets)}
        if tv_weight is not None:
            terms["tv"] = tv_weight * 127.5**2 * losses.total_variation(image)
        return terms


def style_loss(p: Preset, found: dict, targets: dict):
    """The preset's style term, per sample: Gram matrices of ``found`` features against ``targets``."""
    return tf.add_n([p.style_scale * _reduced(p.style_reduce, losses.gram(found[n]) - targets[n])
                     for n in p.style_layers])


def content_loss(p: Preset, found: dict, targets: dict):
    """The preset's content term, per sample: ``found`` features against ``targets``."""
    return tf.add_n([p.content_scale * _reduced(p.content_reduce, tf.cast(found[n], tf.float32) - tf.cast(targets[n], tf.float32))
                     for n in p.content_layers])
