#!/usr/bin/env python
"""Measure training throughput (seconds per train step) of a method on this machine.

The model is built exactly as training builds it (``config.build`` + ``trainer.build_model``)
and each step is Keras' own train function, the one ``model.fit`` calls per step
(``model.make_train_function()``, then ``model.train_function(iterator)``; XLA follows
``jit_compile`` from ``compile()``), fed random float32 (1, S, S, 3) image pairs in [-1, 1].
Every variant (image size x XLA off/on) is built and warmed up first (the first call traces
the graph and compiles the XLA cluster), then the variants run interleaved, in a rotating
order, ``--repeats`` times ``--steps`` steps, so that machine noise falls on all of them alike.
Each step is timed with ``time.perf_counter()`` and forced to finish by reading its loss.

With ``--torch`` (needs ``torch`` importable) each size also gets a "PyTorch reference" variant:
the training step of the PyTorch reference implementation with its defaults, its own code
(read from ../shared/peers) run by ``benchmarks/torch_cyclegan.py`` (CycleGAN; ResNet-``--n-blocks``
too) or ``benchmarks/torch_pix2pix.py`` (pix2pix: U-Net, batch norm), ``make_step``, on the same
random-input footing, warmed up and timed in the same rotation, on the same machine in the
same run. Its calls are synchronous on the CPU, so its wall time needs no loss read-back.

Usage:
    python benchmarks/benchmark.py [--method cyclegan] [--sizes 128,256] [--jit off,on]
        [--steps 10] [--warmup 3] [--repeats 3] [--n-blocks 6] [--output benchmarks/train_throughput]
        [--torch]

``--onednn off,on`` compares TensorFlow's oneDNN CPU kernels off and on. The setting is fixed
when TensorFlow starts, so each repeat runs every setting in a child process of its own
(alternating, in a rotating order) and the children's step times are merged into one report.
A single value (``--onednn on``) sets ``TF_ENABLE_ONEDNN_OPTS`` for this process; the default
is what ``tf_translate`` itself chooses (on, unless the environment says otherwise).

``--inference EXPORT_DIR`` measures inference instead: milliseconds per image of an exported
version's float SavedModel signature and of each TFLite file beside it (``model.tflite``,
``model_float16.tflite``, ...), batch 1, at each of ``--sizes``, interleaved in the same way.

``--precision float32,mixed_bfloat16`` adds a precision axis to the training variants (each
precision x XLA setting built and timed in the same rotation) and their speed ratios.

``--stream 1000,48000`` measures the input pipeline over prepared records instead
(``scripts/prepare.py``'s writer, random 286 px images): preparation time, images/s through
CycleGAN's training pipeline, and the reading process's peak memory, each in a child process.

Writes OUTPUT.json (machine, settings, every step time, summaries) and OUTPUT.md (tables),
and prints the tables. Batch size is 1, so images/s = 1 / median step time.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Quoted from the design notes (measured there on another machine of this type, not by this script):
# ResNet-6, 128x128, batch 1, float32, seconds per step. --torch measures the PyTorch one here instead.
REFERENCES = {"plain Keras CycleGAN, no XLA": (128, "off", 0.98),
              "plain Keras CycleGAN, XLA": (128, "on", 1.28),
              "PyTorch reference implementation": (128, None, 1.10)}
TARGET = (128, "off", 1.10)  # our step at 128 px, float32, no XLA: no slower than this
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TORCH_STEPS = {"cyclegan": BENCHMARKS / "torch_cyclegan.py", "pix2pix": BENCHMARKS / "torch_pix2pix.py"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", default="cyclegan", help="registered method to benchmark; several, comma-separated, "
                                                        "each in a child process, with their peak memory")
    p.add_argument("--sizes", default="128,256", help="comma-separated square image sizes (crop = load size)")
    p.add_argument("--jit", default="off,on", help="comma-separated XLA settings to compare (off, on)")
    p.add_argument("--precision", default="float32", help="comma-separated --precision settings to compare "
                   "(float32, mixed_bfloat16, mixed_float16)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant in each repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before timing")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds over all variants")
    p.add_argument("--n-blocks", type=int, help="generator residual blocks (default: the method's; ResNet-6 = "
                                                 "CycleGAN's 128 px network)")
    p.add_argument("--filters", type=int, help="first-layer filters of generator and discriminator (default: the "
                                               "method's)")
    p.add_argument("--output", default="benchmarks/train_throughput", help="writes OUTPUT.json and OUTPUT.md")
    p.add_argument("--torch", action="store_true",
                   help="also time the PyTorch reference implementation's own step (benchmarks/torch_cyclegan.py, "
                        "torch_pix2pix.py; its files from ../shared/peers)")
    p.add_argument("--inference", metavar="EXPORT_DIR",
                   help="time inference of this exported version (SavedModel and every .tflite) instead of training")
    p.add_argument("--tflite-variants", metavar="METHODS",
                   help="comma-separated methods: export each with every TFLite variant and report size, PSNR "
                        "against the SavedModel and ms per image (the paper's networks, untrained, unless --run)")
    p.add_argument("--run", action="append", default=[], metavar="METHOD=RUN_DIR",
                   help="--tflite-variants: take this method's trained weights from a run folder (repeatable)")
    p.add_argument("--stream", metavar="COUNTS",
                   help="input pipeline from prepared records instead: comma-separated image counts per domain "
                        "(random 286 px images, prepared by prepare.py's writer), each read through CycleGAN's "
                        "training pipeline (256 px crops) in a child process; images/s and the reader's peak memory")
    p.add_argument("--stream-dir", default=None, help="--stream: where the records are written (default: /tmp)")
    p.add_argument("--stream-child", nargs=2, metavar=("COUNT", "FOLDER"), help=argparse.SUPPRESS)
    p.add_argument("--onednn", default="default",
                   help="TensorFlow's oneDNN CPU kernels: default (tf_translate's choice), on, off, or off,on "
                        "to compare both in child processes")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.jit = [j.strip() for j in args.jit.split(",")]
    args.precision = [q.strip() for q in args.precision.split(",")]
    if any(q not in ("float32", "mixed_bfloat16", "mixed_float16") for q in args.precision):
        p.error("--precision takes float32, mixed_bfloat16 and/or mixed_float16")
    args.onednn = [o.strip() for o in args.onednn.split(",")]
    if any(j not in ("off", "on") for j in args.jit):
        p.error("--jit takes off and/or on")
    if args.steps < 2 or args.repeats < 1:
        p.error("--steps must be at least 2 (the spread needs two timings) and --repeats at least 1")
    if any(o not in ("default", "off", "on") for o in args.onednn) or (len(args.onednn) > 1 and "default" in args.onednn):
        p.error("--onednn takes default, on, off, or off,on")
    if len(args.onednn) > 1 and args.torch:
        p.error("--torch compares with one oneDNN setting; give --onednn a single value")
    return args


def load_torch_step(method: str):
    """``make_step`` of the method's benchmarks/torch_*.py, imported by file path (imports torch)."""
    if method not in TORCH_STEPS:
        raise ImportError(f"no PyTorch reference step for {method} (have: {', '.join(TORCH_STEPS)})")
    spec = importlib.util.spec_from_file_location(TORCH_STEPS[method].stem, TORCH_STEPS[method])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_step


