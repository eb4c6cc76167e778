"""DiffAugment (Zhao et al. 2020): shifts and cutouts that D sees, seeded and differentiable."""

import numpy as np
import tensorflow as tf

from tf_translate import seeding
from tf_translate.nn.augment import diff_augment


def dots(n=8, size=16):
    """n black images, each with one white pixel at (5 + k % 4, 6 + k % 3)."""
    images = -np.ones((n, size, size, 1), np.float32)
    for k in range(n):
        images[k, 5 + k % 4, 6 + k % 3, 0] = 1.0
    return tf.constant(images)


def test_translation_moves_each_image_by_at_most_its_reach():
    images = dots()
    moved = diff_augment(images, seeding.derive(3, 1), translation=0.25, cutout=0.0).numpy()
    shifts = []
    for k in range(len(moved)):
        white = np.argwhere(moved[k, :, :, 0] > 0)
        assert len(white) == 1 and np.sum(moved[k] < 0) == 16 * 16 - 1  # moved whole, vacated pixels black
        shifts.append(tuple(white[0] - (5 + k % 4, 6 + k % 3)))
    assert all(abs(dy) <= 4 and abs(dx) <= 4 for dy, dx in shifts)  # a quarter of 16
    assert len(set(shifts)) > 1  # per image


def test_cutout_blanks_a_square_of_half_the_side():
    images = tf.ones([16, 16, 16, 1])
    cut = diff_augment(images, seeding.derive(5, 2), translation=0.0, cutout=0.5).numpy()
    blank = np.sum(cut == -1.0, axis=(1, 2, 3))
    assert blank.max() == 64 and blank.min() >= 16 and np.all(np.isin(cut, (-1.0, 1.0)))  # 8x8, clipped at edges


def test_seeded_and_differentiable():
    images = tf.random.stateless_uniform([4, 16, 16, 1], (0, 1), -1.0, 1.0)
    first, again = (diff_augment(images, seeding.derive(7, 0)) for _ in range(2))
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.array_equal(first.numpy(), diff_augment(images, seeding.derive(7, 1)).numpy())
    with tf.GradientTape() as tape:
        tape.watch(images)
        out = diff_augment(images, seeding.derive(7, 0))
        total = tf.reduce_sum(out)
    gradient = tape.gradient(total, images).numpy()
    # every input pixel that lands inside the frame and outside the cutout passes through once
    assert set(np.unique(gradient)) <= {0.0, 1.0}
    passed = diff_augment(tf.zeros_like(images), seeding.derive(7, 0)).numpy() + 1.0  # 1 where input lands
    assert gradient.sum() == passed.sum() > 0.5 * images.shape.num_elements()
