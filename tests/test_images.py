"""Tests for tf_translate.data.images: every input is generated in tmp_path."""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from tf_translate.data.images import (
    MAX_PIXELS,
    DataError,
    ImageError,
    image_files,
    read_image,
    scan_images,
)

# --------------------------------------------------------------------------
# helpers


def check_rgb(arr, h, w):
    """Every successful read must give a C-contiguous uint8 (H, W, 3) array."""
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8
    assert arr.shape == (h, w, 3)
    assert arr.flags["C_CONTIGUOUS"]
    return arr


def noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png_bytes(width, height, bit_depth, colour_type, rows):
    """Hand-made PNG (Pillow cannot write 16-bit RGB)."""

    def chunk(tag, data):
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def assert_one_line_error(excinfo, path, reason):
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    assert reason in msg


# --------------------------------------------------------------------------
# broken files


def _truncated_png(tmp_path):
    p = tmp_path / "cut.png"
    Image.fromarray(noise(64, 64)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _truncated_jpeg(tmp_path):
    p = tmp_path / "cut.jpg"
    Image.fromarray(noise(64, 64)).save(p, quality=95)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _empty(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    return p


def _random_bytes(tmp_path):
    p = tmp_path / "random.bin"
    p.write_bytes(np.random.default_rng(1).bytes(4096))
    return p


def _text_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not an image\n" * 20)
    return p


def _text_named_jpg(tmp_path):
    p = tmp_path / "photo.jpg"
    p.write_text("<html>404 not found</html>\n")
    return p


@pytest.mark.parametrize(
    "make, reason",
    [
        (_empty, "empty file"),
        (_truncated_png, "truncated or corrupt image data"),
        (_truncated_jpeg, "truncated or corrupt image data"),
        (_random_bytes, "not an image"),
        (_text_file, "not an image"),
        (_text_named_jpg, "not an image"),
    ],
)
def test_broken_files_raise_one_line_image_error(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(ImageError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, path, reason)
    assert isinstance(excinfo.value, ValueError)
    # No chained exception that a traceback would print as a second story.
    err = excinfo.value
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__


def test_truncated_jpeg_refused_even_if_pillow_set_lenient(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = _truncated_jpeg(tmp_path)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        read_image(path)
    # The global setting is restored afterwards.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_missing_file_and_folder_as_file(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        read_image(tmp_path / "nope.png")
    assert_one_line_error(excinfo, tmp_path / "nope.png", "no such file")
    with pytest.raises(ImageError) as excinfo:
        read_image(tmp_path)
    assert_one_line_error(excinfo, tmp_path, "folder")


# --------------------------------------------------------------------------
# size limit


def test_huge_image_refused_from_header_without_decoding(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (3000, 3000), (10, 20, 30)).save(path)

    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy_load(self, *args, **kwargs):
        decoded.append(self)
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    with pytest.raises(ImageError) as excinfo:
        read_image(path, max_pixels=1_000_000)
    assert_one_line_error(excinfo, path, "3000x3000")
    assert "1000000" in str(excinfo.value)
    assert decoded == []  # refused from the header alone

    # The same file within the limit really is decoded (so the spy works).
    arr = check_rgb(read_image(path, max_pixels=9_000_000), 3000, 3000)
    assert decoded
    assert tuple(arr[1234, 2345]) == (10, 20, 30)


def test_limit_is_inclusive_and_default_documented(tmp_path):
    assert MAX_PIXELS == 50_000_000
    path = tmp_path / "a.png"
    Image.new("RGB", (20, 10)).save(path)
    check_rgb(read_image(path, max_pixels=200), 10, 20)
    with pytest.raises(ImageError, match="20x10"):
        read_image(path, max_pixels=199)


def test_pillow_bomb_warning_and_error_do_not_leak(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    warn_size = tmp_path / "warn.png"  # 1600 px: above Pillow's warning level
    Image.new("L", (40, 40), 200).save(warn_size)
    bomb_size = tmp_path / "bomb.png"  # 2500 px: above Pillow's error level
    Image.new("L", (50, 50), 200).save(bomb_size)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any leaked warning fails the test
        arr = check_rgb(read_image(warn_size, max_pixels=None), 40, 40)
        assert (arr == 200).all()
        with pytest.raises(ImageError) as excinfo:
            read_image(warn_size, max_pixels=1500)
        assert "40x40" in str(excinfo.value)
        with pytest.raises(ImageError) as excinfo:
            read_image(bomb_size, max_pixels=None)
        assert_one_line_error(excinfo, bomb_size, "resize it first")


# --------------------------------------------------------------------------
# colour modes


def test_greyscale(tmp_path):
    grey = np.array([[0, 50, 100], [150, 200, 255]], dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(path)
    arr = check_rgb(read_image(path), 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(arr[..., c], grey)


def test_one_bit(tmp_path):
    bits = np.array([[True, False, True, False], [False, False, True, True]])
    path = tmp_path / "bits.png"
    Image.fromarray(bits).convert("1").save(path)
    assert Image.open(path).mode == "1"
    arr = check_rgb(read_image(path), 2, 4)
    np.testing.assert_array_equal(arr, np.repeat(np.where(bits, 255, 0)[..., None], 3, axis=2))


def _palette_image(indices, colours):
    im = Image.fromarray(np.array(indices, dtype=np.uint8), "P")
    flat = [v for colour in colours for v in colour]
    im.putpalette(flat + [0] * (768 - len(flat)))
    return im


def test_palette(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (12, 34, 56)]
    path = tmp_path / "pal.png"
    _palette_image([[0, 1], [2, 3]], colours).save(path)
    assert Image.open(path).mode == "P"
    arr = check_rgb(read_image(path), 2, 2)
    np.testing.assert_array_equal(arr.reshape(4, 3), np.array(colours))


def test_palette_with_transparency_uses_background(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0)]
    path = tmp_path / "paltrans.png"
    _palette_image([[0, 1]], colours).save(path, transparency=1)
    white = check_rgb(read_image(path), 1, 2)
    assert tuple(white[0, 0]) == (255, 0, 0)
    assert tuple(white[0, 1]) == (255, 255, 255)
    black = read_image(path, background=(0, 0, 0))
    assert tuple(black[0, 1]) == (0, 0, 0)


def test_rgba_composited_onto_white(tmp_path):
    rgba = np.array(
        [[[255, 0, 0, 128], [0, 0, 255, 255], [0, 255, 0, 0]]], dtype=np.uint8
    )
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    arr = check_rgb(read_image(path), 1, 3)
    np.testing.assert_allclose(arr[0, 0], (255, 128, 128), atol=1)
    assert tuple(arr[0, 1]) == (0, 0, 255)  # opaque: unchanged
    assert tuple(arr[0, 2]) == (255, 255, 255)  # fully transparent: background
    grey_bg = read_image(path, background=(100, 100, 100))
    np.testing.assert_allclose(grey_bg[0, 0], (178, 50, 50), atol=1)
    assert tuple(grey_bg[0, 2]) == (100, 100, 100)


def test_la_composited(tmp_path):
    la = np.array([[[0, 255], [0, 0], [200, 128]]], dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    arr = check_rgb(read_image(path), 1, 3)
    assert tuple(arr[0, 0]) == (0, 0, 0)
    assert tuple(arr[0, 1]) == (255, 255, 255)
    np.testing.assert_allclose(arr[0, 2], (227, 227, 227), atol=1)


SIXTEEN = np.array([[0, 1, 128, 129, 257, 1000], [32767, 32768, 40000, 65279, 65534, 65535]])


def _expected_8bit(v):
    return (2 * np.asarray(v, dtype=np.int64) + 257) // 514  # round(v / 257), no ties


def test_sixteen_bit_grey_png_exact(tmp_path):
    path = tmp_path / "grey16.png"
    Image.fromarray(SIXTEEN.astype(np.uint16)).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    arr = check_rgb(read_image(path), 2, 6)
    expected = _expected_8bit(SIXTEEN)
    assert expected[0].tolist() == [0, 0, 0, 1, 1, 4]
    for c in range(3):
        np.testing.assert_array_equal(arr[..., c], expected)


def test_sixteen_bit_big_endian_tiff(tmp_path):
    path = tmp_path / "grey16b.tif"
    Image.fromarray(SIXTEEN.astype(">u2")).save(path)
    assert Image.open(path).mode == "I;16B"
    arr = check_rgb(read_image(path), 2, 6)
    np.testing.assert_array_equal(arr[..., 1], _expected_8bit(SIXTEEN))


def test_thirty_two_bit_int_treated_as_sixteen_bit(tmp_path):
    values = np.array([[-5, 0, 257, 65535, 70000]], dtype=np.int32)
    path = tmp_path / "int32.tif"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I"
    arr = check_rgb(read_image(path), 1, 5)
    assert arr[0, :, 0].tolist() == [0, 0, 1, 255, 255]


def test_float_assumed_zero_to_one(tmp_path):
    values = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan]], dtype=np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"
    arr = check_rgb(read_image(path), 1, 6)
    assert arr[0, :, 2].tolist() == [0, 0, 128, 255, 255, 0]


def test_sixteen_bit_rgb_png(tmp_path):
    path = tmp_path / "rgb16.png"
    rows = [struct.pack(">6H", 65535, 32768, 0, 0, 65535, 257)]
    path.write_bytes(png_bytes(2, 1, 16, 2, rows))
    arr = check_rgb(read_image(path), 1, 2)
    np.testing.assert_allclose(arr[0, 0], (255, 128, 0), atol=1)
    np.testing.assert_allclose(arr[0, 1], (0, 255, 1), atol=1)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    arr = check_rgb(read_image(path), 8, 16)
    assert np.abs(arr.astype(int) - (255, 0, 0)).max() <= 8  # red, JPEG-lossy


# --------------------------------------------------------------------------
# orientation, animation, format sniffing, bytes


def test_exif_orientation_applied(tmp_path):
    src = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(2, 4, 3) * 10  # 4 wide, 2 high
    im = Image.fromarray(src)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.png"
    im.save(path, exif=exif)
    arr = check_rgb(read_image(path), 4, 2)
    np.testing.assert_array_equal(arr, np.rot90(src, k=-1))
    # Clockwise: the stored top-left pixel ends up top-right, bottom-left top-left.
    assert tuple(arr[0, 1]) == tuple(src[0, 0])
    assert tuple(arr[0, 0]) == tuple(src[1, 0])


FRAMES = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _save_animation(path, fmt, **kwargs):
    frames = [Image.new("RGB", (6, 5), colour) for colour in FRAMES]
    frames[0].save(
        path, format=fmt, save_all=True, append_images=frames[1:], duration=100, **kwargs
    )
    with Image.open(path) as im:
        assert getattr(im, "n_frames", 1) == 3


@pytest.mark.parametrize(
    "name, fmt, kwargs",
    [
        ("anim.gif", "GIF", {"loop": 0}),
        ("anim", "GIF", {"loop": 0}),  # no extension, as some datasets ship them
        ("anim.png", "PNG", {}),
        ("anim.webp", "WEBP", {"lossless": True}),
    ],
)
def test_animation_gives_first_frame(tmp_path, name, fmt, kwargs):
    path = tmp_path / name
    _save_animation(path, fmt, **kwargs)
    arr = check_rgb(read_image(path), 5, 6)
    assert (arr == FRAMES[0]).all()


def test_format_not_decided_by_extension(tmp_path):
    src = noise(3, 5, seed=2)
    path = tmp_path / "really_a_png.jpg"
    Image.fromarray(src).save(path, format="PNG")
    np.testing.assert_array_equal(read_image(path), src)  # lossless: exact


def test_bytes_input(tmp_path):
    src = noise(4, 7, seed=3)
    path = tmp_path / "x.png"
    Image.fromarray(src).save(path)
    data = path.read_bytes()
    np.testing.assert_array_equal(check_rgb(read_image(data), 4, 7), src)
    np.testing.assert_array_equal(read_image(bytearray(data)), src)

    with pytest.raises(ImageError) as excinfo:
        read_image(b"not an image at all", name="upload.png")
    assert_one_line_error(excinfo, "upload.png", "not an image")
    with pytest.raises(ImageError) as excinfo:
        read_image(b"")
    assert_one_line_error(excinfo, "<bytes>", "empty file")


def test_str_path_accepted(tmp_path):
    path = tmp_path / "s.png"
    Image.new("RGB", (3, 2), (1, 2, 3)).save(path)
    assert (check_rgb(read_image(str(path)), 2, 3) == (1, 2, 3)).all()


# --------------------------------------------------------------------------
# image_files


def test_image_files_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as excinfo:
        image_files(missing)
    assert str(excinfo.value) == f"{missing}: no such folder"


def test_image_files_not_a_folder(tmp_path):
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(DataError) as excinfo:
        image_files(f)
    assert str(excinfo.value) == f"{f}: not a folder"


def test_image_files_empty_and_hidden_only(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as excinfo:
        image_files(empty)
    assert str(excinfo.value) == f"{empty}: folder is empty"

    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".DS_Store").write_bytes(b"junk")
    (hidden / ".secret.png").write_bytes(b"junk")
    (hidden / "subdir").mkdir()
    with pytest.raises(DataError) as excinfo:
        image_files(hidden)
    assert str(excinfo.value) == f"{hidden}: folder is empty"


def test_image_files_lists_regular_files_sorted_not_recursive(tmp_path):
    for name in ["b.png", "a", "c.txt", ".hidden.png", "A.gif"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.png").write_bytes(b"x")
    files = image_files(tmp_path)
    assert [p.name for p in files] == ["A.gif", "a", "b.png", "c.txt"]
    assert all(p.parent == tmp_path for p in files)
    assert image_files(str(tmp_path)) == files


# --------------------------------------------------------------------------
# scan_images


def test_scan_images_keeps_good_in_order_and_warns_once_per_bad(tmp_path):
    good1 = tmp_path / "z_good.png"
    Image.new("RGB", (4, 4), (9, 9, 9)).save(good1)
    bad1 = _text_file(tmp_path)
    good2 = tmp_path / "a_good"
    Image.new("L", (4, 4)).save(good2, format="GIF")
    bad2 = _truncated_png(tmp_path)
    big = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(big)

    messages = []
    result = scan_images(
        [good1, bad1, good2, str(bad2), big], max_pixels=5000, warn=messages.append
    )
    assert result == [good1, good2]
    assert len(messages) == 3
    assert messages[0].startswith(f"{bad1}: ") and "not an image" in messages[0]
    assert messages[1].startswith(f"{bad2}: ") and "truncated" in messages[1]
    assert messages[2].startswith(f"{big}: ") and "100x100" in messages[2]
    assert all("\n" not in m for m in messages)


def test_scan_images_default_warning_goes_to_stderr(tmp_path, capsys):
    good = tmp_path / "g.png"
    Image.new("RGB", (2, 2)).save(good)
    bad = _empty(tmp_path)
    assert scan_images([bad, good]) == [good]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"skipping {bad}: empty file\n"
