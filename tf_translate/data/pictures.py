"""Pictures for people: sample panels with titles, animated GIFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tf_translate.data.pipeline import to_uint8


def panel(rows: list, titles: tuple[str, ...] = (), gap: int = 2, min_width: int = 72) -> np.ndarray:
    """A grid of float [-1, 1] images (rows of columns) as one uint8 RGB picture with column
    titles; images narrower than ``min_width`` are enlarged by a whole factor (nearest), so
    that 32-px digits can be seen and their titles fit."""
    scale = -(-min_width // rows[0][0].shape[1])
    height, width = (side * scale for side in rows[0][0].shape[:2])
    header = 14 if titles else 0
    n_cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (n_cols * (width + gap) + gap, header + len(rows) * (height + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((gap + c * (width + gap) + 2, 1), title, fill="black")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            tile = np.asarray(to_uint8(image))
            if tile.shape[-1] == 1:
                tile = np.repeat(tile, 3, axis=-1)
            tile = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
            canvas.paste(Image.fromarray(tile), (gap + c * (width + gap), header + gap + r * (height + gap)))
    return np.asarray(canvas)


def save_gif(path: Path, pictures: list[np.ndarray], ms_per_frame: int = 250) -> None:
    """An animated GIF of uint8 RGB pictures, looping forever."""
    images = [Image.fromarray(p) for p in pictures]
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
