import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_translate.nn import layers, networks


def test_instance_norm_equals_group_norm_per_channel():
    x = np.random.default_rng(0).normal(2.0, 3.0, (2, 9, 7, 5)).astype(np.float32)
    ours = layers.InstanceNorm()
    reference = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)
    ours.build(x.shape)
    reference.build(x.shape)
    gamma = np.linspace(0.5, 2.0, 5).astype(np.float32)
    beta = np.linspace(-1.0, 1.0, 5).astype(np.float32)
    ours.set_weights([gamma, beta])
    reference.set_weights([gamma, beta])
    np.testing.assert_allclose(ours(x), reference(x), atol=1e-5)
    # and it really normalises each sample and channel over H and W
    plain = layers.InstanceNorm(center=False, scale=False)(x).numpy()
    np.testing.assert_allclose(plain.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(plain.std(axis=(1, 2)), 1.0, atol=1e-3)


def test_instance_norm_graph_has_no_square_or_moments():
    fn = tf.function(layers.InstanceNorm(center=False, scale=False)).get_concrete_function(
        tf.TensorSpec([1, 8, 8, 3], tf.float32))
    ops = {op.type for op in fn.graph.get_operations()}
    assert {"Mean", "Mul", "Rsqrt"} <= ops
    assert not ops & {"Square", "SquaredDifference", "Neg"}


@pytest.mark.parametrize("height,width,upsample", [(32, 32, "transpose"), (48, 64, "transpose"), (48, 64, "resize")])
def test_resnet_generator_shape_and_range(height, width, upsample):
    g = networks.resnet_generator(filters=4, n_blocks=2, upsample=upsample)
    x = np.random.default_rng(1).uniform(-1, 1, (2, height, width, 3)).astype(np.float32)
    y = g(x).numpy()
    assert y.shape == x.shape
    assert np.all(np.abs(y) <= 1.0) and np.isfinite(y).all()


def test_resnet_generator_has_paper_layout():
    g = networks.resnet_generator(filters=64, n_blocks=9)
    convs = [l for l in g.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    # c7s1-64, d128, d256, 9 x (2 convs of 256), u128, u64, c7s1-3
    assert [c.filters for c in convs] == [64, 128, 256] + [256] * 18 + [128, 64, 3]
    assert convs[0].kernel_size == (7, 7) and convs[-1].kernel_size == (7, 7)


def test_nearest_upsampling_repeats_each_pixel_2x2():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(layers.NearestUpsampling2D()(x), x.repeat(2, axis=1).repeat(2, axis=2))

    @tf.function(jit_compile=True)  # training runs under XLA: the gradient must compile there
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layers.NearestUpsampling2D()(x)
            loss = tf.reduce_sum(y * tf.reshape(tf.range(tf.size(y), dtype=tf.float32), tf.shape(y)))
        return tape.gradient(loss, x)

    weights = np.arange(2 * 6 * 8 * 5, dtype=np.float32).reshape(2, 6, 8, 5)
    expected = weights.reshape(2, 3, 2, 4, 2, 5).sum(axis=(2, 4))  # each input pixel feeds its 2x2 block
    np.testing.assert_allclose(grad(tf.constant(x)), expected)


def test_resnet_generator_resize_upsampling_replaces_only_the_transposed_convolutions():
    kinds = lambda g: [type(l).__name__ for l in g.layers  # noqa: E731
                       if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, layers.NearestUpsampling2D))]
    transpose = kinds(networks.resnet_generator(filters=8, n_blocks=2))
    resize = kinds(networks.resnet_generator(filters=8, n_blocks=2, upsample="resize"))
    assert transpose.count("Conv2DTranspose") == 2 and "Conv2DTranspose" not in resize
    # each u-block: nearest 2x resize followed by an ordinary 3x3 convolution
    assert resize[:-5] == transpose[:-3]
    assert resize[-5:] == ["NearestUpsampling2D", "Conv2D", "NearestUpsampling2D", "Conv2D", "Conv2D"]
    with pytest.raises(ValueError, match="upsample must be one of transpose, resize"):
        networks.resnet_generator(filters=8, n_blocks=2, upsample="bilinear")


def test_patch_discriminator_receptive_field_is_70():
    # without norm: instance statistics would couple every pixel to every output
    d = networks.patch_discriminator(filters=4, n_layers=3, norm_kind="none")
    x = tf.Variable(np.random.default_rng(2).normal(size=(1, 140, 140, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        out = d(x)
        centre = out[0, out.shape[1] // 2, out.shape[2] // 2, 0]
    grad = np.abs(tape.gradient(centre, x).numpy()[0].sum(axis=-1))
    rows, cols = np.nonzero(grad)
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70
    # 256 -> 30x30 patches, as in the PyTorch reference
    assert d(np.zeros((1, 256, 256, 3), np.float32)).shape == (1, 30, 30, 1)


def test_cyclegan_upsample_flag_reaches_both_generators(tmp_path):
    from tests.conftest import tiny_config
    from tf_translate import registry

    for upsample, kind in (("resize", "NearestUpsampling2D"), ("transpose", "Conv2DTranspose")):
        cfg = tiny_config("cyclegan", tmp_path, None, model={"upsample": upsample})
        model = registry.get("cyclegan").model(cfg)
        assert all(sum(type(layer).__name__ == kind for layer in net.layers) == 2 for net in (model.G, model.F))
