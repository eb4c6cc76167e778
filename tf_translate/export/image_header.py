"""The size of an encoded image read from its header inside a TensorFlow graph, so that an
exported signature refuses an image too large to decode *before* decoding it: a 450 KB PNG
can declare 12000 x 12000 pixels, and ``tf.io.decode_image`` would try to allocate them all
and abort the whole server (``std::bad_alloc``).

Formats are recognised by their first bytes, as ``tf.io.decode_image`` recognises them:
  JPEG  ``tf.image.extract_jpeg_shape`` (libjpeg reads the markers only)
  PNG   the IHDR chunk, which must come first: width and height, 32-bit big-endian
  GIF   the logical screen, and every frame's descriptor: TensorFlow's decoder (giflib's
        DGifSlurp) holds every frame of an animation, each at least the screen's size
  BMP   the info header's width and height, 32-bit little-endian (height negative = top-down)
  WebP  the VP8 frame header, the VP8L header or the VP8X canvas. Animated WebP is refused:
        TensorFlow 2.21's decoder crashes the process on it (double free, measured)
Anything else (JPEG XL included, whose header is not read here) is refused as unsupported.
"""

from __future__ import annotations

import tensorflow as tf

FORMATS = "JPEG, PNG, GIF, BMP or WebP"
JPEG, PNG, GIF, BMP, WEBP, ANIMATED_WEBP, UNKNOWN = range(7)
FORMAT_NAMES = ("JPEG", "PNG", "GIF", "BMP", "WebP", "animated WebP", "unknown")


def _starts(b, offset: int, magic: bytes):
    """Whether the bytes ``b`` (int64) hold ``magic`` at ``offset``."""
    return tf.reduce_all(tf.equal(b[offset: offset + len(magic)], tf.constant(list(magic), tf.int64)))


def _little(at, offset, n: int):
    """The unsigned little-endian integer of the ``n`` bytes ``at(offset)``, ``at(offset + 1)``, ..."""
    return sum(tf.bitwise.left_shift(at(offset + k), 8 * k) for k in range(n))


def _big(at, offset, n: int):
    return sum(tf.bitwise.left_shift(at(offset + k), 8 * (n - 1 - k)) for k in range(n))


def _color_table(flags):
    """Bytes of a GIF colour table that ``flags`` (a screen or image descriptor's) announce."""
    return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8), 0)


def _gif(data):
    """(width, height, frames, pixels decoded) of a GIF: every frame counts as the larger of the
    logical screen and its own descriptor's rectangle. Walks the blocks, one step per block or
    sub-block: an extension is 0x21, a label and a chain of sub-blocks; an image is 0x2C, a
    9-byte descriptor, a colour table, a code size and a chain; a chain is size bytes each
    followed by that many bytes, ending with a size of 0; anything else ends the walk."""
    b = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
    length = tf.size(b, out_type=tf.int64)

    def at(i):
        return tf.gather(b, tf.clip_by_value(tf.cast(i, tf.int64), 0, tf.maximum(length - 1, 0)))

    width, height = _little(at, 6, 2), _little(at, 8, 2)
    screen = width * height

    def step(position, in_chain, frames, pixels, done):
        byte = at(position)
        is_extension, is_image = tf.equal(byte, 0x21), tf.equal(byte, 0x2C)
        image = tf.logical_not(in_chain) & is_image
        block_next = tf.where(is_extension, position + 2, position + 10 + _color_table(at(position + 9)) + 1)
        area = tf.maximum(screen, _little(at, position + 5, 2) * _little(at, position + 7, 2))
        return (tf.where(in_chain, position + 1 + byte, block_next),
                tf.where(in_chain, tf.not_equal(byte, 0), is_extension | is_image),
                frames + tf.cast(image, tf.int64),
                pixels + tf.where(image, area, 0),
                tf.logical_not(in_chain | is_extension | is_image))

    zero = tf.constant(0, tf.int64)
    _, _, frames, pixels, _ = tf.while_loop(
        lambda position, in_chain, frames, pixels, done: tf.logical_not(done) & (position < length),
        step, (13 + _color_table(at(10)), tf.constant(False), zero, zero, tf.constant(False)))
    return width, height, frames, tf.maximum(pixels, screen)  # no whole frame: decoding fails anyway


