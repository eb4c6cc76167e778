"""Metrics (PSNR, SSIM, L1 on 8-bit RGB) and the evaluation of an exported model.

Unpaired test sets whose files share names across ``testA/`` and ``testB/`` (the same
subject in both domains) are scored as pairs: G(a) against its b, beside the untranslated a
against b as the baseline. Without such pairs the score is the cycle reconstruction
F(G(a)) against a, which needs no ground truth.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_translate import data as tf_data, registry
from tf_translate.data.pipeline import to_uint8
from tf_translate.export import Exported


def psnr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """PSNR in dB per image of uint8 NHWC batches (max value 255)."""
    return tf.image.psnr(tf.constant(x), tf.constant(y), max_val=255).numpy()


def ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM per image of uint8 NHWC batches (max value 255, the 11x11 Gaussian window)."""
    return tf.image.ssim(tf.constant(x), tf.constant(y), max_val=255).numpy()


def l1(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean absolute error per image in [0, 1] units."""
    diff = np.abs(x.astype(np.float32) - y.astype(np.float32)) / 255.0
    return diff.reshape(len(x), -1).mean(axis=1)


def scores(x: np.ndarray, y: np.ndarray) -> dict:
    """Mean PSNR, SSIM and L1 of two uint8 batches."""
    return {"psnr": float(np.mean(psnr(x, y))), "ssim": float(np.mean(ssim(x, y))), "l1": float(np.mean(l1(x, y)))}


def _uint8(images01: np.ndarray) -> np.ndarray:
    return np.asarray(to_uint8(images01 * 2.0 - 1.0))


def evaluate(model_dir: str | Path, source: str | None = None) -> dict:
    """Score an exported model on the held-out split of ``source`` (default: its training data)."""
    model = Exported(model_dir)
    cfg = model.config
    data_cfg = cfg.data if source is None else dataclasses.replace(cfg.data, data=source)
    spec = registry.get(cfg.method)
    dataset = tf_data.load(spec.data_kind, data_cfg)
    x, y = dataset.held_out()
    x01, y01 = (x + 1.0) / 2.0, (y + 1.0) / 2.0
    a, b = cfg.data.domains
    names_a = [Path(dataset.test[0].label(i)).stem for i in range(len(x))]
    names_b = [Path(dataset.test[1].label(i)).stem for i in range(len(y))]
    report = {"model": str(model_dir), "method": cfg.method, "data": data_cfg.data or "embedded default",
              "size": cfg.data.crop_size, "images": {a: len(x), b: len(y)}}
    common = sorted(set(names_a) & set(names_b))
    if common:
        ia = [names_a.index(n) for n in common]
        ib = [names_b.index(n) for n in common]
        report["paired"] = len(common)
        for src, dst, xs, ys in ((a, b, x01[ia], y01[ib]), (b, a, y01[ib], x01[ia])):
            out = model(xs, to=dst)
            report[f"{src}2{dst}"] = {"translated_vs_target": scores(_uint8(out), _uint8(ys)),
                                      "input_vs_target": scores(_uint8(xs), _uint8(ys))}
    else:
        for src, dst, xs in ((a, b, x01), (b, a, y01)):
            back = model(model(xs, to=dst), to=src)
            report[f"{src}2{dst}2{src}"] = {"reconstruction_vs_input": scores(_uint8(back), _uint8(xs))}
    return report


def markdown(report: dict) -> str:
    lines = [f"# Evaluation of {report['model']} ({report['method']}, {report['size']} px, data: {report['data']})", "",
             "| direction | compared | PSNR (dB) | SSIM | L1 |", "|---|---|---|---|---|"]
    for key, value in report.items():
        if isinstance(value, dict) and key != "images":
            for compared, s in value.items():
                lines.append(f"| {key} | {compared.replace('_', ' ')} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['l1']:.4f} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, output: str | Path) -> tuple[Path, Path]:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output.with_suffix(".json"), output.with_suffix(".md")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path
