"""Hostile requests to every signature of exported models, in a graph session as TF Serving runs
them, in its own process (a crash must not take pytest down): decompression bombs (images that
declare a huge size in a small file) to every bytes signature, and NaN, Inf, empty, 1 x 1,
huge and wrongly shaped tensors to every float signature; then a good request to each.

Usage: ``fuzz_signatures.py OUT.json EXPORT_VERSION_DIR...``; writes {export: [{signature,
case, outcome}]}, outcome "result", "InvalidArgument: <message>" or "refused: <error type>"
(a feed of the wrong rank or channels, refused before the graph runs, as TF Serving does).
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support import serving  # noqa: E402
from tf_translate import config  # noqa: E402
from tf_translate.export import serving_config  # noqa: E402


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def gif(screen: tuple[int, int], frame: tuple[int, int]) -> bytes:
    """A GIF of one 1 x 1 pixel of image data whose screen and image descriptor declare the
    given (width, height)."""
    palette = bytes(6)  # two black entries
    descriptor = b"\x2c" + struct.pack("<HHHH", 0, 0, *frame) + b"\x00"
    return (b"GIF89a" + struct.pack("<HH", *screen) + b"\x80\x00\x00" + palette + descriptor
            + b"\x02\x02\x44\x01\x00" + b"\x3b")


def patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


def bombs() -> dict[str, bytes]:
    """Small files that declare a huge image, by format, and the size each declares."""
    small = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8))
    jpeg = encoded(small, "JPEG")
    sof = jpeg.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    lossy, lossless = encoded(small, "WEBP", quality=80), encoded(small, "WEBP", lossless=True)
    bits = struct.unpack("<I", lossless[21:25])[0] & ~((1 << 28) - 1) | 16383 | (16383 << 14)
    translucent = small.convert("RGBA")
    translucent.putalpha(128)
    extended = encoded(translucent, "WEBP", quality=80)  # alpha: a VP8X canvas header
    assert extended[12:16] == b"VP8X"
    return {
        "png 12000x12000": encoded(Image.new("L", (12000, 12000)), "PNG", optimize=True),
        "jpeg 60000x60000": patched(jpeg, sof + 5, struct.pack(">HH", 60000, 60000)),
        "gif screen 65535x65535": gif((65535, 65535), (1, 1)),
        "gif frame 60000x60000": gif((1, 1), (60000, 60000)),
        "bmp 100000x100000": patched(encoded(small, "BMP"), 18, struct.pack("<ii", 100000, -100000)),
        "webp lossy 16383x16383": patched(lossy, 26, struct.pack("<HH", 16383, 16383)),
        "webp lossless 16384x16384": patched(lossless, 21, struct.pack("<I", bits)),
        "webp canvas 16777216x16777216": patched(extended, 24, b"\xff" * 6),
        "webp animated": encoded(small, "WEBP", save_all=True, append_images=[small.rotate(90)]),
    }


def attempt(runner: serving.SessionRunner, signature: str, inputs: dict) -> str:
    try:
        runner.run(signature, inputs)
        return "result"
    except tf.errors.InvalidArgumentError as e:
        lines = [line.strip() for line in str(e).splitlines() if "assertion failed" in line]
        return "InvalidArgument: " + (lines[0] if lines else str(e).splitlines()[0])
    except (ValueError, TypeError) as e:  # the session refused the feed's shape
        return f"refused: {type(e).__name__}"


def float_cases(specs: dict, domains) -> dict[str, dict]:
    def made(batch, side, fill=None, rank=4, channels=0):
        values = serving_config.example_inputs(specs, batch=batch, side=side, domains=domains)
        images = values["images"]
        if fill is not None:
            images[...] = fill
        if channels:
            images = np.zeros(images.shape[:-1] + (channels,), np.float32)
        values["images"] = images[0] if rank == 3 else images
        return values

    channels = specs["images"][1][-1]
    return {"nan": made(1, 16, np.nan), "inf": made(1, 16, np.inf), "-inf": made(1, 16, -np.inf),
            "empty batch": made(0, 16), "zero side": made(1, 0), "1x1": made(1, 1),
            "3000x3000": made(1, 3000), "100 x 256x256": made(100, 256), "rank 3": made(1, 16, rank=3),
            "wrong channels": made(1, 16, channels=channels + 1)}


def fuzz(version: Path) -> list[dict]:
    cfg = config.load(version / "config.json")
    runner = serving.SessionRunner(version)
    out = []
    try:
        for signature in sorted(runner.signatures):
            specs = runner.inputs(signature)
            good = serving_config.example_inputs(specs, batch=1, side=32, domains=cfg.data.domains)
            if "image_bytes" in specs:
                for case, data in bombs().items():
                    out.append({"signature": signature, "case": case,
                                "outcome": attempt(runner, signature, {**good, "image_bytes": np.array([data], object)})})
            elif "images" in specs and specs["images"][0] == tf.float32:
                for case, inputs in float_cases(specs, cfg.data.domains).items():
                    out.append({"signature": signature, "case": case, "outcome": attempt(runner, signature, inputs)})
            out.append({"signature": signature, "case": "good", "outcome": attempt(runner, signature, good)})
    finally:
        runner.close()
    return out


def main() -> None:
    out, *versions = sys.argv[1:]
    Path(out).write_text(json.dumps({version: fuzz(Path(version)) for version in versions}, indent=1))


if __name__ == "__main__":
    main()
