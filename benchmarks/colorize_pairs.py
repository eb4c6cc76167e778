"""Writes a paired data set for pix2pix from the embedded cartoon2photo images: colourisation,
each file a greyscale image beside its colour original (A|B); train/ from trainA and trainB,
test/ from testA and testB. The gallery's pix2pix-on-pairs model trains on it:

    python benchmarks/colorize_pairs.py --output runs/colorize_data
    tf-translate train --method pix2pix --data runs/colorize_data --image-size 128 ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tf_translate.data.sources import SAMPLES  # noqa: E402


def write_pairs(output: Path) -> int:
    count = 0
    for split in ("train", "test"):
        folder = output / split
        folder.mkdir(parents=True, exist_ok=True)
        for domain in "AB":
            for path in sorted((SAMPLES / "cartoon2photo" / f"{split}{domain}").glob("*.jpg")):
                colour = Image.open(path).convert("RGB")
                pair = Image.new("RGB", (2 * colour.width, colour.height))
                pair.paste(colour.convert("L").convert("RGB"), (0, 0))
                pair.paste(colour, (colour.width, 0))
                pair.save(folder / f"{path.stem}.png")
                count += 1
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--output", required=True, help="folder to write train/ and test/ into")
    args = parser.parse_args(argv)
    print(f"wrote {write_pairs(Path(args.output))} pairs to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
