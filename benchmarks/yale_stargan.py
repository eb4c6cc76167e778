#!/usr/bin/env python3
"""StarGAN quality check on real data: Yale faces across five conditions, scored by a classifier.

Builds the domains layout from the Yale Face Database in ``WORK/data`` (each photo centre-cropped
to a square, 243 x 243 greyscale PNG)::

    train/<condition>/subjectNN.png   subjects 01-08      test/<condition>/subjectNN.png   subjects 09-11

for the conditions centerlight, glasses, leftlight, rightlight, surprised (split by subject, so
nothing can learn identity), then runs the project's own commands as a user would:

    python scripts/train.py --method stargan --data WORK/data --output WORK/run
        --export-dir WORK/exported --load-size 72 --crop-size 64 --batch-size 4 --n-critic 1
        --filters 32 --disc-filters 32 --no-flip --epochs E --decay-epochs D --steps-per-epoch S
        [extra flags]

(``--n-critic 1 --batch-size 4``: on this CPU budget the paper's n_critic 5 and batch 16 give
too few generator updates; 1,500 steps at n_critic 5, batch 8, left the generator near the
identity and its translations recognised as their target no more often than chance.)
    python scripts/export.py --run WORK/run --export-dir WORK/exported_final

and scores the exported model the StarGAN paper's way: a classifier trained separately on the
real training-subject photos (a small CNN, WORK/classifier.keras) reports its accuracy on the
real held-out photos, on the untranslated held-out inputs (how often an input already counts
as the target) and on the translations to each target condition; plus the reconstruction error
|x - G(G(x, c), c_x)|. Writes ``WORK/scores.json`` and ``WORK/grid.png`` (per test photo: the
input, then its translation to every condition).

Usage: python benchmarks/yale_stargan.py [--shared ../shared/data] [--work runs/yale_stargan]
           [--steps-per-epoch N] [--epochs N] [--decay-epochs N] [extra train flags...]

Re-running with the same --work resumes (or, if finished, only re-exports and re-scores) the run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from yale_lighting import REPO, SCRIPTS, fail, held_out_image, labelled_grid, last_path, parse, run

TRAIN_SUBJECTS = [f"subject{i:02d}" for i in range(1, 9)]
TEST_SUBJECTS = [f"subject{i:02d}" for i in range(9, 12)]
CONDITIONS = ("centerlight", "glasses", "leftlight", "rightlight", "surprised")
UPSCALE = 2


def build_layout(yale: Path, data: Path) -> None:
    """Centre-cropped square PNGs of every (subject, condition) in train/ and test/ (the copy of
    the database in shared/ lacks subject01.centerlight: missing photos are named and left out)."""
    splits = {"train": TRAIN_SUBJECTS, "test": TEST_SUBJECTS}
    missing = [f"{s}.{c}" for subjects in splits.values() for s in subjects for c in CONDITIONS
               if not (yale / f"{s}.{c}").is_file()]
    if len(missing) > len(CONDITIONS):
        fail(f"{yale}: missing {len(missing)} file(s): {', '.join(missing)}")
    if missing:
        print(f"left out (not in {yale}): {', '.join(missing)}", flush=True)
    for split, subjects in splits.items():
        for condition in CONDITIONS:
            folder = data / split / condition
            folder.mkdir(parents=True, exist_ok=True)
            for s in subjects:
                if f"{s}.{condition}" in missing:
                    continue
                image = Image.open(yale / f"{s}.{condition}").convert("L")
                side = min(image.size)
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image.crop((left, top, left + side, top + side)).save(folder / f"{s}.png")
    print(f"data: {data} ({len(CONDITIONS)} conditions; train subjects 01-08, test 09-11)", flush=True)


def load_split(data: Path, split: str, load: int, crop: int):
    """(images in [0, 1] as (N, crop, crop, 3), condition indices, names), preprocessed as the
    held-out images are."""
    images, labels, names = [], [], []
    for k, condition in enumerate(CONDITIONS):
        for path in sorted((data / split / condition).glob("*.png")):
            images.append(held_out_image(path, load, crop))
            labels.append(k)
            names.append(f"{path.stem} {condition}")
    return np.stack(images), np.array(labels), names


def train_classifier(images: np.ndarray, labels: np.ndarray, path: Path, *, seed: int = 0, steps: int = 1200):
    """A small CNN condition classifier on real photos, with random shifts and contrast (no flips:
    a mirrored leftlight photo is a rightlight one)."""
    import keras
    from keras import layers

    if path.is_file():
        return keras.models.load_model(path)
    keras.utils.set_random_seed(seed)
    size = images.shape[1]
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        layers.RandomTranslation(0.08, 0.08, fill_mode="reflect"),
        layers.RandomContrast(0.2),
        *[block for f in (16, 32, 64, 128) for block in (
            layers.Conv2D(f, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(),
            layers.MaxPooling2D())],
        layers.GlobalAveragePooling2D(),
        layers.Dropout(0.3),
        layers.Dense(len(CONDITIONS)),
    ])
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    batch = 16
    model.fit(images, labels, batch_size=batch, epochs=steps * batch // len(images), verbose=2)
    model.save(path)
    return model


def score(model_dir: Path, data: Path, work: Path) -> dict:
    """The classifier's accuracies on real, input and translated held-out photos; reconstruction L1."""
    import tf_translate
    from tf_translate.nn.classifier import accuracy  # the shared metric: argmax of the logits against the labels

    model = tf_translate.load_exported(model_dir)
    load, crop = model.config.data.load_size, model.config.data.crop_size
    train_x, train_y, _ = load_split(data, "train", load, crop)
    test_x, test_y, names = load_split(data, "test", load, crop)
    classifier = train_classifier(train_x, train_y, work / "classifier.keras")
    scores = {"model": str(model_dir), "real_held_out": accuracy(classifier, test_x, test_y),
              "classifier_train": accuracy(classifier, train_x, train_y), "inputs": {}, "translations": {},
              "reconstruction_l1": {}}
    translations = {}
    for k, condition in enumerate(CONDITIONS):
        translations[condition] = model(test_x, to=condition)
        others = test_y != k  # inputs from the other conditions
        x, fake, target = test_x[others], translations[condition][others], np.full(int(others.sum()), k)
        scores["inputs"][condition] = accuracy(classifier, x, target)
        scores["translations"][condition] = accuracy(classifier, fake, target)
        back = model(fake, labels=np.eye(len(CONDITIONS), dtype=np.float32)[test_y[others]])  # to each own
        scores["reconstruction_l1"][condition] = float(np.mean(np.abs(back - x)))  # in [0, 1] units
    for key in ("inputs", "translations", "reconstruction_l1"):
        scores[f"{key}_mean"] = float(np.mean(list(scores[key].values())))
    draw_grid(test_x, names, translations, work / "grid.png")
    return scores


