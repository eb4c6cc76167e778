"""How right stage 1b's labels of the target are, and h's reading of real held-out target digits.

    python benchmarks/dtn_h_labels.py RUN [RUN ...]

RUN is a DTN run folder whose stage 1 is done (RUN/encoder/f.keras; RUN/encoder/h.keras too,
if stage 1b is). The target's own labels (class folders, as in the embedded digits) are read
here for the measurement only; training never reads them. Per run: the share of the target's
training images each --h-labels way labels right (overall, per class, and how many it keeps),
and, with h.keras, how many real held-out target digits h reads as their class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

from tf_translate import config
from tf_translate import data as tf_data
from tf_translate.methods import dtn
from tf_translate.nn import classifier


def per_class(read: np.ndarray, truth: np.ndarray, classes: int) -> str:
    return " ".join(f"{100 * np.mean(read[truth == k] == k):.0f}" if np.any(truth == k) else "-"
                    for k in range(classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print("| run | what | right | per class | images |\n|---|---|---:|---|---:|")
    for run in args.runs:
        cfg = config.load(run / "config.json")
        data = tf_data.load("transfer", cfg)
        classes = len(data.classes)
        images, truth = data.images(data.target), np.asarray(data.target.labels)
        f = keras.models.load_model(run / "encoder" / "f.keras", compile=False)
        features, probabilities = classifier.read(keras.Model(f.input, f.get_layer("features").output), f, images)
        sure = probabilities.max(axis=1) >= dtn.CONFIDENT
        ways = {"f's reading, all": (probabilities.argmax(axis=1), np.ones(len(images), bool)),
                f"confident (f >= {dtn.CONFIDENT})": (probabilities.argmax(axis=1), sure),
                "centroid": (classifier.centroid_labels(features, probabilities),
                             np.ones(len(images), bool))}
        for what, (labels, kept) in ways.items():
            print(f"| {run} | {what} | {100 * np.mean(labels[kept] == truth[kept]):.1f} % | "
                  f"{per_class(labels[kept], truth[kept], classes)} | {int(kept.sum())} |")
        if (run / "encoder" / "h.keras").is_file():
            h = keras.models.load_model(run / "encoder" / "h.keras", compile=False)
            held, held_truth = data.images(data.target_test), np.asarray(data.target_test.labels)
            read = classifier.predict(h, held)
            print(f"| {run} | h on held-out target | {100 * np.mean(read == held_truth):.1f} % | "
                  f"{per_class(read, held_truth, classes)} | {len(held)} |")


if __name__ == "__main__":
    main()
