#!/usr/bin/env python3
"""Side by side with chainer-gogh's published results: cat.png stylised with style_0 ... style_7.

Runs the ``chainer-gogh`` preset (L-BFGS by default) for each style in
``--data`` (the development data's ``styles`` folder) and writes one contact sheet (content | style | chainer-gogh's
result | ours) plus a JSON of iterations/s and final losses per style.

    python benchmarks/compare_chainer_gogh.py [--size 256] [--iterations 300] [--lam L] [--styles 0,1,...]
        [--output runs/chainer_gogh]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tf_translate.methods import gatys  # noqa: E402
from tf_translate.nn import perceptual
from tf_translate.training.callbacks import panel  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the styles folder of the development data, e.g. "
                   "../shared/data/styles (content/, style/, chainer_gogh_results/)")
    p.add_argument("--size", type=int, default=256, help="longer side of our output (theirs: 435)")
    p.add_argument("--iterations", type=int, default=300, help="L-BFGS iterations per style (theirs: 5000 Adam)")
    p.add_argument("--lam", type=float, help="content weight (default: the preset's, for our VGG weights)")
    p.add_argument("--optimizer", default="lbfgs", help="lbfgs | adam")
    p.add_argument("--styles", default="0,1,2,3,4,5,6,7", help="which style_K to run")
    p.add_argument("--output", default="runs/chainer_gogh", help="output folder")
    args = p.parse_args(argv)
    data, out = Path(args.data), Path(args.output)
    if not (data / "chainer_gogh_results").is_dir():
        print(f"error: {data}/chainer_gogh_results not found (the shared data beside the project)", file=sys.stderr)
        return 2
    content = data / "content" / "cat.png"
    rows, report = [], {"command": " ".join(sys.argv), "styles": {}}
    for k in (int(s) for s in args.styles.split(",")):
        style = next((data / "style").glob(f"style_{k}.*"))
        cfg = gatys.GatysConfig(preset="chainer-gogh", size=args.size, iterations=args.iterations,
                                optimizer=args.optimizer, content_weight=args.lam, save_every=25)
        summary = gatys.stylize(cfg, content, style, out / f"style_{k}", log=lambda m: print(m, file=sys.stderr))
        report["styles"][k] = {key: summary[key] for key in ("iterations", "loss_evaluations", "seconds",
                                                              "iterations_per_s", "size")}
        report["styles"][k]["final"] = summary["history"][-1]
        tile = lambda path: perceptual.load_image(path, args.size)[0].numpy()  # noqa: E731
        rows.append([square(tile(content), args.size), square(tile(style), args.size),
                     square(tile(data / "chainer_gogh_results" / f"im{k}.png"), args.size),
                     square(tile(out / f"style_{k}" / "result.png"), args.size)])
    from PIL import Image

    Image.fromarray(panel(rows, ("content", "style", "chainer-gogh (5000 Adam, 435 px)",
                                 f"ours ({args.iterations} {args.optimizer}, {args.size} px)"))).save(out / "sheet.png")
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(out / "sheet.png")
    return 0


def square(image, size):
    """Centre an image on a white square canvas of ``size`` (a contact sheet's tile)."""
    import numpy as np

    canvas = np.ones((size, size, 3), np.float32)
    h, w = image.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    canvas[top: top + h, left: left + w] = image
    return canvas


if __name__ == "__main__":
    sys.exit(main())
