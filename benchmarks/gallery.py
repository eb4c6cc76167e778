"""The gallery: one picture per trained model (held-out inputs, its outputs and the baseline side
by side, its measure under it) and docs/gallery/README.md listing them with the commands that
trained them.

    python benchmarks/gallery.py cyclegan=exported/cyclegan/1 pix2pix=exported/pix2pix/1 \\
        gatys=runs/gatys --output docs/gallery

NAME=PATH: an exported version folder (scored by ``tf-translate evaluate`` on its held-out
data: its panel and its one-line measure) or a ``tf-translate stylize`` output folder (Gatys:
content, style and result, with the loss before and after).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def captioned(picture: Image.Image, title: str, caption: str, width: int = 640) -> Image.Image:
    """``picture`` scaled to at most ``width`` pixels, the title above and the caption below."""
    if picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)), Image.LANCZOS)
    lines = textwrap.wrap(caption, max(30, picture.width // 6))
    canvas = Image.new("RGB", (picture.width, picture.height + 18 + 14 * len(lines) + 6), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), title, fill="black")
    canvas.paste(picture, (0, 18))
    for k, line in enumerate(lines):
        draw.text((2, picture.height + 20 + 14 * k), line, fill=(60, 60, 60))
    return canvas


def exported_entry(path: Path, work: Path) -> tuple[Image.Image, str, str, str]:
    from tf_translate import cli, config
    from tf_translate.metrics import evaluate

    report = evaluate.evaluate(path, pictures=work)
    sheets = ([report["panel"]] if "panel" in report else
              [s["sheet"] for s in report.get("styles", {}).values()] + [report.get("blend_sheet")])
    pictures = [Image.open(p).convert("RGB") for p in sheets if p]
    picture = pictures[-1] if len(pictures) > 1 else pictures[0]  # a multi-style net: its blend sheet
    cfg = config.load(path)
    title = f"{cfg.method}, {cfg.data.crop_size} px, data: {cfg.data.data or 'embedded default'}"
    return picture, title, evaluate.headline(report), cli.train_command(cfg)


def stylize_entry(path: Path) -> tuple[Image.Image, str, str, str]:
    import tensorflow as tf

    from tf_translate.data.photos import load_image, sample_image
    from tf_translate.data.pictures import panel

    summary = json.loads((path / "losses.json").read_text())
    result = np.asarray(Image.open(path / "result.png").convert("RGB"), np.float32) / 127.5 - 1.0
    side = max(result.shape[:2])
    content, style = (tf.image.resize_with_crop_or_pad(load_image(summary[k], side), *result.shape[:2])[0].numpy()
                      for k in ("content", "style"))
    picture = Image.fromarray(panel([[content, style, result]], ("content", "style", "result")))
    first, last = summary["history"][0], summary["history"][-1]
    caption = (f"{summary['iterations']} {summary['config']['optimizer']} iterations in {summary['seconds']:.0f} s: "
               f"loss {first['total']:.4g} at the start, {last['total']:.4g} at the end (style {first['style']:.3g} "
               f"-> {last['style']:.3g}, content {first['content']:.3g} -> {last['content']:.3g})")
    defaults = {"content": sample_image("chelsea.png"), "style": sample_image("ihc.png")}  # stylize's own
    command = " ".join(["tf-translate stylize", *(f"--{k} {summary[k]}" for k in defaults
                                                  if Path(summary[k]) != Path(defaults[k]))])
    return picture, f"gatys, {side} px", caption, command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("entries", nargs="+", metavar="NAME=PATH", help="an export version or stylize output folder")
    parser.add_argument("--output", default="docs/gallery", help="folder of the pictures and README.md")
    args = parser.parse_args(argv)
    from tf_translate.quiet import quiet_tensorflow

    quiet_tensorflow()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    lines = ["# Gallery", "", "Written by `python benchmarks/gallery.py " + " ".join(args.entries) + "`: each picture "
             "shows held-out inputs, the model's outputs and the baseline, with the method's measure under it. "
             "Under each, the command that trained the model.", ""]
    for entry in args.entries:
        name, _, path = entry.partition("=")
        if not path:
            parser.error(f"{entry}: expected NAME=PATH")
        path = Path(path)
        with tempfile.TemporaryDirectory() as work:
            picture, title, caption, command = (stylize_entry(path) if (path / "losses.json").exists()
                                                else exported_entry(path, Path(work)))
        small = captioned(picture, f"{name}: {title}", caption).quantize(256, dither=Image.Dither.FLOYDSTEINBERG)
        small.save(output / f"{name}.png", optimize=True)  # 256 colours: a third of the bytes, committed
        lines += [f"## {name}", "", f"![{name}]({name}.png)", "", caption + ".", "", f"```\n{command}\n```", ""]
        print(f"{name}: {caption}")
    (output / "README.md").write_text("\n".join(lines))
    print(f"wrote {output / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