def machine(tf, keras) -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        from tensorflow.python.util import _pywrap_util_port as port
        onednn = bool(port.IsMklEnabled())  # oneDNN custom ops in use (TF_ENABLE_ONEDNN_OPTS, CPU features)
    except ImportError:
        onednn = None
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
            "cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "onednn": onednn, "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "gpus": len(tf.config.list_physical_devices("GPU")), "dtype_policy": keras.config.dtype_policy().name,
            "load_average_at_start": os.getloadavg()}


def build(tf, method: str, size: int, jit: str, n_blocks: int | None, filters: int | None, tmpdir: str,
          precision: str = "float32"):
    """(model, iterator, batch size, image size) as ``trainer`` builds them and as ``fit`` feeds them: the
    method's own configuration (``n_blocks`` and ``filters`` over it when given) and one batch of
    its embedded default data, repeated, so that the step and not the input pipeline is timed
    (DTN trains at its one size, 32 px, with batch 64)."""
    from tf_translate import config, registry
    from tf_translate.training import trainer

    spec = registry.get(method)
    fields = {f.name for f in dataclasses.fields(spec.config)}
    model_options = {k: v for k, v in (("filters", filters), ("disc_filters", filters), ("n_blocks", n_blocks))
                     if k in fields and v is not None}
    data_options = {} if spec.data_kind == "transfer" else {"crop_size": size, "load_size": size, "batch_size": 1}
    cfg = config.build(method, spec.config, spec.overrides,
                       {"data": data_options, "model": model_options,
                        "train": {"jit_compile": jit, "precision": precision,
                                  "output": f"{tmpdir}/{method}_{size}_{jit}_{precision}"}})
    cfg, data, model, *_ = trainer.prepare(cfg)
    model.make_train_function()
    batch = next(iter(data.training(batch_size=cfg.data.batch_size, flip=False, seed=0, first_step=0, steps=1)))
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    dataset = tf.distribute.get_strategy().experimental_distribute_dataset(dataset)  # as fit's TFEpochIterator
    return model, iter(dataset), cfg.data.batch_size, cfg.data.crop_size


def keras_step(model, iterator):
    """A zero-argument callable: one Keras train step, waited for."""
    def run():
        logs = model.train_function(iterator)
        float(logs["loss"])  # wait for the step to finish
    return run