def draw_grid(inputs: np.ndarray, names: list[str], translations: dict, out: Path) -> None:
    """Rows: held-out photos; columns: the input, then G(input, c) for every condition c."""
    rows = [(names[i], [inputs[i], *(translations[c][i] for c in CONDITIONS)]) for i in range(len(inputs))]
    labelled_grid(rows, ("input", *(f"-> {c}" for c in CONDITIONS)), out, UPSCALE, label_w=130)
    print(f"grid: {out}", flush=True)


def main() -> None:
    args, extra, yale = parse(__doc__, "runs/yale_stargan", 100, 20, 10)
    work = Path(args.work).resolve()
    data, run_dir = work / "data", work / "run"
    build_layout(yale, data)

    py = sys.executable
    steps = (args.epochs + args.decay_epochs) * args.steps_per_epoch
    _, train_s = run([py, SCRIPTS / "train.py", "--method", "stargan", "--data", data, "--output", run_dir,
                      "--export-dir", work / "exported", "--load-size", "72", "--crop-size", "64",
                      "--batch-size", "4", "--n-critic", "1", "--no-flip", "--filters", "32", "--disc-filters", "32",
                      "--domains", ",".join(CONDITIONS), "--validate-every", "500", "--epochs", args.epochs,
                      "--decay-epochs", args.decay_epochs, "--steps-per-epoch", args.steps_per_epoch, *extra])
    print(f"train wall time {train_s:.1f} s for {steps} steps", flush=True)
    out, _ = run([py, SCRIPTS / "export.py", "--run", run_dir, "--export-dir", work / "exported_final"])
    sys.path.insert(0, str(REPO))
    scores = score(last_path(out), data, work)
    (work / "scores.json").write_text(json.dumps(scores, indent=2))
    print(json.dumps(scores, indent=2), flush=True)


if __name__ == "__main__":
    main()
