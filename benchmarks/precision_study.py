#!/usr/bin/env python
"""Does bfloat16 train as well as float32? Trains each method on its embedded data at a fixed
budget for several seeds in each precision, then scores every final checkpoint with the
method's held-out validation measures, and writes the spread.

    python benchmarks/precision_study.py [--method cyclegan,pix2pix,...] [--seeds 0,1,2]
                                      [--precision float32,mixed_bfloat16] [--output benchmarks/precision_quality]

Each run is ``scripts/train.py --method M --seed S --precision P`` in a child process with the
method's demo settings shortened to BUDGETS (XLA off in both precisions, no export). The
verdict per measure: the bfloat16 seeds' mean lies within the range of the float32 seeds.
Wall times here come from runs that may share the machine; speed is measured by
``benchmarks/benchmark.py --precision``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Shortened demo schedules (train section over the method's demo profile): about 1-2 min each here.
BUDGETS = {
    "cyclegan": {"epochs": 2, "decay_epochs": 1},        # 180 steps, 64 px
    "pix2pix": {"epochs": 1, "decay_epochs": 1},         # 184 steps, 128 px
    "fast_style": {"epochs": 3, "decay_epochs": 0},      # 180 steps, 128 px, batch 2
    "stargan": {"epochs": 2, "decay_epochs": 1},         # 315 steps, 64 px, batch 8
    "dtn": {"epochs": 2, "decay_epochs": 0},             # stage 1, then 2 epochs of stage 2, 32 px
}


def train(method: str, seed: int, precision: str, folder: Path, encoder: str | None) -> float:
    """Wall seconds of one training run (resumed where it stopped if the folder exists)."""
    layer = folder.with_suffix(".json")
    settings = {"train": {**BUDGETS[method], "seed": seed, "precision": precision, "jit_compile": "off",
                          "output": str(folder)}, "export": {"export": False}}
    if method == "dtn" and encoder:
        settings["model"] = {"encoder": encoder}
    layer.write_text(json.dumps(settings))
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--method", method, "--config", str(layer)],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def score(folder: Path) -> dict:
    """The method's validation measures of the run's final checkpoint on its held-out data."""
    from tf_translate import config, registry
    from tf_translate import data as tf_data
    from tf_translate.training import trainer

    cfg = config.load(folder / "config.json")
    model = trainer.restore(cfg)
    return model.validate(tf_data.load(registry.get(cfg.method).data_kind, cfg).held_out())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="cyclegan,pix2pix,fast_style,stargan,dtn")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--precision", default="float32,mixed_bfloat16")
    p.add_argument("--encoder", help="DTN: every run reuses this stage-1 f (frozen in stage 2), so that the "
                   "runs differ in stage 2 only, and skip stage 1 (about 4 min each here)")
    p.add_argument("--work", default="runs/precision_study", help="run folders (kept, so a rerun resumes)")
    p.add_argument("--output", default="benchmarks/precision_quality", help="writes OUTPUT.json and OUTPUT.md")
    args = p.parse_args(argv)
    methods, seeds, precisions = args.method.split(","), [int(s) for s in args.seeds.split(",")], args.precision.split(",")
    results = {}
    for method in methods:
        for precision in precisions:
            for seed in seeds:
                folder = Path(args.work) / f"{method}_{precision}_{seed}"
                folder.parent.mkdir(parents=True, exist_ok=True)
                try:
                    seconds = train(method, seed, precision, folder, args.encoder)
                except subprocess.CalledProcessError as e:
                    print(f"{method} {precision} seed {seed}: training failed (exit code {e.returncode})",
                          file=sys.stderr)
                    results.setdefault("failed", []).append(f"{method} {precision} seed {seed}")
                    continue
                results.setdefault(method, {}).setdefault(precision, []).append(
                    {"seed": seed, "seconds": seconds, "scores": score(folder)})
                print(f"{method} {precision} seed {seed}: {results[method][precision][-1]}", file=sys.stderr)
    failed = results.get("failed", [])
    lines = ["# bfloat16 against float32: quality at the same budget\n",
             f"`python benchmarks/precision_study.py {' '.join(argv or sys.argv[1:])}`  ",
             f"Each method's demo settings with {json.dumps(BUDGETS)}, XLA off; final checkpoint scored with "
             "the method's held-out validation measures. Within = the bfloat16 mean lies inside the float32 "
             "seeds' range.\n",
             "| method | measure | float32 seeds | bfloat16 seeds | float32 mean | bfloat16 mean | within float32 range |",
             "|---|---|---|---|---:|---:|:---:|"]
    verdicts = {}
    for method, by_precision in ((m, r) for m, r in results.items() if m != "failed"):
        first, other = (by_precision.get(p, []) for p in precisions[:2])
        for key in first[0]["scores"] if first else []:
            a = [r["scores"][key] for r in first]
            b = [r["scores"][key] for r in other if key in r["scores"]]
            if not b:
                continue
            inside = min(a) <= statistics.mean(b) <= max(a)
            verdicts[f"{method}/{key}"] = inside
            lines.append(f"| {method} | {key} | {', '.join(f'{v:.4f}' for v in a)} | {', '.join(f'{v:.4f}' for v in b)} "
                         f"| {statistics.mean(a):.4f} | {statistics.mean(b):.4f} | {'yes' if inside else 'no'} |")
    if failed:
        lines += ["", f"Failed to train: {', '.join(failed)}."]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps({"budgets": BUDGETS, "results": results, "within": verdicts,
                                               "load_average_at_end": os.getloadavg()}, indent=2) + "\n")
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