def step(run, cpu: list | None = None) -> float:
    """Wall seconds of one train step ``run()``; appends this process's CPU seconds to ``cpu``.

    ``process_time`` counts every thread of this process: TF's and torch's thread pools alike.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    run()
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start


def summarize(runs: list[list[float]], cpu: list[float], batch: int = 1) -> dict:
    times = sorted(t for run in runs for t in run)
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return {"median_s": median, "min_s": times[0], "max_s": times[-1], "q1_s": q1, "q3_s": q3,
            "iqr_s": q3 - q1, "iqr_pct": 100 * (q3 - q1) / median, "images_per_s": batch / median,
            "repeat_medians_s": [statistics.median(run) for run in runs], "n": len(times),
            "cores_busy": sum(cpu) / sum(times)}  # our CPU s per wall s; below the core count = waiting or sharing


def tables(results: list[dict], ratios: list[dict], torch_ratios: list[dict], method: str, n_blocks: int,
           precision_ratios: list[dict] = ()) -> str:
    network = f"ResNet-{n_blocks}" if method == "cyclegan" else "U-Net"
    out = ["| size | XLA | precision | median s/step | min | max | IQR (s) | IQR % | images/s | medians per repeat | "
           "cores busy | first call s |", "|---:|:---:|:---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in results:
        head = f"| {r['size']} | {r['jit']} | {r.get('precision', 'float32')} |"
        if "error" in r:
            out.append(f"{head} failed: {r['error']} | | | | | | | | |")
            continue
        s = r["summary"]
        per = ", ".join(f"{m:.3f}" for m in s["repeat_medians_s"])
        out.append(f"{head} {s['median_s']:.3f} | {s['min_s']:.3f} | {s['max_s']:.3f} | {s['iqr_s']:.3f} | "
                   f"{s['iqr_pct']:.1f} | {s['images_per_s']:.2f} | {per} | {s['cores_busy']:.2f} | {r['warmup_s'][0]:.1f} |")
    if any(r["jit"] == "torch" for r in results):
        out += ["", "Rows with XLA `torch`: the PyTorch reference implementation's training step "
                    "(benchmarks/torch_*.py), measured in this run on this machine, interleaved with ours."]
    if ratios:
        out += ["", "| size | XLA off s/step | XLA on s/step | speed ratio on/off (>1 = XLA faster) |",
                "|---:|---:|---:|---:|"]
        out += [f"| {q['size']} | {q['off_s']:.3f} | {q['on_s']:.3f} | {q['on_over_off_speed']:.3f} |"
                for q in ratios]
    if precision_ratios:
        out += ["", "| size | XLA | precision | speed over the first precision (>1 = faster) |", "|---:|:---:|:---:|---:|"]
        out += [f"| {q['size']} | {q['jit']} | {q['precision']} | {q['speed']:.3f} (over {q['over']}) |"
                for q in precision_ratios]
    if torch_ratios:
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        out += ["", f"Ours / PyTorch reference, same machine, same run (median s/step, {network}; "
                    ">1 = ours slower):", "",
                "| size | PyTorch reference | ours XLA off | ours / PyTorch (XLA off) | ours XLA on | "
                "ours / PyTorch (XLA on) |", "|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {q['size']} | {q['torch_s']:.3f} | {fmt(q['off_s'])} | {fmt(q['off_over_torch'])} | "
                f"{fmt(q['on_s'])} | {fmt(q['on_over_torch'])} |" for q in torch_ratios]
    found = {(r["size"], r["jit"]): r["summary"]["median_s"] for r in results
             if "summary" in r and r.get("precision", "float32") == "float32"}
    if method != "cyclegan":  # the quoted references and the target are CycleGAN's
        return "\n".join(out)
    out += ["", f"References quoted from the design notes (measured there on another machine of this type, "
                f"not in this run; ResNet-6, 128 px, batch 1, float32; this run: ResNet-{n_blocks}):", "",
            "| reference (design notes) | quoted s/step | ours s/step this run (same size, XLA) | ours / quoted |",
            "|---|---:|---:|---:|"]
    for name, (size, jit, ref) in REFERENCES.items():
        ours = found.get((size, jit or "off"))
        label = f"{ours:.3f} ({size}, XLA {jit or 'off'})" if ours else "not run"
        out.append(f"| {name} | {ref:.2f} | {label} | {f'{ours / ref:.2f}' if ours else '-'} |")
    size, jit, limit = TARGET
    ours = found.get((size, jit))
    verdict = "not run" if ours is None else f"{ours:.3f} s -> {'met' if ours <= limit else 'NOT met'}"
    out += ["", f"Target: {size} px, float32, XLA {jit}, no slower than {limit:.2f} s/step: {verdict}."]
    torch_here = found.get((size, "torch"))
    if torch_here is not None:
        out.append(f"(The PyTorch reference measured in this run at {size} px: {torch_here:.3f} s/step.)")
    return "\n".join(out)


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def write(output: str, report: dict, markdown: str) -> None:
    """OUTPUT.json (everything measured) and OUTPUT.md (the tables)."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{out}.md").write_text(markdown)


def network_flags(args) -> list[str]:
    """The --n-blocks and --filters given, for a child process."""
    return [*(["--n-blocks", str(args.n_blocks)] if args.n_blocks else []),
            *(["--filters", str(args.filters)] if args.filters else [])]


