"""Memory a served generator needs per pixel, and what a decompression bomb does to a server.

For each method's generator at the paper's size (initial weights: memory does not depend on
them), export it, then in a fresh process per image size call its float signature once and
record the process's peak resident memory above what loading and a 64 x 64 call took. The
slope, bytes per pixel, is what a request costs; the exports' default pixel limit
(``--serving-max-pixels``) is chosen from it. Then the bomb: a 12000 x 12000 grey PNG (449 KB)
sent to the bytes signature of an export with the limit off (as before it existed) and with
the default, each in its own process: how it ends and its peak memory.

    python benchmarks/serving_memory.py [--methods cyclegan,pix2pix,...] [--sides 512,1024,1536]
writes benchmarks/serving_memory.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def export_paper_size(method: str, folder: Path, max_pixels: int | None = None) -> Path:
    """``method``'s generators at the paper's size, initial weights, SavedModel only."""
    from tf_translate import config, export, registry
    from tf_translate.training import trainer

    spec = registry.get(method)
    layer = {"export": {"tflite": False, "export_dir": str(folder / method)},
             "train": {"output": str(folder / f"run_{method}")}}
    if max_pixels is not None:
        layer["export"]["max_pixels"] = max_pixels
    if spec.data_kind == "domains":  # the domains come from the data: the paper's five CelebA attributes
        layer["data"] = {"domains": ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")}
    cfg = config.build(method, spec.config, spec.overrides, layer)
    return export.export_model(trainer.build_model(cfg, spec, steps_per_epoch=1), cfg)


def peak_mb() -> float:
    """This process's peak resident memory since the last ``reset_peak`` (VmHWM)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def reset_peak() -> float:
    """Start a new peak at the present resident memory (Linux: ``clear_refs`` 5); returns it."""
    Path("/proc/self/clear_refs").write_text("5")
    return peak_mb()


def child_float(version: str, side: int) -> dict:
    """Peak memory of one call of the first float signature on a side x side image."""
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(version)
    name = next(n for n in loaded.signatures if n != "serving_default" and not n.endswith(("_bytes", "_map")))
    fn = loaded.signatures[name]
    spec = fn.structured_input_signature[1]
    extra = {k: tf.one_hot([0], v.shape[-1]) for k, v in spec.items() if k != "images"}
    channels = spec["images"].shape[-1]
    fn(images=tf.zeros([1, 64, 64, channels]), **extra)
    image = tf.constant(np.random.default_rng(0).random((1, side, side, channels), np.float32))
    base = reset_peak()  # loaded, traced, the input made: what the call adds on top
    fn(images=image, **extra)
    return {"side": side, "base_mb": base, "peak_mb": peak_mb(), "signature": name}


def child_bomb(version: str, path: str) -> dict:
    import tensorflow as tf

    loaded = tf.saved_model.load(version)
    name = next(n for n in loaded.signatures if n.endswith("_bytes"))
    base = peak_mb()  # the whole process's peak, comparable with a process that died
    try:
        loaded.signatures[name](image_bytes=tf.constant([Path(path).read_bytes()]))
        outcome = "translated"
    except tf.errors.InvalidArgumentError as e:
        outcome = "InvalidArgument: " + next(line for line in str(e).splitlines() if "assertion failed" in line).strip()
    good = tf.io.encode_png(tf.zeros([32, 32, 3], tf.uint8))
    answered = loaded.signatures[name](image_bytes=tf.stack([good]))["output_bytes"].shape[0] == 1
    return {"outcome": outcome, "answers_afterwards": bool(answered), "base_mb": base, "peak_mb": peak_mb()}


def run_child(*args: str) -> dict:
    """Run ``--child ARGS`` in a fresh process; its result, or how it died and its peak memory
    (``wait4``'s resource usage of that one process)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=out, stderr=err,
                                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode:
            lines = [line for line in err.read().splitlines()
                     if line.strip() and not line.startswith(("I0000", "W0000", "WARNING"))]
            signal = f"signal {-child.returncode}" if child.returncode < 0 else f"exit {child.returncode}"
            return {"outcome": f"process died: {signal}" + (f" ({lines[-1][:100]})" if lines else ""),
                    "peak_mb": usage.ru_maxrss / 1024}
        return json.loads(out.read().strip().splitlines()[-1])


def bomb_png(path: Path, side: int = 12000) -> Path:
    from PIL import Image

    Image.new("L", (side, side), 0).save(path, optimize=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="cyclegan,pix2pix,fast_style,stargan")
    parser.add_argument("--sides", default="512,1024,1536")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, version, value = args.child
        result = child_float(version, int(value)) if kind == "float" else child_bomb(version, value)
        print(json.dumps(result))
        return 0
    sides = [int(s) for s in args.sides.split(",")]
    results = {"methods": {}, "bomb": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for method in args.methods.split(","):
            version = export_paper_size(method, folder)
            rows = [run_child("float", str(version), str(side)) for side in sides]
            fits = [r for r in rows if "base_mb" in r]
            slope = None
            if len(fits) >= 2:  # least squares of the peak above the base against pixels
                xs = [r["side"] ** 2 for r in fits]
                ys = [r["peak_mb"] - r["base_mb"] for r in fits]
                mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
                slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs) * 2**20
            results["methods"][method] = {"rows": rows, "bytes_per_pixel": slope}
            print(method, json.dumps(results["methods"][method]), flush=True)
        bomb = bomb_png(folder / "bomb.png")
        results["bomb"]["file_bytes"] = bomb.stat().st_size
        for label, limit in (("no limit (as before)", 2**62), ("default limit", None)):
            version = export_paper_size("cyclegan", folder / label.split()[0], limit)
            results["bomb"][label] = run_child("bomb", str(version), str(bomb))
            print(label, results["bomb"][label], flush=True)
    out = Path(__file__).with_suffix("")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    lines = ["# Serving memory per pixel, and a decompression bomb", "",
             f"`python benchmarks/serving_memory.py --methods {args.methods} --sides {args.sides}`; one process per "
             "call; the peak resident memory of the call above the process's memory before it (loaded, a "
             "64 x 64 call made). Paper-size generators, initial weights, batch 1, float32.", "",
             "| method | " + " | ".join(f"{s}² peak MB" for s in sides) + " | bytes per pixel |",
             "|---|" + "---:|" * (len(sides) + 1)]
    for method, result in results["methods"].items():
        cells = [f"{r['peak_mb'] - r['base_mb']:.0f}" if "base_mb" in r else r["outcome"] for r in result["rows"]]
        slope = f"{result['bytes_per_pixel']:.0f}" if result["bytes_per_pixel"] else "-"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {slope} |")
    lines += ["", f"Bomb: a 12000 x 12000 grey PNG of {results['bomb']['file_bytes']:,} bytes to CycleGAN's "
              "bytes signature.", "", "| export | outcome | answers a good request afterwards | peak resident MB of the process |",
              "|---|---|---|---:|"]
    for label in ("no limit (as before)", "default limit"):
        r = results["bomb"][label]
        lines.append(f"| {label} | {r['outcome']} | {r.get('answers_afterwards', 'no: it died')} | "
                     f"{r['peak_mb']:.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
