"""Image sizes read from encoded headers inside a graph (tf_translate.export.image_header): exact for
every format the bytes signatures take, counting every frame of an animated GIF; the check
passes an image of exactly the limit and refuses one pixel more, naming size and limit."""

import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.support.fuzz_signatures import encoded, gif
from tf_translate.export import image_header

declared = tf.function(image_header.declared_size)


def picture(width=45, height=37, mode="RGB"):
    rng = np.random.default_rng(0)
    if mode == "I;16":  # a 16-bit greyscale PNG
        return Image.fromarray(rng.integers(0, 65536, (height, width), np.uint16))
    return Image.fromarray(rng.integers(0, 256, (height, width, 4), np.uint8), "RGBA").convert(mode)


@pytest.mark.parametrize("fmt, options, mode", [
    ("JPEG", {}, "RGB"), ("JPEG", {"progressive": True}, "L"), ("PNG", {}, "RGB"), ("PNG", {}, "I;16"),
    ("PNG", {"interlace": 1}, "RGBA"), ("GIF", {}, "P"), ("BMP", {}, "RGB"), ("BMP", {}, "L"),
    ("WEBP", {"quality": 80}, "RGB"), ("WEBP", {"lossless": True}, "RGB"), ("WEBP", {"quality": 80}, "RGBA"),
])
def test_declared_size_is_the_decoded_size(fmt, options, mode):
    data = encoded(picture(mode=mode), fmt, **options)
    kind, width, height, frames, pixels = (int(v) for v in declared(tf.constant(data)))
    decoded = tf.io.decode_image(data, expand_animations=False).shape
    assert image_header.FORMAT_NAMES[kind].lower() == fmt.lower()
    assert (width, height, frames, pixels) == (decoded[1], decoded[0], 1, decoded[0] * decoded[1])


def test_top_down_bmp_and_animated_gif():
    bmp = encoded(picture(), "BMP")
    top_down = bmp[:22] + struct.pack("<i", -37) + bmp[26:]
    assert [int(v) for v in declared(tf.constant(top_down))][1:] == [45, 37, 1, 45 * 37]
    frames = [picture(40, 30 - k) for k in range(5)]  # distinct frames, each stored
    animated = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert [int(v) for v in declared(tf.constant(animated))][1:] == [40, 30, 5, 5 * 40 * 30]
    # a frame larger than the screen counts at its own size: giflib allocates it
    assert [int(v) for v in declared(tf.constant(gif((2, 3), (1000, 2000))))][1:] == [2, 3, 1, 2_000_000]


def test_check_passes_the_limit_and_refuses_one_pixel_more():
    data = tf.constant(encoded(picture(), "PNG"))
    assert tf.function(lambda d: image_header.checked(d, 45 * 37))(data).numpy() == data.numpy()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"PNG image of 45x37 \(1665 pixels decoded\) is over "
                                                              r"the limit of 1,664 pixels"):
        tf.function(lambda d: image_header.checked(d, 45 * 37 - 1))(data)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG, PNG, GIF, BMP or WebP image"):
        tf.function(lambda d: image_header.checked(d, 10**9))(tf.constant(b"\x00\x00\x00\x0cJXL \r\n\x87\n"))
    images = tf.zeros([2, 10, 20, 3])
    assert tf.function(lambda x: image_header.checked_images(x, 400))(images).shape == (2, 10, 20, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="2 image.s. of 20x10 = 400 pixels; this model takes 1 "
                                                             "to 399 pixels per request"):
        tf.function(lambda x: image_header.checked_images(x, 399))(images)
