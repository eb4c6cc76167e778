#!/usr/bin/env python3
"""CycleGAN quality check on real data: Yale faces lit from the left -> lit from the right.

Builds the unpaired layout from the Yale Face Database (``SHARED/yalefaces/subjectNN.leftlight``
and ``.rightlight``) in ``WORK/data``::

    trainA/subjectNN  leftlight,  subjects 01-08     trainB/subjectNN  rightlight, subjects 01-08
    testA/subjectNN   leftlight,  subjects 09-11     testB/subjectNN   rightlight, subjects 09-11

(the same file name in testA/ and testB/, so the evaluator scores G(left) against the same
subject's real right-lit photo), then runs the project's own commands as a user would:

    python scripts/train.py --method cyclegan --data WORK/data --output WORK/run
        --export-dir WORK/exported --image-size 64 --n-blocks 6 --domains left,right
        --validate-every 200 --epochs E --decay-epochs D --steps-per-epoch S [extra flags]
    python scripts/evaluate.py --model WORK/exported/<version>
    python scripts/export.py --run WORK/run --best --export-dir WORK/exported_best
    python scripts/evaluate.py --model WORK/exported_best/<version>

and draws ``WORK/panel.png`` (and ``WORK/panel_best.png``): per test subject, leftlight input |
G(input) | real rightlight, preprocessed exactly as the evaluator does (resize to the load
size, centre crop to the crop size), shown x3.

Usage: python benchmarks/yale_lighting.py [--shared ../shared/data] [--work runs/yale_lighting]
           [--steps-per-epoch N] [--epochs N] [--decay-epochs N] [extra train flags...]

Re-running with the same --work resumes (or, if finished, only re-exports) the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
TRAIN_SUBJECTS = [f"subject{i:02d}" for i in range(1, 9)]
TEST_SUBJECTS = [f"subject{i:02d}" for i in range(9, 12)]
DOMAINS = ("left", "right")
UPSCALE = 3


def fail(message: str) -> None:
    print(f"{Path(sys.argv[0]).stem}: {message}", file=sys.stderr)
    sys.exit(2)


def build_layout(yale: Path, data: Path) -> None:
    """Symlink (or copy) the left/right-lit photos into trainA/trainB/testA/testB."""
    layout = {"trainA": (TRAIN_SUBJECTS, "leftlight"), "trainB": (TRAIN_SUBJECTS, "rightlight"),
              "testA": (TEST_SUBJECTS, "leftlight"), "testB": (TEST_SUBJECTS, "rightlight")}
    missing = [f"{s}.{light}" for subjects, light in layout.values() for s in subjects
               if not (yale / f"{s}.{light}").is_file()]
    if missing:
        fail(f"{yale}: missing {len(missing)} file(s): {', '.join(missing)}")
    for sub, (subjects, light) in layout.items():
        folder = data / sub
        folder.mkdir(parents=True, exist_ok=True)
        for s in subjects:
            src, dst = (yale / f"{s}.{light}").resolve(), folder / s
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            try:
                os.symlink(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    print(f"data: {data} (train {len(TRAIN_SUBJECTS)} per domain, test {len(TEST_SUBJECTS)} pairs)", flush=True)


def run(cmd: list[str]) -> tuple[str, float]:
    """Run a command, echoing it and its output; returns (stdout, seconds). Stops on failure."""
    shown = " ".join(str(c) for c in cmd)
    print(f"\n$ {shown}", flush=True)
    start = time.time()
    proc = subprocess.Popen([str(c) for c in cmd], cwd=REPO, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
    code = proc.wait()
    seconds = time.time() - start
    print(f"[{seconds:.1f} s, exit {code}]", flush=True)
    if code != 0:
        fail(f"command failed with exit code {code}: {shown}")
    return "".join(lines), seconds


def last_path(stdout: str) -> Path:
    """The version folder a train/export command printed last."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("exported "):
            line = line[len("exported "):]
        if line and Path(line).is_dir():
            return Path(line)
    fail("could not find the exported version folder in the command's output")


def held_out_image(path: Path, load: int, crop: int):
    """One photo as float [0, 1] HWC, preprocessed like evaluate.py's held-out images: resized
    to the load size, centre-cropped to the crop size."""
    import numpy as np

    from tf_translate.data.images import read_image
    from tf_translate.data.pipeline import center_crop
    from tf_translate.data.sources import resize_square

    return center_crop(resize_square(read_image(path), load), crop).astype(np.float32) / 255.0


