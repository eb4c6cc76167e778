"""The flow generator for frame interpolation: backward warping, linear-motion flows, the
cross-fade it starts from, its losses' gradients, exact resume, and bad input."""

import numpy as np
import pytest
import tensorflow as tf

import tf_translate
from tests.conftest import tiny_config
from tf_translate import registry
from tf_translate.errors import UsageError
from tf_translate.nn import flow
from tf_translate.training import trainer


def ramp(height=24, width=32):
    """A smooth image: each channel an affine function of x and y, which bilinear sampling
    reproduces exactly at fractional positions."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([0.03 * x + 0.02 * y, 0.5 - 0.01 * x + 0.04 * y, 0.02 * x - 0.03 * y], -1)[None]


def test_warp_moves_an_image_by_a_known_flow_and_back():
    image = ramp()
    shift = np.zeros((1, 24, 32, 2), np.float32)
    shift[..., 0], shift[..., 1] = 2.5, -1.25  # sample 2.5 px to the right, 1.25 px up
    moved = flow.backward_warp(image, shift).numpy()
    y, x = np.mgrid[0:24, 0:32].astype(np.float32)
    expected = ramp()[0]  # the affine image evaluated at the shifted positions
    expected = np.stack([0.03 * (x + 2.5) + 0.02 * (y - 1.25), 0.5 - 0.01 * (x + 2.5) + 0.04 * (y - 1.25),
                         0.02 * (x + 2.5) - 0.03 * (y - 1.25)], -1)
    interior = (slice(None), slice(3, -3), slice(4, -4))
    np.testing.assert_allclose(moved[interior], expected[None][interior], atol=1e-5)
    back = flow.backward_warp(moved, -shift).numpy()
    np.testing.assert_allclose(back[:, 6:-6, 8:-8], image[:, 6:-6, 8:-8], atol=1e-4)
    # a whole-pixel shift of noise is exact; the border is clamped (replicated)
    noise = np.random.default_rng(0).uniform(-1, 1, (2, 8, 10, 3)).astype(np.float32)
    whole = np.zeros((2, 8, 10, 2), np.float32)
    whole[..., 0] = 3.0
    out = flow.backward_warp(noise, whole).numpy()
    np.testing.assert_array_equal(out[:, :, :7], noise[:, :, 3:])
    np.testing.assert_array_equal(out[:, :, 7:], np.repeat(noise[:, :, 9:], 3, axis=2))


def test_gradients_reach_the_flow_and_the_image():
    image = tf.constant(np.random.default_rng(1).uniform(-1, 1, (1, 12, 12, 3)).astype(np.float32))
    field = tf.Variable(np.full((1, 12, 12, 2), 0.3, np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(image)
        loss = tf.reduce_sum(tf.square(flow.backward_warp(image, field)))
    d_flow, d_image = tape.gradient(loss, field), tape.gradient(loss, image)
    assert np.abs(d_flow.numpy()).mean() > 1e-3 and np.abs(tf.convert_to_tensor(d_image).numpy()).mean() > 1e-3


def test_linear_motion_flows_follow_super_slomo():
    """Under constant motion v (F_0->1 = v, F_1->0 = -v) the flow from time t to frame 0 is
    -t v and to frame 1 (1 - t) v."""
    v = np.array([[[[4.0, -2.0]]]], np.float32)
    for t in (1 / 6, 0.5, 5 / 6):
        to0, to1 = flow.linear_motion_flows(v, -v, t)
        np.testing.assert_allclose(to0, -t * v, atol=1e-6)
        np.testing.assert_allclose(to1, (1 - t) * v, atol=1e-6)


def shifted_pair(shift=(6, 4), size=(64, 96)):
    """A smooth random texture and the same texture moved by ``shift`` (x, y) pixels."""
    rng = np.random.default_rng(5)
    texture = tf.image.resize(rng.uniform(-1, 1, (1, 20, 26, 3)).astype(np.float32), (160, 200)).numpy()
    h, w = size
    dx, dy = shift
    first = texture[:, 40:40 + h, 40:40 + w]
    second = texture[:, 40 - dy:40 - dy + h, 40 - dx:40 - dx + w]  # second(x + shift) = first(x)
    return first, second


def test_block_matching_finds_a_known_motion_and_no_motion_where_there_is_none():
    first, second = shifted_pair((6, 4))
    found = flow.BlockMatching()(first, second).numpy()
    assert found.shape == (1, 8, 12, 2)  # a vector every 8 pixels
    np.testing.assert_allclose(found[0, 2:-2, 2:-2].mean((0, 1)), (6, 4), atol=0.5)
    still = flow.BlockMatching()(first, first).numpy()
    assert np.abs(still).max() < 0.05


def test_a_new_flow_generator_is_motion_compensated_interpolation():
    """Every learned last layer starts at zero: a new G warps both frames along the block
    matching's flows (linear motion) and blends them (1 - t, t), so for a textured image moving
    6 px right and 4 down its middle frame is the image moved halfway, far closer than the
    cross-fade; for two equal frames it is the frame."""
    first, second = shifted_pair((6, 4))
    halfway = shifted_pair((3, 2))[1]
    G, parts = flow.flow_generator(times=(0.25, 0.5, 0.75), filters=4)
    made = G(np.concatenate([first, second], -1)).numpy()
    middle, crossfade = made[..., 3:6], (first + second) / 2
    inner = (slice(None), slice(12, -12), slice(12, -12))
    assert np.abs(middle - halfway)[inner].mean() < 0.25 * np.abs(crossfade - halfway)[inner].mean()
    np.testing.assert_allclose(G(np.concatenate([first, first], -1)).numpy()[..., 3:6], first, atol=2e-3)
    found = parts(np.concatenate([first, second], -1))
    assert found["flow_t0"].shape == (1, 64, 96, 6) and found["visibility"].shape == (1, 64, 96, 3)
    np.testing.assert_allclose(found["visibility"], 0.5)


def test_flow_colours_show_direction_and_length():
    field = np.zeros((1, 3, 2), np.float32)
    field[0, 1], field[0, 2] = (5.0, 0.0), (0.0, 5.0)
    colours = flow.flow_colours(field)
    np.testing.assert_allclose(colours[0, 0], 1.0)  # still: white
    assert not np.allclose(colours[0, 1], colours[0, 2])  # right and down differ in hue
    assert colours.min() >= -1 and colours.max() <= 1


@pytest.mark.parametrize("layout, message", [
    ({"frames_per_image": 2}, "interpolates between two input frames"),
    ({"frames_per_image": 3, "input_frames": (0,), "target_frames": (2,)}, "interpolates between two input frames"),
])
def test_the_flow_generator_refuses_what_is_not_interpolation(tmp_path, layout, message):
    cfg = tiny_config("pix2pix", tmp_path, None, model={**layout, "generator": "flow"})
    with pytest.raises(UsageError, match=message):
        trainer.build_model(cfg, registry.get("pix2pix"), steps_per_epoch=1)


def test_the_generator_flag_picks_the_network_and_its_losses(tmp_path):
    build = lambda generator, frames=3: trainer.build_model(  # noqa: E731
        tiny_config("pix2pix", tmp_path, None, model={"frames_per_image": frames, "generator": generator}),
        registry.get("pix2pix"), steps_per_epoch=1)
    moving, unet, auto, pair = build("flow"), build("unet"), build("auto"), build("auto", 2)
    assert moving.flow and moving.lambda_gan == 0.0 and "warp" in moving.loss_names and moving.down_factor() == 16
    assert not unet.flow and unet.lambda_gan == 1.0 and unet.loss_names == ("G_total", "G_adv", "L1", "D")
    assert auto.flow and not pair.flow  # auto: the flow generator for frame interpolation only
    with pytest.raises(UsageError, match="generator 'up': expected one of auto, unet, flow"):
        build("up")


def test_flow_training_with_the_gan_resumes_exactly(tmp_path, strips_dir, monkeypatch, op_determinism):
    """Two runs of 4 steps, one killed after its step-2 checkpoint and resumed: the same
    weights (the flow generator, with pix2pix's discriminator in play)."""
    from tests.test_train import _weights, killed_and_resumed

    run = lambda name: tiny_config("pix2pix", tmp_path / name, str(strips_dir), export={"export": False},  # noqa: E731
                                   model={"generator": "flow", "lambda_gan": 1.0})
    straight = run("straight")
    tf_translate.train(straight)
    resumed = run("resumed")
    killed_and_resumed(resumed, monkeypatch)
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert a.keys() == b.keys() and len(a) > 40
    step_key = [k for k in a if k.startswith("model/step")][0]
    assert int(a[step_key]) == int(b[step_key]) == 4
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)
    # the panels show the flows and visibility, the GIFs animate them beside the frames
    samples = straight.run_dir / "samples"
    assert list(samples.glob("step_*.png")) and list(samples.glob("step_*_sample0.gif"))