def run_child(command: list[str]) -> tuple[int, float]:
    """Run ``command``; returns (exit code, its peak resident memory in MB)."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024  # Linux: kB


def compare_methods(args) -> int:
    """Training throughput of several methods, XLA off and on, each method in a child process
    of its own (so that its peak memory is its own); one summary table."""
    methods = args.method.split(",")
    variants = [(jit, precision) for precision in args.precision for jit in args.jit]
    rows, report = [], {"command": command_line(), "methods": {}}
    for method in methods:
        out = f"{args.output}_{method}"
        command = [sys.executable, __file__, "--method", method, "--sizes", ",".join(map(str, args.sizes)),
                   "--jit", ",".join(args.jit), "--precision", ",".join(args.precision), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--repeats", str(args.repeats), *network_flags(args), "--output", out]
        print(f"{method} (child process)", file=sys.stderr)
        code, peak_mb = run_child(command)
        if not Path(f"{out}.json").exists():
            report["methods"][method] = {"error": f"exit code {code}", "peak_rss_mb": peak_mb}
            rows.append(f"| {method} | failed (exit code {code}) | | | | | |")
            continue
        child = json.loads(Path(f"{out}.json").read_text())
        report["methods"][method] = {"peak_rss_mb": peak_mb, "report": f"{out}.json", "results": child["results"]}
        found = {(r["size"], r["jit"], r["precision"]): r for r in child["results"] if "summary" in r}
        for size in sorted({key[0] for key in found}):
            cells = [found.get((size, *v)) for v in variants]
            rate = lambda r: f"{r['summary']['images_per_s']:.2f}" if r else "-"  # noqa: E731
            first = cells[0]
            ratios = [f"{first['summary']['median_s'] / r['summary']['median_s']:.2f}" if first and r else "-"
                      for r in cells[1:]]
            batch = next(r for r in cells if r).get("batch", 1)
            rows.append(f"| {method} | {size} | {batch} | {' | '.join(map(rate, cells))} | {' | '.join(ratios)} | "
                        f"{peak_mb:.0f} |")
    label = lambda v: f"XLA {v[0]}, {v[1]}"  # noqa: E731
    table = "\n".join([f"| method | size px | batch | {' | '.join(f'images/s {label(v)}' for v in variants)} | "
                       f"{' | '.join(f'speed {label(v)} / {label(variants[0])}' for v in variants[1:])} | "
                       "peak memory MB |", "|---|" + "---:|" * (2 * len(variants) + 2), *rows])
    write(args.output, report, f"# Training throughput per method\n\n`{report['command']}`  \nEach method's own "
          f"networks and a batch of its embedded data, repeated; {args.repeats} x {args.steps} timed steps per "
          f"setting after {args.warmup} warm-up; peak memory: the method's child process's peak resident set "
          f"(all settings and sizes). Per-method details: OUTPUT_METHOD.md.\n\n{table}\n")
    print(table)
    return 0


def compare_onednn(args) -> int:
    """Each repeat runs every oneDNN setting in a child process (this script, one repeat each,
    settings in a rotating order); merges their step times and writes one report."""
    merged: dict[tuple, dict] = {}
    machines = {}
    with tempfile.TemporaryDirectory(prefix="benchmark_onednn_") as tmpdir:
        for r in range(args.repeats):
            for setting in args.onednn[r % len(args.onednn):] + args.onednn[:r % len(args.onednn)]:
                child = Path(tmpdir) / f"{setting}_{r}"
                command = [sys.executable, __file__, "--method", args.method, "--sizes", ",".join(map(str, args.sizes)),
                           "--jit", ",".join(args.jit), "--steps", str(args.steps), "--warmup", str(args.warmup),
                           "--repeats", "1", *network_flags(args), "--onednn", setting, "--output", str(child)]
                print(f"repeat {r + 1}/{args.repeats}: oneDNN {setting} (child process)", file=sys.stderr)
                if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
                    print(f"benchmark.py: error: the oneDNN {setting} child failed: {' '.join(command)}", file=sys.stderr)
                    return 1
                report = json.loads(Path(f"{child}.json").read_text())
                machines[setting] = report["machine"]
                for res in report["results"]:
                    v = merged.setdefault((res["size"], res["jit"], setting),
                                          {"size": res["size"], "jit": res["jit"], "onednn": setting,
                                           "onednn_effective": report["machine"]["onednn"], "warmup_s": [],
                                           "step_times_s": [], "cpu_times_s": []})
                    v["warmup_s"] += res["warmup_s"]
                    v["step_times_s"] += res["step_times_s"]
                    v["cpu_times_s"] += res["cpu_times_s"]
    results = [dict(v, summary=summarize(v["step_times_s"], v["cpu_times_s"])) for v in merged.values()]
    results.sort(key=lambda v: (v["size"], v["jit"], v["onednn"]))
    med = {(v["size"], v["jit"], v["onednn"]): v["summary"]["median_s"] for v in results}
    ratios = [{"size": s, "jit": j, "off_s": med[s, j, "off"], "on_s": med[s, j, "on"],
               "on_over_off_speed": med[s, j, "off"] / med[s, j, "on"]}
              for s in args.sizes for j in args.jit if (s, j, "off") in med and (s, j, "on") in med]
    lines = ["| size | XLA | oneDNN | median s/step | min | max | IQR % | images/s | medians per repeat | cores busy |",
             "|---:|:---:|:---:|---:|---:|---:|---:|---:|---|---:|"]
    for v in results:
        m = v["summary"]
        lines.append(f"| {v['size']} | {v['jit']} | {v['onednn']} | {m['median_s']:.3f} | {m['min_s']:.3f} | "
                     f"{m['max_s']:.3f} | {m['iqr_pct']:.1f} | {m['images_per_s']:.2f} | "
                     f"{', '.join(f'{x:.3f}' for x in m['repeat_medians_s'])} | {m['cores_busy']:.2f} |")
    lines += ["", "| size | XLA | oneDNN off s/step | oneDNN on s/step | speed ratio on/off (>1 = oneDNN faster) |",
              "|---:|:---:|---:|---:|---:|"]
    lines += [f"| {q['size']} | {q['jit']} | {q['off_s']:.3f} | {q['on_s']:.3f} | {q['on_over_off_speed']:.3f} |"
              for q in ratios]
    table = "\n".join(lines)
    env = machines[args.onednn[0]]
    command = command_line()
    write(args.output, {"command": command, "settings": vars(args), "machines": machines, "results": results,
                        "onednn_ratios": ratios},
          f"# {args.method} training throughput, oneDNN off against on\n\n`{command}`  \n"
        f"TF {env['tensorflow']}, Keras {env['keras']}, {env['cpu']}, {env['cores']} cores, batch 1, "
        f"{env['dtype_policy']}, {args.repeats} repeats x {args.steps} timed steps per variant after "
        f"{args.warmup} warm-up; each repeat runs each oneDNN setting in its own process, alternating.\n\n"
        + table + "\n")
    print(table)
    return 0


def time_exported(folder: Path, sizes, args, tf) -> tuple[str, list[dict]]:
    """ms per image of an exported version's float SavedModel signature and of each TFLite
    file beside it, batch 1, at each size, interleaved; returns (signature, results)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    loaded = tf.saved_model.load(str(folder))
    name = next(n for n in loaded.signatures
                if n != "serving_default" and not n.endswith(("_bytes", "_map", "_tile", "_statistics"))
                and "images" in loaded.signatures[n].structured_outputs)
    fn = loaded.signatures[name]
    inputs = fn.structured_input_signature[1]
    channels, fixed = inputs["images"].shape[-1], inputs["images"].shape[1]
    extra = {k: np.full((1, v.shape[-1]), 1.0 / v.shape[-1], np.float32) for k, v in inputs.items() if k != "images"}
    variants = [("SavedModel", None)] + [(f.stem.replace("model_", "TFLite ").replace("model", "TFLite float32"), f)
                                         for f in sorted(folder.glob("*.tflite"))]
    runs = []
    for size in ([fixed] if fixed else sizes):  # DTN takes its one training size
        image = np.random.default_rng(size).random((1, size, size, channels), dtype=np.float32)
        for label, path in variants:
            if path is None:
                call = lambda image=image: fn(images=tf.constant(image), **extra)["images"].numpy()  # noqa: E731
            else:
                interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
                runner = interpreter.get_signature_runner(name)
                call = lambda image=image, runner=runner: runner(images=image, **extra)["images"]  # noqa: E731
            v = {"size": size, "variant": label, "file": None if path is None else path.name, "runs": [], "cpu": []}
            v["warmup_s"] = [step(call) for _ in range(max(1, args.warmup))]
            v["run"] = call
            runs.append(v)
            print(f"{folder} {size}px {label}: warm-up {', '.join(f'{t:.3f}' for t in v['warmup_s'])} s",
                  file=sys.stderr)
    for r in range(args.repeats):
        for v in runs[r % len(runs):] + runs[:r % len(runs)]:
            v["runs"].append([step(v["run"], v["cpu"]) for _ in range(args.steps)])
    return name, [{"size": v["size"], "variant": v["variant"], "file": v["file"], "step_times_s": v["runs"],
                   "summary": summarize(v["runs"], v["cpu"])} for v in runs]


