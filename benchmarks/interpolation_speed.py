#!/usr/bin/env python
"""Frame interpolation throughput: output frames per second of an exported model (its
SavedModel through ``Exported``, as ``tf-translate interpolate`` runs it, and its float32
TFLite file on XNNPACK with every core), beside ffmpeg's motion-compensated ``minterpolate``
raising the frame rate of the same clip, at each size.

Each variant makes the ``gap - 1`` frames between every two consecutive frames of the clip's
first ``--frames`` frames, scaled to SIZE x SIZE. The model variants run batch 1 on decoded
frames (decoding and writing are left out: they are ffmpeg's work in both); ffmpeg decodes the
clip, scales, interpolates to ``gap`` times the frame rate and discards the output (``-f null``),
so its time includes decoding, a small share at these sizes; its rate counts the frames it wrote
less the frames it was given (its output clock gives a few fewer than ``(frames - 1) * gap + 1``).
Variants are warmed up, then timed in turn ``--repeats`` times; the median is reported.

Usage:
    python benchmarks/interpolation_speed.py --model exported/pix2pix/1 [--clip fox.mp4]
        [--sizes 256,512] [--frames 13] [--repeats 3] [--output benchmarks/interpolation_speed]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tf_translate.apps.interpolate import interpolation_gap  # noqa: E402
from tf_translate.data import paired, video  # noqa: E402
from tf_translate.export import Exported  # noqa: E402
from tf_translate.metrics.minterpolate import FILTER  # noqa: E402


def frames_at(clip: Path, count: int, size: int) -> np.ndarray:
    frames = [f for _, f in zip(range(count), video.iter_frames(clip))]
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])


def model_variants(model: Exported, frames: np.ndarray):
    """(label, function making every in-between frame of ``frames``) for the SavedModel and the TFLite file."""
    from ai_edge_litert.interpreter import Interpreter

    pairs = [np.concatenate([a, b], -1)[None] for a, b in zip(frames[:-1], frames[1:])]
    yield "SavedModel", lambda: [model.images(p) for p in pairs]
    tflite = model.path / "model.tflite"
    if tflite.exists():
        runner = Interpreter(model_path=str(tflite), num_threads=os.cpu_count()).get_signature_runner("translate")
        floats = [p.astype(np.float32) / 255.0 for p in pairs]
        yield "TFLite float32", lambda: [runner(images=p)["images"] for p in floats]


def ffmpeg_variant(clip: Path, count: int, size: int, gap: int, fps: float):
    """A function running ffmpeg on the clip's first ``count`` frames; it returns how many
    in-between frames ffmpeg wrote (its output frames less the ``count`` it was given)."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-stats", "-i", str(clip), "-vf",
               f"trim=end_frame={count},scale={size}:{size}," + FILTER.format(gap=f"{fps * gap:.4f}"),  # output rate
               "-f", "null", "-"]

    def run():
        done = subprocess.run(command, check=True, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        return int(re.findall(r"frame=\s*(\d+)", done.stderr)[-1]) - count

    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--clip", help="default: the embedded Big Buck Bunny clip")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/interpolation_speed")
    args = parser.parse_args(argv)
    model = Exported(args.model)
    gap = interpolation_gap(model)
    clip = Path(args.clip) if args.clip else paired.default_video()
    fps = video.probe(clip).fps
    made = (args.frames - 1) * (gap - 1)  # in-between frames per run
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        frames = frames_at(clip, args.frames, size)
        variants = [*model_variants(model, frames), ("ffmpeg minterpolate (mci)",
                                                     ffmpeg_variant(clip, args.frames, size, gap, fps))]
        for _, run in variants:
            run()  # warm-up
        times, counts = {label: [] for label, _ in variants}, {label: made for label, _ in variants}
        for _ in range(args.repeats):
            for label, run in variants:
                start = time.perf_counter()
                wrote = run()
                times[label].append(time.perf_counter() - start)
                if isinstance(wrote, int):
                    counts[label] = wrote
        for label, seconds in times.items():
            rate = counts[label] / statistics.median(seconds)
            results.append({"size": size, "variant": label, "seconds": seconds, "frames": counts[label],
                            "frames_per_s": rate})
            print(f"{size} px {label}: {rate:.1f} frames/s", file=sys.stderr)
    lines = [f"# Frame interpolation throughput: {args.model}, gap {gap}, {clip.name}", "",
             f"In-between frames made per second (the model: {made} from {args.frames} frames; ffmpeg: its "
             f"output frames less its {args.frames} input frames; median of {args.repeats} runs); "
             f"{os.cpu_count()} cores. Command: `python benchmarks/interpolation_speed.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             "| size | variant | frames/s | vs ffmpeg |", "|---|---|---:|---:|"]
    for r in results:
        ffmpeg = next(x for x in results if x["size"] == r["size"] and x["variant"].startswith("ffmpeg"))
        lines.append(f"| {r['size']} | {r['variant']} | {r['frames_per_s']:.1f} | "
                     f"{r['frames_per_s'] / ffmpeg['frames_per_s']:.2f}x |")
    Path(args.output + ".json").write_text(json.dumps({"model": args.model, "clip": str(clip), "gap": gap,
                                                       "results": results}, indent=1))
    Path(args.output + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
