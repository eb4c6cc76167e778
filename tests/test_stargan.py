"""StarGAN: the gradient penalty, the domain-classification losses, the two-headed
discriminator and the label-conditioned generator."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_translate import losses, networks


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm():
    w = np.random.default_rng(0).normal(size=(1, 4, 5, 3)).astype(np.float32)
    critic = lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])  # noqa: E731  gradient w everywhere
    real, fake = (np.random.default_rng(s).normal(size=(3, 4, 5, 3)).astype(np.float32) for s in (1, 2))
    penalty = losses.gradient_penalty(critic, real, fake, tf.constant([0.0, 0.3, 1.0])).numpy()
    np.testing.assert_allclose(penalty, (np.linalg.norm(w) - 1.0) ** 2 * np.ones(3), rtol=1e-5)


def test_gradient_penalty_against_numpy_on_a_patch_critic():
    # patch scores s = x² summed per patch: the gradient of their sum is 2·x̂ at the mix point
    critic = lambda x: tf.nn.avg_pool2d(tf.square(x), 2, 2, "VALID") * 4.0  # noqa: E731
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(2, 4, 6, 3)).astype(np.float32), rng.normal(size=(2, 4, 6, 3)).astype(np.float32)
    alpha = np.array([0.25, 0.8], np.float32)
    mixed = alpha[:, None, None, None] * real + (1 - alpha[:, None, None, None]) * fake
    expected = (np.linalg.norm((2 * mixed).reshape(2, -1), axis=1) - 1.0) ** 2
    np.testing.assert_allclose(losses.gradient_penalty(critic, real, fake, tf.constant(alpha)), expected, rtol=1e-5)


def test_domain_classification_single_and_multi_label_against_numpy():
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, -3.0]], np.float32)
    one_hot = np.array([[0, 0, 1], [1, 0, 0]], np.float32)
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(losses.domain_classification(logits, one_hot, multi_label=False),
                               -np.log((softmax * one_hot).sum(1)), rtol=1e-5)
    attributes = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    p = 1 / (1 + np.exp(-logits))
    bce = -(attributes * np.log(p) + (1 - attributes) * np.log(1 - p)).sum(1)
    np.testing.assert_allclose(losses.domain_classification(logits, attributes, multi_label=True), bce, rtol=1e-5)


@pytest.mark.parametrize("size,kernel", [(64, 1), (128, 2)])
def test_discriminator_cls_kernel_follows_the_training_size(size, kernel):
    d = networks.stargan_discriminator(image_size=size, n_domains=5, filters=4)
    assert d.get_layer("D_cls").kernel_size == (kernel, kernel)
    src, cls = d(np.zeros((2, size, size, 3), np.float32))
    assert src.shape == (2, size // 64, size // 64, 1) and cls.shape == (2, 5)
    assert not [l for l in d.layers if "norm" in l.name]
    assert all(l.negative_slope == pytest.approx(0.01) for l in d.layers if isinstance(l, keras.layers.LeakyReLU))
    with pytest.raises(ValueError, match="multiple of 64"):
        networks.stargan_discriminator(image_size=96, n_domains=5)


def test_generator_with_the_label_at_the_input():
    g = networks.resnet_generator(filters=8, n_blocks=2, conditions=3, condition_at="input", sampling_kernel=4,
                                  pad="zero")
    first = g.get_layer("c7s1_conv")
    assert first.kernel.shape[2] == 3 + 3  # image and label planes enter the first convolution
    assert g.get_layer("d1_conv").kernel_size == (4, 4) and g.get_layer("u1_deconv").kernel_size == (4, 4)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 24, 32, 3)).astype(np.float32)
    planes = lambda k: np.broadcast_to(np.eye(3, dtype=np.float32)[k], (2, 24, 32, 3))  # noqa: E731
    a, b = g([x, planes(0)]).numpy(), g([x, planes(2)]).numpy()
    assert a.shape == x.shape and not np.allclose(a, b, atol=1e-4)


def test_label_planes_tile_each_sample_s_vector_over_its_image():
    from tf_translate.layers import label_planes

    labels = tf.constant([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    tiled = label_planes(labels, tf.zeros((2, 3, 5, 7))).numpy()
    assert tiled.shape == (2, 3, 5, 3)
    for i in range(2):
        np.testing.assert_array_equal(tiled[i].reshape(-1, 3), np.repeat(labels.numpy()[i:i + 1], 15, axis=0))