def inference(args, tf, keras) -> int:
    """ms per image of the SavedModel's float signature and of each TFLite variant, batch 1."""
    folder = Path(args.inference)
    env = machine(tf, keras)
    name, results = time_exported(folder, args.sizes, args, tf)
    lines = ["| size | variant | median ms/image | min | max | IQR % | cores busy |", "|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        m = r["summary"]
        lines.append(f"| {r['size']} | {r['variant']} | {1000 * m['median_s']:.1f} | {1000 * m['min_s']:.1f} | "
                     f"{1000 * m['max_s']:.1f} | {m['iqr_pct']:.1f} | {m['cores_busy']:.2f} |")
    table = "\n".join(lines)
    command = command_line()
    write(args.output, {"command": command, "model": str(folder), "signature": name, "machine": env,
                        "results": results},
          f"# Inference latency of {folder}\n\n`{command}`  \nTF {env['tensorflow']}, {env['cpu']}, {env['cores']} "
        f"cores, oneDNN {'on' if env['onednn'] else 'off'}; signature `{name}`, batch 1, {args.repeats} x "
        f"{args.steps} timed calls per variant after {args.warmup} warm-up, interleaved.\n\n{table}\n")
    print(table)
    return 0


def export_variants(method: str, run: str | None, size: int, tmpdir: str):
    """Export ``method``'s generator with every TFLite variant: trained weights from ``run``,
    or else the paper's networks at ``size`` with their initial weights. Returns (version
    folder, held-out examples, description of the weights, the first generator)."""
    from tf_translate import config, export, registry
    from tf_translate import data as tf_data
    from tf_translate.training import trainer

    variants = {"tflite": True, "tflite_variants": export.TFLITE_VARIANTS, "export_dir": f"{tmpdir}/{method}"}
    spec = registry.get(method)
    if run:
        cfg = config.load(Path(run) / "config.json")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output=run),
                                  export=dataclasses.replace(cfg.export, **variants))
        model, weights = trainer.restore(cfg), f"trained: {run}"
    else:
        sizes = {} if spec.data_kind == "transfer" else {"crop_size": size, "load_size": size}
        cfg = config.build(method, spec.config, spec.overrides, {"data": sizes, "export": variants,
                                                                 "train": {"output": f"{tmpdir}/run_{method}"}})
        model, weights = trainer.build_model(cfg, spec, steps_per_epoch=1), "untrained (initial weights), paper size"
    data = tf_data.load(spec.data_kind, cfg)
    examples = data.preview(8)
    version = export.export_model(model, cfg, examples=examples, representative=export.training_inputs(data, cfg))
    return version, examples, weights, next(iter(model.generators().values()))[0]