def load_panel_images(model, data: Path):
    """Test inputs/targets as float [0, 1] NHWC, preprocessed like evaluate.py (held_out)."""
    import numpy as np

    load, crop = model.config.data.load_size, model.config.data.crop_size
    xs = np.stack([held_out_image(data / "testA" / s, load, crop) for s in TEST_SUBJECTS])
    ys = np.stack([held_out_image(data / "testB" / s, load, crop) for s in TEST_SUBJECTS])
    return xs, ys


def make_panel(model_dir: Path, data: Path, out: Path) -> None:
    """Rows: test subjects; columns: leftlight input | G(input) | real rightlight; x3 nearest."""
    import tf_translate

    model = tf_translate.load_exported(model_dir)
    xs, ys = load_panel_images(model, data)
    gs = model(xs, to=DOMAINS[1])
    rows = [(subject, [xs[i], gs[i], ys[i]]) for i, subject in enumerate(TEST_SUBJECTS)]
    labelled_grid(rows, ("leftlight input", "G(input) -> right", "real rightlight"), out, UPSCALE)
    print(f"panel: {out} ({model_dir})", flush=True)


def labelled_grid(rows: list, titles, out: Path, upscale: int, label_w: int = 80) -> None:
    """Rows of (label, [float [0, 1] images]) under column ``titles``, each image enlarged
    ``upscale`` times (nearest neighbour), saved as ``out``."""
    import numpy as np
    from PIL import Image, ImageDraw

    to8 = lambda a: np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)  # noqa: E731
    size, head_h, gap = rows[0][1][0].shape[0] * upscale, 20, 4
    picture = Image.new("RGB", (label_w + len(titles) * (size + gap), head_h + len(rows) * (size + gap)), "white")
    draw = ImageDraw.Draw(picture)
    for j, title in enumerate(titles):
        draw.text((label_w + j * (size + gap) + 4, 4), title, fill=(0, 0, 0))
    for i, (label, images) in enumerate(rows):
        top = head_h + i * (size + gap)
        draw.text((4, top + size // 2 - 6), label, fill=(0, 0, 0))
        for j, image in enumerate(images):
            tile = Image.fromarray(to8(image)).resize((size, size), Image.NEAREST)
            picture.paste(tile, (label_w + j * (size + gap), top))
    picture.save(out)


def parse(doc: str, work: str, steps_per_epoch: int, epochs: int, decay_epochs: int):
    """The Yale scripts' flags: (args, flags for train.py, the yalefaces folder)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     epilog="Unknown flags are passed on to scripts/train.py.")
    parser.add_argument("--shared", default="../shared/data", help="folder holding yalefaces/ (default: %(default)s)")
    parser.add_argument("--work", default=work, help="work folder (default: %(default)s)")
    parser.add_argument("--steps-per-epoch", type=int, default=steps_per_epoch, help="(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=epochs, help="epochs at constant lr (default: %(default)s)")
    parser.add_argument("--decay-epochs", type=int, default=decay_epochs,
                        help="epochs of linear decay (default: %(default)s)")
    args, extra = parser.parse_known_args()
    yale = Path(args.shared).resolve() / "yalefaces"
    if not yale.is_dir():
        fail(f"{yale}: no such folder (the Yale Face Database is expected there; pass --shared)")
    return args, extra, yale


def main() -> None:
    args, extra, yale = parse(__doc__, "runs/yale_lighting", 25, 6, 4)
    work = Path(args.work).resolve()
    data, run_dir = work / "data", work / "run"
    exported, exported_best = work / "exported", work / "exported_best"
    build_layout(yale, data)

    py = sys.executable
    steps = (args.epochs + args.decay_epochs) * args.steps_per_epoch
    train_cmd = [py, SCRIPTS / "train.py", "--method", "cyclegan", "--data", data, "--output", run_dir,
                 "--export-dir", exported, "--image-size", "64", "--n-blocks", "6", "--domains", ",".join(DOMAINS),
                 "--validate-every", "200", "--epochs", args.epochs, "--decay-epochs", args.decay_epochs,
                 "--steps-per-epoch", args.steps_per_epoch, *extra]
    out, train_s = run(train_cmd)
    final = last_path(out)
    print(f"train wall time {train_s:.1f} s for {steps} steps "
          f"({train_s / max(steps, 1):.3f} s/step including start-up, validation and export)", flush=True)

    run([py, SCRIPTS / "evaluate.py", "--model", final])
    out, _ = run([py, SCRIPTS / "export.py", "--run", run_dir, "--best", "--export-dir", exported_best])
    best = last_path(out)
    run([py, SCRIPTS / "evaluate.py", "--model", best])

    sys.path.insert(0, str(REPO))
    make_panel(final, data, work / "panel.png")
    make_panel(best, data, work / "panel_best.png")
    print(f"\nfinal model: {final}\nbest model:  {best}", flush=True)


if __name__ == "__main__":
    main()
