"""Read user-supplied images robustly with Pillow.

Everything here turns "some file a user dropped in a folder" into either an
RGB ``uint8`` array or a one-line, user-facing error. The rules:

* The format is identified from the file contents, never from the extension,
  so files without (or with a wrong) extension work.
* Images larger than ``max_pixels`` (width * height) are refused from the
  header, before any pixel data is decoded.
* Broken files (empty, truncated, corrupt, not an image) raise
  :class:`ImageError` whose ``str()`` is a single line ``"<path>: <reason>"``.
* EXIF orientation is applied; animated images give their first frame.
* Every colour mode becomes RGB. Transparency (alpha channels and palette or
  colour-key transparency) is composited onto ``background``, white by default.
* High bit depths are scaled to 8 bits by their full range:
  16-bit greyscale (``I;16*``) as ``round(v / 257)``; 32-bit integer (``I``)
  is treated as 16-bit data, clipped to 0..65535 and scaled the same way;
  32-bit float (``F``) is taken to be in [0, 1], clipped, and ``round(v * 255)``.
  16-bit RGB(A) PNGs are already reduced to 8 bits by Pillow (high byte).
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import stat
import sys
import threading
import warnings
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tf_translate.errors import UsageError

__all__ = [
    "MAX_PIXELS",
    "ImageError",
    "DataError",
    "read_image",
    "image_files",
    "scan_images",
]

#: Default refusal threshold in pixels (width * height). 50 megapixels is far
#: beyond any training resolution, but a 20000x20000 image (400 MP, ~1.2 GB as
#: RGB) is refused before it can exhaust memory.
MAX_PIXELS = 50_000_000


class ImageError(UsageError):
    """One image file is unusable. ``str(e)`` is one line: ``"<path>: <reason>"``."""


class DataError(UsageError):
    """A folder-level problem (missing or empty folder, too few good images). One line."""


_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def read_image(
    source,
    *,
    max_pixels: int | None = MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
    name: str | None = None,
) -> np.ndarray:
    """Decode one image into a C-contiguous ``uint8`` array of shape (H, W, 3), RGB.

    ``source`` is a path (``str`` / ``os.PathLike``) or the file's bytes; for
    bytes, ``name`` (default ``"<bytes>"``) is used in error messages.
    ``max_pixels`` (``None`` = no limit of our own) refuses larger images from
    the header alone. Alpha and other transparency is composited onto
    ``background`` (white by default).

    Pillow's own ``Image.MAX_IMAGE_PIXELS`` guard is left untouched: images
    beyond twice that value (about 179 MP by default) are always refused.

    Raises :class:`ImageError` for any unusable input; never anything else for
    a bad file.
    """
    label, fp = _open_source(source, name)
    try:
        # Pillow warns above MAX_IMAGE_PIXELS; we enforce our own limit instead,
        # so silence the warning here (only here) rather than let it leak.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(fp, label) as im:
                width, height = im.size  # from the header; nothing decoded yet
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageError(
                        f"{label}: image is {width}x{height} pixels, more than the "
                        f"limit of {max_pixels}; resize it first"
                    )
                _decode(im, label)  # frame 0: Pillow opens animations there
                return _to_rgb_array(_orient(im), background, label)
    finally:
        fp.close()


def image_files(folder) -> list[pathlib.Path]:
    """Regular files directly in ``folder`` (not recursive), sorted by name.

    Hidden files (name starting with ``.``) are skipped. Nothing is decided by
    extension; use :func:`scan_images` to find out which files are images.
    Raises :class:`DataError` if the folder is missing, not a folder, or has no
    such files.
    """
    path = pathlib.Path(folder)
    if not path.exists():
        raise DataError(f"{folder}: no such folder")
    if not path.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(
        (p for p in path.iterdir() if not p.name.startswith(".") and p.is_file()),
        key=lambda p: p.name,
    )
    if not files:
        raise DataError(f"{folder}: folder is empty")
    return files


def input_files(inputs: list[str]) -> list[pathlib.Path]:
    """Files named, and the files of folders named, in order."""
    files = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            files.extend(image_files(path))
        elif path.exists():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return files


def scan_images(
    paths: Iterable,
    *,
    max_pixels: int | None = MAX_PIXELS,
    warn: Callable[[str], None] | None = None,
    check: Callable[[np.ndarray], str | None] | None = None,
) -> list[pathlib.Path]:
    """Fully decode each file and return the good ones, in the given order.

    For every unusable file ``warn`` is called once with a one-line message
    (default: print ``"skipping <path>: <reason>"`` to stderr). ``check``, if
    given, sees each decoded image and returns why it is unusable, or None.
    Never raises for a bad file.
    """
    if warn is None:
        warn = _warn_stderr
    good = []
    for p in paths:
        try:
            image = read_image(p, max_pixels=max_pixels)
        except ImageError as e:
            warn(str(e))
            continue
        problem = check(image) if check else None
        if problem:
            warn(f"{p}: {problem}")
        else:
            good.append(pathlib.Path(p))
    return good


# --------------------------------------------------------------------------
# helpers


def _warn_stderr(message: str) -> None:
    print(f"skipping {message}", file=sys.stderr)


def _open_source(source, name):
    """Return (label for messages, binary file object), or raise ImageError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name if name is not None else "<bytes>"
        data = bytes(source)
        if not data:
            raise ImageError(f"{label}: empty file")
        return label, io.BytesIO(data)

    label = name if name is not None else os.fspath(source)
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except OSError as e:
        raise ImageError(f"{label}: cannot read file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{label}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):  # FIFOs, devices: opening could block forever
        raise ImageError(f"{label}: not a regular file")
    if st.st_size == 0:
        raise ImageError(f"{label}: empty file")
    try:
        return label, open(source, "rb")
    except OSError as e:
        raise ImageError(f"{label}: cannot read file ({e.strerror or e})") from None


def _open(fp, label) -> Image.Image:
    """Identify the format and read the header only."""
    try:
        return Image.open(fp)
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        # Pillow's hard limit fired before we could read the size ourselves.
        raise ImageError(
            f"{label}: image is larger than Pillow's limit of "
            f"{2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels; resize it first"
        ) from None
    except Exception:  # plugins raise a zoo of types on mangled headers
        raise ImageError(f"{label}: truncated or corrupt image data") from None


def _decode(im: Image.Image, label) -> None:
    """Decode all pixel data, refusing truncated files."""
    try:
        with _refuse_truncated():
            im.load()
    except Image.DecompressionBombError:
        raise ImageError(f"{label}: image is too large to decode safely") from None
    except Exception:
        raise ImageError(f"{label}: truncated or corrupt image data") from None


# Pillow has only a global switch for truncated files. If some other code set
# ImageFile.LOAD_TRUNCATED_IMAGES = True, Pillow would silently pad truncated
# files with grey; we force it off while any read_image call is decoding and
# restore it when the last one finishes (counted, so threads cannot leave it
# changed for good).
_truncated_lock = threading.Lock()
_truncated_users = 0
_truncated_saved = False


@contextlib.contextmanager
def _refuse_truncated():
    global _truncated_users, _truncated_saved
    with _truncated_lock:
        if _truncated_users == 0:
            _truncated_saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _truncated_users += 1
    try:
        yield
    finally:
        with _truncated_lock:
            _truncated_users -= 1
            if _truncated_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _truncated_saved


def _orient(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, if any."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        # A malformed EXIF block should not make good pixels unusable.
        return im


def _to_rgb_array(im: Image.Image, background, label) -> np.ndarray:
    mode = im.mode

    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        v = np.asarray(im).astype(np.float64)  # asarray handles byte order
        grey = np.rint(np.clip(v, 0, 65535) / 257.0)
        return _grey_to_rgb(grey)
    if mode == "F":
        v = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        grey = np.rint(np.clip(v, 0.0, 1.0) * 255.0)
        return _grey_to_rgb(grey)

    # Palette / colour-key transparency lives in im.info, not in a channel.
    if mode in _ALPHA_MODES or "transparency" in im.info:
        try:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        except Exception:
            raise ImageError(f"{label}: unsupported colour mode {mode}") from None
        alpha = rgba[..., 3:] / 255.0
        bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
        out = np.rint(rgba[..., :3] * alpha + bg * (1.0 - alpha))
        return np.ascontiguousarray(out, dtype=np.uint8)

    if mode != "RGB":
        try:
            im = im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX, ...
        except Exception:
            raise ImageError(f"{label}: unsupported colour mode {mode}") from None
    return np.array(im, dtype=np.uint8, order="C")


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    g = grey.astype(np.uint8)
    return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