def tflite_variants(args, tf, keras) -> int:
    """Per method: every TFLite variant's file size, PSNR and max error against the SavedModel
    on held-out images, and ms per image beside the SavedModel's, with the generator's FLOPs
    per image and the fraction of this machine's measured peak that each variant achieves."""
    from flops import flops_per_image, machine_peak

    from tf_translate import export

    env = machine(tf, keras)
    peak = machine_peak()
    conv_peak = peak["conv3x3_256_128px"]["gflops"]
    runs = dict(item.split("=", 1) for item in args.run)
    report = {"command": command_line(), "machine": env, "peak": peak, "methods": {}}
    lines = ["| method | weights | variant | size MB | PSNR dB | max error | size px | GFLOP/image | ms/image | "
             "speed-up | % of peak |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="benchmark_") as tmpdir:
        for method in args.tflite_variants.split(","):
            version, examples, weights, net = export_variants(method, runs.get(method), max(args.sizes), tmpdir)
            names = [n for n in export.Exported(version).names]
            quality = {v: export.tflite_parity(version, names[:1], examples, variant=v, limit=None)["signatures"][names[0]]
                       for v in export.TFLITE_VARIANTS}
            name, results = time_exported(version, args.sizes, args, tf)
            work = {size: flops_per_image(net, size) for size in {r["size"] for r in results}}
            files = {v: version / export.tflite_file(v) for v in export.TFLITE_VARIANTS}
            saved_bytes = sum(f.stat().st_size for f in (version / "variables").iterdir())
            report["methods"][method] = {"weights": weights, "signature": name, "quality": quality,
                                         "sizes_bytes": {"SavedModel variables": saved_bytes,
                                                         **{v: f.stat().st_size for v, f in files.items()}},
                                         "flops_per_image": work, "results": results}
            for r in results:
                variant = r["variant"].replace("TFLite ", "")
                base = next(x["summary"]["median_s"] for x in results
                            if x["size"] == r["size"] and x["variant"] == "SavedModel")
                q = quality.get(variant)
                size_mb = (files[variant].stat().st_size if variant in files else saved_bytes) / 1e6
                lines.append(f"| {method} | {weights.split(':')[0].split(' (')[0]} | {r['variant']} | {size_mb:.2f} | "
                             f"{'' if q is None else format(q['psnr_db'], '.1f')} | "
                             f"{'' if q is None else format(q['max_abs_error'], '.3f')} | {r['size']} | "
                             f"{work[r['size']] / 1e9:.2f} | {1000 * r['summary']['median_s']:.1f} | "
                             f"{base / r['summary']['median_s']:.2f}x | "
                             f"{100 * work[r['size']] / r['summary']['median_s'] / 1e9 / conv_peak:.0f} |")
    table = "\n".join(lines)
    write(args.output, report,
          f"# TFLite variants against the SavedModel\n\n`{report['command']}`  \nTF {env['tensorflow']}, {env['cpu']}, "
          f"{env['cores']} cores; PSNR and max error on [0, 1] outputs of the held-out images (8, at the training "
          f"size); ms per image at batch 1, {args.repeats} x {args.steps} timed calls after {args.warmup} warm-up, "
          f"interleaved; speed-up over the SavedModel at the same size. GFLOP/image: the float generator's "
          f"forward pass (TF's profiler; a multiply-add is 2); % of peak: GFLOP/image / time against this "
          f"machine's measured {conv_peak:.0f} GFLOP/s (3x3 convolution, float32; matmul: "
          f"{peak['matmul_2048']['gflops']:.0f}), float-equivalent for the quantized variants.\n\n{table}\n")
    print(table)
    return 0


def synthetic_unpaired(count: int):
    """Unpaired data of ``count`` random 286 px images per domain, made on the fly (never all in memory)."""
    import numpy as np

    from tf_translate.data import sources
    from tf_translate.data.unpaired import UnpairedData

    def source(name, stream):
        noise = lambda i: np.random.default_rng([stream, i]).integers(0, 256, (286, 286, 3), dtype=np.uint8)  # noqa: E731
        made = sources.ImageSource(name, list(range(count)), size=286, loader=noise)
        made._cacheable = False
        return made

    return UnpairedData(domains=("a", "b"), train=(source("a", 0), source("b", 1)), test=None, crop_size=256)


def stream_child(count: int, folder: str, steps: int) -> int:
    """Write (if missing) then read ``steps`` batches of the records of ``count`` images per domain."""
    from tf_translate import cli
    from tf_translate.data import records

    cfg = cli.config_from_args(["--method", "cyclegan", "--data", folder])
    if not records.is_records(folder):
        started = time.perf_counter()
        records.write(synthetic_unpaired(count), Path(folder), kind="unpaired", method="cyclegan", load_size=286)
        Path(folder, "written_s").write_text(f"{time.perf_counter() - started}")
        return 0
    data = records.load(folder, "unpaired", cfg)
    batches = iter(data.training(batch_size=1, flip=True, seed=0, first_step=0, steps=steps + 20))
    for _ in range(20):  # warm-up: the pipeline's threads start and fill
        next(batches)
    started = time.perf_counter()
    for _ in range(steps):
        next(batches)
    Path(folder, "read_s").write_text(f"{time.perf_counter() - started}")
    return 0


def compare_streams(args) -> int:
    """Per count: prepare the records (child), then read them (another child, whose peak memory is the reader's)."""
    rows, report = [], {"command": command_line(), "streams": []}
    with tempfile.TemporaryDirectory(prefix="stream_", dir=args.stream_dir) as tmp:
        for count in (int(c) for c in args.stream.split(",")):
            folder = Path(tmp) / str(count)
            me = [sys.executable, __file__, "--stream-child", str(count), str(folder), "--steps", str(args.steps)]
            _, write_mb = run_child(me)
            _, read_mb = run_child(me)
            size_gb = sum(f.stat().st_size for f in folder.iterdir()) / 1e9
            written, read = float((folder / "written_s").read_text()), float((folder / "read_s").read_text())
            row = {"images_per_domain": count, "records_gb": size_gb, "decoded_gb": 2 * count * 286 * 286 * 3 / 1e9,
                   "write_s": written, "read_images_per_s": 2 * args.steps / read, "reader_peak_rss_mb": read_mb,
                   "writer_peak_rss_mb": write_mb}
            report["streams"].append(row)
            rows.append(f"| {count} | {row['decoded_gb']:.2f} | {size_gb:.2f} | {written:.0f} | "
                        f"{row['read_images_per_s']:.0f} | {read_mb:.0f} |")
            shutil.rmtree(folder)
    table = "\n".join(["| images per domain | decoded GB | records GB | prepare s | images/s read (crop, flip, "
                       "[-1, 1]) | reader peak memory MB |", "|---:|---:|---:|---:|---:|---:|", *rows])
    write(args.output, report, f"# Streaming prepared records\n\n`{report['command']}`  \nCycleGAN's training "
          f"pipeline (two domains, 286 px records, 256 px crops, batch 1) over records of random images; "
          f"{args.steps} batches timed after 20. The reader's peak resident memory is its whole process "
          f"(TensorFlow included).\n\n{table}\n")
    print(table)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.stream_child:
        return stream_child(int(args.stream_child[0]), args.stream_child[1], args.steps)
    if args.stream:
        return compare_streams(args)
    if "," in args.method:
        return compare_methods(args)
    if len(args.onednn) > 1:
        return compare_onednn(args)
    if args.onednn[0] != "default":
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn[0] == "on" else "0"
    import tf_translate  # noqa: F401  (sets its oneDNN default, which must precede TensorFlow's start)

    make_torch_step = None
    if args.torch:
        try:
            make_torch_step = load_torch_step(args.method)
        except Exception as e:  # ImportError when torch is missing; OSError when the step file is
            print(f"benchmark.py: error: --torch needs PyTorch and a reference step: {type(e).__name__}: "
                  f"{(str(e).strip().splitlines() or [''])[0]}", file=sys.stderr)
            return 2
    import keras
    import tensorflow as tf

    if args.inference:
        return inference(args, tf, keras)
    if args.tflite_variants:
        return tflite_variants(args, tf, keras)
    env = machine(tf, keras)
    if make_torch_step is not None:
        import torch
        env.update(torch=torch.__version__)
    print(f"TF {env['tensorflow']}, Keras {env['keras']}, {env['cpu']}, {env['cores']} cores, "
          f"oneDNN {'on' if env['onednn'] else 'off'}"
          + (f", torch {env['torch']}" if "torch" in env else ""), file=sys.stderr)
    name = lambda v: "PyTorch reference" if v["jit"] == "torch" else f"XLA {v['jit']} {v['precision']}"  # noqa: E731
    variants = []
    with tempfile.TemporaryDirectory(prefix="benchmark_") as tmpdir:
        for size in args.sizes:
            for jit, precision in [(j, q) for q in args.precision for j in args.jit] + (
                    [("torch", "float32")] if make_torch_step else []):
                v = {"size": size, "jit": jit, "precision": precision, "runs": [], "cpu": []}
                variants.append(v)
                try:
                    if jit == "torch":
                        v["run"] = make_torch_step(size=size, n_blocks=args.n_blocks or 9)
                        v["torch_threads"] = env["torch_threads"] = torch.get_num_threads()
                    else:
                        model, iterator, v["batch"], v["size"] = build(tf, args.method, size, jit, args.n_blocks,
                                                                       args.filters, tmpdir, precision)
                        v["jit_effective"] = bool(model.jit_compile)
                        v["run"] = keras_step(model, iterator)
                    v["warmup_s"] = [step(v["run"]) for _ in range(max(1, args.warmup))]
                    print(f"{size}px {name(v)}: warm-up {', '.join(f'{t:.2f}' for t in v['warmup_s'])} s",
                          file=sys.stderr)
                except Exception as e:  # e.g. an op XLA cannot compile: report it, go on with the others
                    v["error"] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
                    print(f"{size}px {name(v)}: FAILED {v['error']}", file=sys.stderr)
        live = [v for v in variants if "error" not in v]
        for r in range(args.repeats):
            for v in live[r % max(1, len(live)):] + live[:r % max(1, len(live))]:  # rotate the order
                v["runs"].append([step(v["run"], v["cpu"]) for _ in range(args.steps)])
                print(f"repeat {r + 1}/{args.repeats} {v['size']}px {name(v)}: "
                      f"median {statistics.median(v['runs'][-1]):.3f} s", file=sys.stderr)

    results = []
    for v in variants:
        r = {k: v[k] for k in ("size", "jit", "precision", "batch", "jit_effective", "torch_threads", "warmup_s", "error") if k in v}
        if "error" not in v:
            r.update(step_times_s=v["runs"], cpu_times_s=v["cpu"],
                     summary=summarize(v["runs"], v["cpu"], v.get("batch", 1)))
        results.append(r)
    medians = {(r["size"], r["jit"]): r["summary"]["median_s"] for r in results
               if "summary" in r and r["precision"] == args.precision[0]}
    precision_ratios = [
        {"size": r["size"], "jit": r["jit"], "precision": r["precision"], "over": args.precision[0],
         "speed": medians[r["size"], r["jit"]] / r["summary"]["median_s"]}
        for r in results if "summary" in r and r["jit"] != "torch" and r["precision"] != args.precision[0]
        and (r["size"], r["jit"]) in medians]
    ratios = [{"size": s, "off_s": medians[s, "off"], "on_s": medians[s, "on"],
               "on_over_off_speed": medians[s, "off"] / medians[s, "on"]}
              for s in args.sizes if (s, "off") in medians and (s, "on") in medians]
    torch_ratios = [{"size": s, "torch_s": medians[s, "torch"],
                     "off_s": medians.get((s, "off")), "on_s": medians.get((s, "on")),
                     "off_over_torch": medians[s, "off"] / medians[s, "torch"] if (s, "off") in medians else None,
                     "on_over_torch": medians[s, "on"] / medians[s, "torch"] if (s, "on") in medians else None}
                    for s in args.sizes if (s, "torch") in medians]
    table = tables(results, ratios, torch_ratios, args.method, args.n_blocks or 9, precision_ratios)
    settings = {k: getattr(args, k)
                for k in ("method", "sizes", "jit", "precision", "steps", "warmup", "repeats", "n_blocks", "filters", "torch", "onednn")}
    report = {"command": command_line(), "settings": settings, "machine": env,
              "load_average_at_end": os.getloadavg(), "results": results, "xla_ratios": ratios,
              "torch_ratios": torch_ratios, "precision_ratios": precision_ratios,
              "references_s_per_step": {k: {"size": s, "jit": j, "s": t} for k, (s, j, t) in REFERENCES.items()},
              "references_source": "design notes, another machine of this type; not measured in this run",
              "target": {"size": TARGET[0], "jit": TARGET[1], "max_s": TARGET[2]}}
    header = (f"# {args.method} training throughput\n\n`{report['command']}`  \n"
              f"TF {env['tensorflow']}, Keras {env['keras']}, {env['cpu']}, {env['cores']} cores, "
              f"oneDNN {'on' if env['onednn'] else 'off'}, batch 1, {env['dtype_policy']}, "
              + (f"PyTorch reference: torch {env['torch']}, {env['torch_threads']} threads, " if "torch" in env else "")
              + f"{args.repeats} x {args.steps} timed steps per variant after {args.warmup} warm-up, interleaved.\n\n")
    write(args.output, report, header + table + "\n")
    print(table)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