def declared_size(data):
    """(format, width, height, frames, pixels) of one encoded image from its header, int64
    scalars; ``pixels`` is what decoding would allocate (for an animated GIF, every frame).
    ``format`` indexes FORMAT_NAMES; an unsupported format has zero sizes."""
    raw = tf.io.decode_raw(tf.strings.substr(data, 0, 32), tf.uint8)
    head = tf.cast(tf.concat([raw, tf.zeros([32], tf.uint8)], 0)[:32], tf.int64)  # zero-padded

    def at(i):
        return head[i]

    webp = _starts(head, 0, b"RIFF") & _starts(head, 8, b"WEBP")
    animated = _starts(head, 12, b"VP8X") & tf.not_equal(tf.bitwise.bitwise_and(head[20], 2), 0)
    kind = tf.case([
        (_starts(head, 0, b"\xff\xd8\xff"), lambda: tf.constant(JPEG)),
        (_starts(head, 0, b"\x89PNG\r\n\x1a\n"), lambda: tf.constant(PNG)),
        (_starts(head, 0, b"GIF8"), lambda: tf.constant(GIF)),
        (_starts(head, 0, b"BM"), lambda: tf.constant(BMP)),
        (webp & animated, lambda: tf.constant(ANIMATED_WEBP)),
        (webp, lambda: tf.constant(WEBP)),
    ], default=lambda: tf.constant(UNKNOWN))

    def still(width, height):
        return width, height, tf.constant(1, tf.int64), width * height

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return still(shape[1], shape[0])

    def png():
        return still(_big(at, 16, 4), _big(at, 20, 4))

    def bmp():
        def signed(value):
            return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

        return still(signed(_little(at, 18, 4)), signed(_little(at, 22, 4)))

    def webp_still():
        lossy, lossless = _starts(head, 12, b"VP8 "), _starts(head, 12, b"VP8L")
        bits = _little(at, 21, 4)  # VP8L: 14 bits width - 1, 14 bits height - 1
        width = tf.where(lossy, _little(at, 26, 2) % 16384,
                         tf.where(lossless, bits % 16384 + 1, _little(at, 24, 3) + 1))
        height = tf.where(lossy, _little(at, 28, 2) % 16384,
                          tf.where(lossless, tf.bitwise.right_shift(bits, 14) % 16384 + 1, _little(at, 27, 3) + 1))
        return still(width, height)

    def unsupported():
        return still(tf.constant(0, tf.int64), tf.constant(0, tf.int64))

    width, height, frames, pixels = tf.switch_case(
        kind, [jpeg, png, lambda: _gif(data), bmp, webp_still, unsupported, unsupported])
    return kind, width, height, frames, pixels


def _text(*parts):
    """One string tensor from Python strings and int tensors (tf.strings.format quotes strings)."""
    return tf.strings.join([p if isinstance(p, str) or p.dtype == tf.string else tf.strings.as_string(p)
                            for p in parts])


def checked(data, limit: int, what: str = "image_bytes"):
    """``data`` (one encoded image), passed on only once its header says it is a supported
    format of at most ``limit`` pixels; otherwise InvalidArgument naming the size and the
    limit. Downstream ops read the returned tensor, so nothing decodes an image refused here."""
    kind, width, height, frames, pixels = declared_size(data)
    name = tf.gather(tf.constant(FORMAT_NAMES), kind)
    size = _text(width, "x", height)
    size = tf.where(frames > 1, _text(size, " in ", frames, " frames"), size)
    supported = tf.Assert(tf.less(kind, ANIMATED_WEBP), [tf.where(
        tf.equal(kind, ANIMATED_WEBP),
        f"{what}: an animated WebP image; this model reads {FORMATS} (WebP: still images only)",
        f"{what}: not a {FORMATS} image")])
    small = tf.Assert(tf.less_equal(pixels, limit), [_text(
        f"{what}: ", name, " image of ", size, " (", pixels, " pixels decoded) is over the limit of "
        f"{limit:,} pixels this model was exported with; resize it first")])
    with tf.control_dependencies([supported, small]):
        return tf.identity(data)


def checked_images(images, limit: int, what: str = "images"):
    """``images`` [batch, height, width, C], passed on only if batch x height x width is at
    most ``limit`` (the generator runs on the whole batch at once) and no side is zero."""
    shape = tf.shape(images, out_type=tf.int64)
    pixels = shape[0] * shape[1] * shape[2]
    check = tf.Assert(tf.logical_and(tf.less_equal(pixels, limit), tf.reduce_all(shape[:3] > 0)), [_text(
        f"{what}: ", shape[0], " image(s) of ", shape[2], "x", shape[1], " = ", pixels, " pixels; this model takes "
        f"1 to {limit:,} pixels per request")])
    with tf.control_dependencies([check]):
        return tf.identity(images)
