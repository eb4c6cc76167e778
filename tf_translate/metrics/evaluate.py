"""Metrics (PSNR, SSIM, L1 on 8-bit RGB) and the evaluation of an exported model.

Unpaired test sets whose files share names across ``testA/`` and ``testB/`` (the same
subject in both domains) are scored as pairs: G(a) against its b, beside the untranslated a
against b as the baseline. Without such pairs the score is the cycle reconstruction
F(G(a)) against a, which needs no ground truth.

Paired models (pix2pix) are scored on held-out stacks, per target frame, against a
baseline: for frame interpolation the linear cross-fade of the two input frames around
it (a model worth shipping beats it) and ffmpeg's motion-compensated interpolation
(``minterpolate``, mci), otherwise the untranslated input.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from tf_translate import data as tf_data
from tf_translate import registry
from tf_translate.data import video
from tf_translate.data.frames import blend_weights, is_crossfade, is_interpolation
from tf_translate.data.images import DataError
from tf_translate.data.photos import load_image
from tf_translate.data.pipeline import to_uint8
from tf_translate.export import Exported
from tf_translate.metrics.fid import frechet_distance, kernel_inception_distance
from tf_translate.metrics.minterpolate import FILTER, minterpolate_batch
from tf_translate.nn.features import WeightsMissing


def psnr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """PSNR in dB per image of uint8 NHWC batches (max value 255)."""
    return tf.image.psnr(tf.constant(x), tf.constant(y), max_val=255).numpy()


def ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM per image of uint8 NHWC batches (max value 255, the 11x11 Gaussian window)."""
    return tf.image.ssim(tf.constant(x), tf.constant(y), max_val=255).numpy()


def ssim_7x7(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM per image with scikit-image's defaults (``structural_similarity``: 7x7 uniform
    window, sample covariance, data range 255, channels averaged), the variant that many
    published pix2pix numbers use. Equal to skimage's value up to float rounding."""
    x, y = (tf.constant(v, tf.float64) for v in (x, y))
    mean = lambda v: tf.nn.avg_pool2d(v, 7, 1, "VALID")  # noqa: E731  (skimage filters, then crops 3 px)
    ux, uy = mean(x), mean(y)
    norm = 49.0 / 48.0
    vx, vy = norm * (mean(x * x) - ux * ux), norm * (mean(y * y) - uy * uy)
    vxy = norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return tf.reduce_mean(s, axis=[1, 2, 3]).numpy()


def l1(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean absolute error per image in [0, 1] units."""
    diff = np.abs(x.astype(np.float32) - y.astype(np.float32)) / 255.0
    return diff.reshape(len(x), -1).mean(axis=1)


def scores(x: np.ndarray, y: np.ndarray, lpips=None) -> dict:
    """Mean PSNR, SSIM (11x11 Gaussian and 7x7 uniform windows) and L1 of two uint8 batches,
    and LPIPS with an ``lpips.LPIPS`` model."""
    out = {"psnr": float(np.mean(psnr(x, y))), "ssim": float(np.mean(ssim(x, y))),
           "ssim_7x7": float(np.mean(ssim_7x7(x, y))), "l1": float(np.mean(l1(x, y)))}
    if lpips is not None:
        out["lpips"] = float(np.mean(lpips(x.astype(np.float32) / 255.0, y.astype(np.float32) / 255.0)))
    return out


@functools.lru_cache(maxsize=None)
def _network(name: str):
    """The LPIPS or FID network, built once per process (``evaluate --run`` scores two
    checkpoints, each in both directions)."""
    if name == "lpips":
        from tf_translate.metrics.lpips import LPIPS

        return LPIPS()
    from tf_translate.metrics.fid import FID

    return FID()


def pretrained(name: str, report: dict):
    """The LPIPS or FID network, or None when its weights are not cached: the report's notes
    then say how to get them, and the other scores are still given."""
    try:
        return _network(name)
    except WeightsMissing as e:
        report.setdefault("notes", []).append(f"{name.upper()} not computed: {e}")
        return None


def distribution(fid, made: np.ndarray, real: np.ndarray, baseline: np.ndarray) -> dict:
    """FID and KID of translated images (float [0, 1]) against real ones of the target domain,
    beside the untranslated inputs against the same; KID is unbiased on small sets, FID is not."""
    real_features = fid.features(real)
    out = {"images": [len(made), len(real)]}
    for key, images in (("translated_vs_target", made), ("input_vs_target", baseline)):
        features = fid.features(images)
        kid, spread = kernel_inception_distance(features, real_features)
        out[key] = {"fid": frechet_distance(features, real_features), "kid": kid, "kid_std": spread}
    return out


def _uint8(images01: np.ndarray) -> np.ndarray:
    return np.asarray(to_uint8(images01 * 2.0 - 1.0))


def evaluate(model_dir: str | Path, source: str | None = None, pictures: str | Path | None = None,
             classifier_path: str | Path | None = None) -> dict:
    """Score an exported model on the held-out split of ``source`` (default: its training data);
    contact sheets, where a method has them, go to ``pictures``. ``classifier_path``: where the
    target-domain classifier that scores a DTN model is loaded from, or saved to once trained."""
    model = Exported(model_dir)
    cfg = model.config
    spec = registry.get(cfg.method)
    unseen = source is not None and not _same_file(source, cfg.data.data)
    if source is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data=source))
    if unseen and spec.data_kind == "paired" and video.is_video(source):  # footage it never saw: every window
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, holdout=1.0))
    dataset = tf_data.load(spec.data_kind, cfg)
    report = {"model": str(model_dir), "method": cfg.method, "data": cfg.data.data or "embedded default",
              "size": cfg.data.crop_size}
    if getattr(cfg.model, "holdout", None) == 1.0:
        report["held_out"] = "every window: footage the model did not train on"
    evaluations = {"perceptual": lambda: _perceptual(model, dataset, cfg, pictures),
                   "classified": lambda: _transfer(model, dataset, pictures, classifier_path),
                   "paired": lambda: _paired(model, dataset, pictures),
                   "domains": lambda: _domains(model, dataset, pictures),
                   "unpaired": lambda: _unpaired(model, dataset, cfg, pictures)}
    report.update(evaluations[spec.evaluation]())  # the registry entry says which
    return report


def _same_file(a, b) -> bool:
    return b is not None and Path(a).resolve() == Path(b).resolve()


def evaluate_run(run_dir: str | Path, source: str | None = None, pictures: str | Path | None = None,
                 classifier_path: str | Path | None = None) -> dict:
    """Score a run's final checkpoint and, when it validated, its best one. The best was chosen
    on the same held-out split, so its scores flatter it: published numbers often quote such a
    best epoch, and the report says which is which."""
    import tempfile

    from tf_translate import config, export
    from tf_translate.training import trainer

    run_dir = Path(run_dir)
    cfg = config.load(run_dir / "config.json")
    chosen = {"final": trainer.checkpoint_step(run_dir / "checkpoints")}
    if (run_dir / "best" / "best.json").exists():
        chosen["best"] = json.loads((run_dir / "best" / "best.json").read_text())["step"]
    model_cls = registry.get(cfg.method).model
    checkpoints = {}
    with tempfile.TemporaryDirectory(prefix="tf_translate_evaluate_") as tmp:
        for which, step in chosen.items():
            version = export.export_run(run_dir, export_dir=tmp, best=which == "best", tflite=False)
            report = evaluate(version, source, Path(pictures) / which if pictures else None, classifier_path)
            report.update(model=f"{run_dir} ({which} checkpoint, step {step})", step=step)
            checkpoints[which] = report
    return {"run": str(run_dir), "method": cfg.method, "checkpoints": checkpoints,
            "best_by": f"{'lowest' if model_cls.validation_mode == 'min' else 'highest'} {model_cls.validation_key}"}


def _perceptual(model: Exported, dataset, cfg, pictures: Path | None, iterations: int = 100) -> dict:
    """Fast style's quality reference: on each held-out photo, the trained network's weighted
    perceptual loss (content, style, TV, exactly as in training) beside that of a per-image
    optimisation of the same loss (Gatys-style L-BFGS from the photo, ``iterations`` steps),
    which is what the network approximates in one pass. A ratio near 1 = as good as optimising.
    With ``pictures``, writes the contact sheet (photo | network | optimised) per style."""
    from tf_translate.data.pictures import panel
    from tf_translate.methods import gatys

    (x,) = dataset.held_out()
    m = cfg.model
    report = {"photos": len(x), "optimiser_iterations": iterations, "styles": {}}
    for k, style_path in enumerate(m.style):
        weights = np.eye(len(m.style), dtype=np.float32)[k] if len(m.style) > 1 else None
        gcfg = gatys.GatysConfig(preset="johnson", size=cfg.data.crop_size, style_size=m.style_size,
                                 iterations=iterations, content_weight=m.content_weight, style_weight=m.style_weight,
                                 tv_weight=m.tv_weight, weights=m.weights, init="content")
        objective = gatys.Objective(gatys.resolved(gcfg), load_image(style_path, m.style_size or cfg.data.crop_size))
        rows, per_photo = [], []
        for photo in x:
            made = model((photo[None] + 1.0) / 2.0, style_weights=weights) * 2.0 - 1.0
            objective.set_content(tf.constant(photo[None]))
            network = {key: float(v) for key, v in objective.terms(tf.constant(made, tf.float32)).items()}
            network["total"] = sum(network.values())
            untouched = {key: float(v) for key, v in objective.terms(tf.constant(photo[None])).items()}
            untouched["total"] = sum(untouched.values())
            final, history, _ = gatys.optimise(gcfg, tf.constant(photo[None]), objective=objective)
            best = history[-1]
            optimised = {key: best[key] for key in network}
            per_photo.append({"network": network, "optimised": optimised, "photo": untouched,
                              "ratio": network["total"] / optimised["total"]})
            rows.append([photo, made[0], final[0]])
        report["styles"][Path(style_path).name] = {
            "photos": per_photo,
            "mean_ratio": float(np.mean([p["ratio"] for p in per_photo])),
            "max_ratio": float(np.max([p["ratio"] for p in per_photo])),
            **{f"mean_{who}_{term}": float(np.mean([p[who][term] for p in per_photo]))
               for who in ("network", "optimised", "photo") for term in ("content", "style", "total")}}
        if pictures is not None:
            sheet = Path(pictures) / f"style_{k}_sheet.png"
            sheet.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(panel(rows, ("photo", "network", f"optimised ({iterations} L-BFGS)"))).save(sheet)
            report["styles"][Path(style_path).name]["sheet"] = str(sheet)
    if pictures is not None and len(m.style) > 1:
        report["blend_sheet"] = str(_blend_sheet(model, x[:4], m.style, Path(pictures) / "blend_sheet.png"))
    return report


def judge_cnn(name: str, size: int, channels: int, classes: int, batches, *, steps: int, seed: int):
    """A small CNN (DTN's f architecture with a dense head) trained on ``batches(first, count)``
    of (images, int labels): the evaluation's reader of translations."""
    import keras

    from tf_translate.nn import classifier, networks

    keras.utils.set_random_seed(seed)
    model = classifier.with_head(networks.dtn_encoder(size=size, in_channels=channels), classes, name=name)
    classifier.train(model, batches, steps=steps, lr=1e-3, describe=name.replace("_", " "))
    return model


def target_classifier(dataset, path: Path | None, *, steps: int = 1000, seed: int = 0):
    """``judge_cnn`` trained on the target domain's training images and labels; loaded from
    ``path`` if it exists, else trained and saved there."""
    import keras

    if path is not None and Path(path).is_file():
        return keras.models.load_model(path, compile=False)
    model = judge_cnn("target_classifier", dataset.crop_size, dataset.channels, len(dataset.target_classes),
                      lambda first, count: dataset.labelled("target", batch_size=64, seed=seed, first_step=first,
                                                            steps=count), steps=steps, seed=seed)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    return model


def pixel_judges(dataset) -> dict:
    """Readers of another family than the CNN, which shares f's architecture and so may read the
    marks g learns for f as a class (docs/methods/dtn.md): 3 nearest neighbours and a random
    forest, both on the pixels of the target's training images, with their labels."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier

    flat = lambda images: images.reshape(len(images), -1)  # noqa: E731
    x, y = flat(dataset.images(dataset.target)), dataset.target.labels
    return {name: (lambda images, judge=judge.fit(x, y): judge.predict(flat(images))) for name, judge in (
        ("3 nearest neighbours", KNeighborsClassifier(3)),
        ("random forest", RandomForestClassifier(200, random_state=0, n_jobs=-1)))}


def reading(predict, made, x, labels, real, real_labels, classes) -> dict:
    """How a judge (``predict``: images in [-1, 1] -> classes) reads the translations ``made`` of
    ``x``, beside real target images and the untranslated ``x``, overall and per class."""
    predicted = predict(made)
    return {"real_target": float(np.mean(predict(real) == real_labels)),
            "untranslated_source": float(np.mean(predict(x) == labels)),
            "translated_source": float(np.mean(predicted == labels)),
            "translated_per_class": {name: float(np.mean(predicted[labels == k] == k))
                                     for k, name in enumerate(classes) if np.any(labels == k)}}


def nearest_distance(images: np.ndarray, bank: np.ndarray) -> float:
    """The mean RMS pixel distance (images in [0, 1]) from each image to its nearest image of
    ``bank``: how close to some real digit a drawing is, with no classifier involved."""
    a, b = (v.reshape(len(v), -1).astype(np.float64) for v in (images, bank))
    squared = (a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :]
    return float(np.mean(np.sqrt(np.maximum(squared.min(1), 0.0) / a.shape[1])))


# a mark: a piece of ink apart from a drawing's largest, with less than this share of its ink (DTN's --mark-below)
MARK = 0.1


def pieces(image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The ink (summed intensity) of each 8-connected piece of a drawing (in [0, 1], light
    strokes on dark; ink is above ``threshold``), in no particular order."""
    from scipy import ndimage

    grey = image.mean(-1) if image.ndim == 3 else image
    parts, n = ndimage.label(grey > threshold, structure=np.ones((3, 3)))
    return np.asarray(ndimage.sum(grey, parts, index=np.arange(1, n + 1)), np.float64).reshape(n)


def stray_ink(images: np.ndarray, threshold: float = 0.5, below: float = 1.0) -> float:
    """The mean share of each drawing's ink in 8-connected pieces (``pieces``) holding less than
    ``below`` times its largest piece's ink, with no classifier involved: with 1, all but the
    largest (dots beside a digit and pieces of a broken stroke; a clean digit scores 0, an i's
    dot would not); with ``MARK`` (a tenth), marks only: dots and dashes, not a five's lifted bar."""
    inks = [pieces(image, threshold) for image in images]
    return float(np.mean([ink[ink < below * ink.max()].sum() / ink.sum() if len(ink) > 1 else 0.0 for ink in inks]))


def in_pieces(images: np.ndarray, threshold: float = 0.5) -> float:
    """The share of drawings whose ink is more than one 8-connected piece (``pieces``)."""
    return float(np.mean([len(pieces(image, threshold)) > 1 for image in images]))


def varied(images: np.ndarray, among: np.ndarray, n: int) -> list[int]:
    """``n`` of the indices ``among`` whose images differ most from each other (farthest-point
    sampling in pixels from the first): a panel's row then shows several writers' ways of
    drawing a class, not the first few, which may be one writer's."""
    if len(among) == 0:
        return []
    flat = images[among].reshape(len(among), -1).astype(np.float64)
    chosen, nearest = [0], np.linalg.norm(flat - flat[0], axis=1)
    while len(chosen) < min(n, len(among)):
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.linalg.norm(flat - flat[chosen[-1]], axis=1))
    return [int(among[i]) for i in chosen]


def _transfer(model: Exported, dataset, pictures: Path | None, classifier_path: Path | None) -> dict:
    """DTN's measure (Taigman et al. 2017, section 5.1): a classifier trained on the target
    domain's labels reads the translations G(x) of held-out source images; its accuracy
    against their true classes beside the same on the untranslated images. That CNN shares f's
    architecture, so two judges of other families (``pixel_judges``) read them too, and a class
    on which the judges disagree by more than 15 points is named; the distance from each
    translation to its nearest real target training image, beside real held-out targets' own,
    the share of ink outside each drawing's largest stroke (``stray_ink``), the share in marks
    (pieces with under ``MARK`` of its ink) and the share of drawings in more than one piece
    (``in_pieces``) need no judge.
    Because f is a classifier, a g that draws one fixed image per class could score well, so
    also: f's own held-out accuracy, the f-constancy error, and the within-class diversity of
    the translations against that of real target images. With ``pictures``: a
    panel of (source | G(source)) pairs, one row per class, of six source images that differ most
    (``varied``)."""
    from tf_translate.methods.dtn import diversity
    from tf_translate.nn import classifier

    if dataset.target_classes != dataset.classes:
        raise DataError(f"the target's classes ({', '.join(dataset.target_classes) or 'none: unlabelled'}) are not "
                        f"the source's ({', '.join(dataset.classes)}): the accuracy measure needs target images in "
                        "folders named after the source's classes")
    judge = target_classifier(dataset, None if classifier_path is None else Path(classifier_path))
    x, labels, _ = dataset.held_out()
    real, real_labels = dataset.images(dataset.target_test), dataset.target_test.labels
    # the measures read images in [0, 1]: the source, its translations and real held-out targets
    x01, real01 = (x + 1.0) / 2.0, (real + 1.0) / 2.0
    drawn = model(x01)
    made = drawn * 2.0 - 1.0
    features, features_made = model.encode_source(x01), model.encode(drawn)
    read = functools.partial(reading, made=made, x=x, labels=labels, real=real, real_labels=real_labels,
                             classes=dataset.classes)
    cnn = read(functools.partial(classifier.predict, judge))
    others = {name: read(predict) for name, predict in pixel_judges(dataset).items()}
    judges = [cnn, *others.values()]
    bank = (dataset.images(dataset.target) + 1.0) / 2.0
    report = {
        "source_images": len(x), "target_images": len(real),
        "target_classifier": cnn, "other_judges": others,
        "judges_disagree": [name for name in cnn["translated_per_class"]
                            if np.ptp([j["translated_per_class"][name] for j in judges]) > 0.15],
        "nearest_real_distance": {"translated_source": nearest_distance(drawn, bank),
                                  "real_target": nearest_distance(real01, bank)},
        "stray_ink": {"translated_source": stray_ink(drawn), "real_target": stray_ink(real01)},
        "marks": {"translated_source": stray_ink(drawn, below=MARK), "real_target": stray_ink(real01, below=MARK)},
        "in_pieces": {"translated_source": in_pieces(drawn), "real_target": in_pieces(real01)},
        "f": {"source": float(np.mean(np.argmax(model.classify(x01), 1) == labels)),
              "translated_source": float(np.mean(np.argmax(model.classify(drawn), 1) == labels)),
              "real_target": float(np.mean(np.argmax(model.classify(real01), 1) == real_labels)),
              "constancy_mse": float(np.mean((features - features_made) ** 2)),
              "aligned": model.aligned,
              "feature_mean_square": float(np.mean(features ** 2))},
        "diversity": {"translated_source": diversity(drawn, labels),
                      "real_target": diversity(real01, real_labels)},
    }
    report["diversity"]["ratio"] = report["diversity"]["translated_source"] / report["diversity"]["real_target"]
    rows = [[image for i in varied(x, np.flatnonzero(labels == k), 6) for image in (x[i], made[i])]
            for k in range(len(dataset.classes))]
    add_panel(report, pictures, "dtn_panel.png", lambda: [r for r in rows if r], ("source", "G(source)") * 6)
    return report


def _blend_sheet(model: Exported, photos: np.ndarray, styles: tuple[str, ...], path: Path) -> Path:
    """A multi-style network's style weights at work on ``photos`` ([-1, 1]): each style
    alone (one-hot), an even global blend, and a per-pixel map sweeping left to right
    through the styles; the first row shows the style images."""
    from tf_translate.data.pictures import panel
    from tf_translate.methods.fast_style import sweep_map

    n, (height, width) = len(styles), photos.shape[1:3]
    weights = [*np.eye(n, dtype=np.float32), np.full(n, 1.0 / n, np.float32), sweep_map(height, width, n)]
    blank = np.ones((height, width, 3), np.float32)
    tiles = [tf.image.resize_with_crop_or_pad(load_image(s, max(height, width)), height, width)[0].numpy()
             for s in styles]
    rows = [[blank, *tiles, blank, blank]]
    rows += [[photo, *(model((photo[None] + 1.0) / 2.0, style_weights=w)[0] * 2.0 - 1.0 for w in weights)]
             for photo in photos]
    titles = ("photo", *(f"style {k}" for k in range(n)), "even blend", f"sweep 0 to {n - 1}")
    Image.fromarray(panel(rows, titles)).save(path)
    return path


def add_panel(report: dict, pictures: Path | None, name: str, rows, titles: tuple[str, ...]) -> None:
    """If pictures are asked for: ``panel(rows(), titles)`` saved as ``pictures/name``, its path
    in ``report["panel"]``."""
    from tf_translate.data.pictures import panel

    if pictures is not None:
        path = Path(pictures) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(panel(rows(), titles)).save(path)
        report["panel"] = str(path)


def _unpaired(model: Exported, dataset, cfg, pictures: Path | None = None, shown: int = 4) -> dict:
    """Held-out images of each domain translated to the other (paired scores where the test
    names pair them, else the cycle), FID and KID; with ``pictures``, ``translations.png``:
    the first ``shown`` held-out images of each domain beside their translations."""
    x, y = dataset.held_out()
    x01, y01 = (x + 1.0) / 2.0, (y + 1.0) / 2.0
    a, b = cfg.data.domains
    names_a = [Path(dataset.test[0].label(i)).stem for i in range(len(x))]
    names_b = [Path(dataset.test[1].label(i)).stem for i in range(len(y))]
    report = {"images": {a: len(x), b: len(y)}}
    common = sorted(set(names_a) & set(names_b))
    if common:
        ia = [names_a.index(n) for n in common]
        ib = [names_b.index(n) for n in common]
        report["paired"] = len(common)
        lpips = pretrained("lpips", report)
        for src, dst, xs, ys in ((a, b, x01[ia], y01[ib]), (b, a, y01[ib], x01[ia])):
            out = model(xs, to=dst)
            report[f"{src}2{dst}"] = {"translated_vs_target": scores(_uint8(out), _uint8(ys), lpips),
                                      "input_vs_target": scores(_uint8(xs), _uint8(ys), lpips)}
    else:
        for src, dst, xs in ((a, b, x01), (b, a, y01)):
            back = model(model(xs, to=dst), to=src)
            report[f"{src}2{dst}2{src}"] = {"reconstruction_vs_input": scores(_uint8(back), _uint8(xs))}
    fid = pretrained("fid", report)
    if fid is not None:  # every held-out image of each domain, paired or not
        report["distribution"] = {f"{src}2{dst}": distribution(fid, model(xs, to=dst), ys, xs)
                                  for src, dst, xs, ys in ((a, b, x01, y01), (b, a, y01, x01))}
    n = min(shown, len(x), len(y))
    add_panel(report, pictures, "translations.png",
              lambda: [[*row] for row in zip(x, model(x01[:n], to=b) * 2.0 - 1.0, y, model(y01[:n], to=a) * 2.0 - 1.0)],
              (a, f"to {b}", b, f"to {a}"))
    return report


def domain_classifier(dataset, *, steps: int = 300, seed: int = 0):
    """``judge_cnn`` trained to tell the domains of the real training images apart."""
    return judge_cnn("domain_classifier", dataset.crop_size, 3, len(dataset.domains),
                     lambda first, count: dataset.training(batch_size=16, flip=True, seed=seed, first_step=first,
                                                           steps=count).map(lambda x, y: (x, tf.argmax(y, -1))),
                     steps=steps, seed=seed)


def _domains(model: Exported, dataset, pictures: Path | None = None, shown: int = 4) -> dict:
    """StarGAN's measures (Choi et al. 2018, section 4.5): every held-out image translated into
    every other domain; a classifier trained on the real training images' domains reads the
    translations (the paper's classification accuracy), beside how often it reads the untranslated
    inputs so; and KID of the translations into each domain to that domain's real held-out
    images, beside the untranslated inputs'. With ``pictures``, ``translations.png``: held-out
    images of each domain, then each translated into every domain."""
    from tf_translate.nn import classifier

    if dataset.multi_label:
        raise DataError("the evaluation scores single-label domains (a folder per domain); models of attribute "
                        "tables are not scored yet")
    x, onehot = dataset.held_out()
    labels, x01 = np.argmax(onehot, 1), (x + 1.0) / 2.0
    judge = domain_classifier(dataset)
    others = {name: labels != k for k, name in enumerate(dataset.domains)}
    made = {name: model(x01[others[name]], to=name) for name in dataset.domains}
    read = {name: float(np.mean(classifier.predict(judge, made[name] * 2.0 - 1.0) == k))
            for k, name in enumerate(dataset.domains)}
    untranslated = {name: float(np.mean(classifier.predict(judge, x[others[name]]) == k))
                    for k, name in enumerate(dataset.domains)}
    count = {name: int(np.sum(others[name])) for name in dataset.domains}
    mean = lambda per: sum(per[n] * count[n] for n in per) / sum(count.values())  # noqa: E731  (per image)
    report = {"images": {name: int(np.sum(labels == k)) for k, name in enumerate(dataset.domains)},
              "domain_classifier": {"real": classifier.accuracy(judge, x, labels), "translated": mean(read),
                                    "untranslated": mean(untranslated), "translated_per_domain": read}}
    if min(report["images"].values()) < 2:
        report.setdefault("notes", []).append("KID not computed: it needs 2 or more held-out images of every domain")
    elif (fid := pretrained("fid", report)) is not None:
        report["distribution"] = {f"to {name}": distribution(fid, made[name], x01[labels == k], x01[others[name]])
                                  for k, name in enumerate(dataset.domains)}
    picks = [i for k in range(len(dataset.domains)) for i in np.flatnonzero(labels == k)[:1]][:shown]
    add_panel(report, pictures, "translations.png",
              lambda: [[x[i], *(model(x01[i: i + 1], to=name)[0] * 2.0 - 1.0 for name in dataset.domains)]
                       for i in picks], ("input", *(f"to {name}" for name in dataset.domains)))
    return report


def blend(frames: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``sum_i weights[i] * frames[i]`` of uint8 frames, in float64, rounded to uint8."""
    mixed = sum(w * f.astype(np.float64) for w, f in zip(weights, frames))
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def _paired(model: Exported, dataset, pictures: Path | None = None, shown: int = 4) -> dict:
    """G(x) against y on held-out stacks, per target frame, beside the linear baseline of
    ``frames.blend_weights``: the cross-fade of the two input frames around a target (frame
    interpolation), else the nearest input frame itself. Frame interpolation (two inputs, every
    target between them) is also scored beside ffmpeg's motion-compensated interpolation
    (``metrics.minterpolate``); if ffmpeg fails, a note says so. With ``pictures``,
    ``translations.png``: for the first ``shown`` held-out stacks, the inputs, then the
    middle target as generated, as the baseline(s) and as it really is."""
    if dataset.test is None:
        raise DataError("no held-out data to evaluate on (a test/ folder, or a holdout above 0)")
    stacks = dataset.stacks(dataset.test)  # uint8 (N, K, H, W, 3)
    x = np.concatenate([stacks[:, i] for i in dataset.inputs], axis=-1)
    out = np.concatenate([model.images(x[i: i + 1]) for i in range(len(x))])
    weights = blend_weights(dataset.inputs, dataset.targets)
    report = {"samples": len(stacks), "inputs": list(dataset.inputs), "targets": list(dataset.targets)}
    lpips = pretrained("lpips", report)
    mci = _minterpolated(stacks, dataset.inputs, dataset.targets, report) if is_interpolation(weights) else None
    for k, t in enumerate(dataset.targets):
        real, made = stacks[:, t], out[..., 3 * k: 3 * k + 3]
        baseline = blend([stacks[:, i] for i in dataset.inputs], weights[:, k])
        name = "crossfade_vs_real" if is_crossfade(weights, k) else "input_vs_real"
        key = f"frame {t}" if len(dataset.targets) > 1 else "translate"
        report[key] = {"generated_vs_real": scores(made, real, lpips), name: scores(baseline, real, lpips)}
        if mci is not None:
            report[key]["minterpolate_vs_real"] = scores(mci[:, k], real, lpips)
    middle = len(dataset.targets) // 2  # shown: the middle target, the furthest from the inputs
    fades = blend([stacks[:shown, i] for i in dataset.inputs], weights[:, middle])
    mcis = mci[:shown, middle] if mci is not None else [None] * len(fades)
    rows = [[*(stack[i] for i in dataset.inputs), made[..., 3 * middle: 3 * middle + 3], fade,
             *([] if ffmpeg is None else [ffmpeg]), stack[dataset.targets[middle]]]
            for stack, made, fade, ffmpeg in zip(stacks[:shown], out[:shown], fades, mcis)]
    titles = (*(f"input {i}" for i in dataset.inputs), "generated",
              "cross-fade" if is_crossfade(weights, middle) else "input", *(["ffmpeg mci"] if mci is not None else []),
              f"real {dataset.targets[middle]}")
    add_panel(report, pictures, "translations.png", lambda: [[f / 127.5 - 1.0 for f in row] for row in rows], titles)
    frames = [report[f"frame {t}"] for t in dataset.targets] if len(dataset.targets) > 1 else []
    if frames:
        report["mean over frames"] = {compared: {m: float(np.mean([f[compared][m] for f in frames]))
                                                 for m in frames[0][compared]} for compared in frames[0]}
    return report


def _minterpolated(stacks: np.ndarray, inputs, targets, report: dict) -> np.ndarray | None:
    """ffmpeg minterpolate's frames for the ``targets`` of every stack, uint8 (N, len(targets),
    H, W, 3), made from the two ``inputs`` (every target lies between them); None, with a note
    in the report, when ffmpeg cannot make them."""
    first, last = min(inputs), max(inputs)
    try:
        made = minterpolate_batch(stacks[:, first], stacks[:, last], last - first)
    except DataError as e:
        report.setdefault("notes", []).append(f"the ffmpeg minterpolate baseline was not computed: {e}")
        return None
    return made[:, [t - first - 1 for t in targets]]


def headline(report: dict) -> str:
    """The report in one line: the method's measure beside its baseline(s), and which is better."""
    if "checkpoints" in report:
        return headline(report["checkpoints"]["final"])
    if "styles" in report:
        return "; ".join(f"{name}: perceptual loss {s['mean_network_total']:.4g}, {s['mean_ratio']:.2f}x that of "
                         f"optimising each photo (the untranslated photo: {s['mean_photo_total']:.4g})"
                         for name, s in report["styles"].items())
    if "target_classifier" in report:
        c = report["target_classifier"]
        others = "".join(f"; {name} on pixels: {j['translated_source']:.1%} (real {j['real_target']:.1%}, untranslated "
                         f"{j['untranslated_source']:.1%})" for name, j in report.get("other_judges", {}).items())
        disagree = report.get("judges_disagree")
        return (f"a target-domain classifier reads {c['translated_source']:.1%} of the translations as their source's "
                f"class (real target images: {c['real_target']:.1%}, the untranslated source: "
                f"{c['untranslated_source']:.1%})" + others
                + (f"; the judges disagree by over 15 points on class {', '.join(disagree)}" if disagree else ""))
    if "domain_classifier" in report:
        c = report["domain_classifier"]
        read = (f"a domain classifier reads {c['translated']:.1%} of the translations as their target domain (the "
                f"untranslated inputs: {c['untranslated']:.1%}; real held-out images as their own: {c['real']:.1%})")
        return "; ".join([read, *([_kid_headline(report)] if "distribution" in report else [])])
    if "distribution" in report:
        return _kid_headline(report)
    scored = report.get("mean over frames") or report.get("translate")
    if scored:
        return _paired_headline(report, scored)
    return ""


_BASELINES = {"crossfade_vs_real": "the cross-fade", "input_vs_real": "the input",
              "minterpolate_vs_real": "ffmpeg minterpolate"}


def _paired_headline(report: dict, scored: dict) -> str:
    """The model's PSNR, SSIM (and LPIPS) beside each baseline's; for frame interpolation, on how
    many target frames it beats each baseline by PSNR, else by how many of the measures it beats
    the input on average."""
    made = scored["generated_vs_real"]
    baselines = {name: s for name, s in scored.items() if name != "generated_vs_real"}
    lpips = "lpips" in made
    values = lambda s: f"{s['psnr']:.2f} dB, {s['ssim']:.3f}" + (f", {s['lpips']:.4f}" if lpips else "")  # noqa: E731
    line = (f"PSNR {made['psnr']:.2f} dB, SSIM {made['ssim']:.3f}" + (f", LPIPS {made['lpips']:.4f}" if lpips else "")
            + " against " + " and ".join(f"{_BASELINES[name]}'s {values(s)}" for name, s in baselines.items()))
    if "crossfade_vs_real" in baselines:
        frames = [report[key] for key in report if key.startswith("frame ")] or [report["translate"]]
        wins = [f"{_BASELINES[name]} on {sum(f['generated_vs_real']['psnr'] > f[name]['psnr'] for f in frames)} "
                f"of {len(frames)}" for name in baselines]
        wins[0] += " frame" if len(frames) == 1 else " frames"
        return f"{line}: beats {' and '.join(wins)} by PSNR"
    (baseline,) = baselines.values()
    better = sum([made["psnr"] > baseline["psnr"], made["ssim"] > baseline["ssim"]]
                 + ([made["lpips"] < baseline["lpips"]] if lpips else []))
    return f"{line}: better by {better} of {2 + lpips} measures"


def _kid_headline(report: dict) -> str:
    parts, closer = [], 0
    for key, d in report["distribution"].items():
        made, baseline = d["translated_vs_target"]["kid"], d["input_vs_target"]["kid"]
        closer += made < baseline
        parts.append(f"{key} {1000 * made:.0f} (untranslated {1000 * baseline:.0f})")
    return (f"KID x1000 to the target domain: {', '.join(parts)}: the translations are closer to the target than "
            f"the untranslated images in {closer} of {len(parts)} directions")


_COMPARED = {"minterpolate_vs_real": "ffmpeg minterpolate (mci) vs real"}  # row labels other than the key's words


def markdown(report: dict) -> str:
    if "checkpoints" in report:  # a run: the final and the best checkpoint
        lines = [f"# Evaluation of the run {report['run']} ({report['method']})", ""]
        if "best" in report["checkpoints"]:
            lines += [f"The best checkpoint is the one with the {report['best_by']} on the held-out split that is "
                      "scored here too, so its scores are optimistic; the final checkpoint's are not. Published "
                      "numbers often quote such a best epoch.", ""]
        for which, sub in report["checkpoints"].items():
            lines.append(markdown(sub).replace("# Evaluation of", f"## {which.capitalize()} checkpoint:", 1))
        return "\n".join(lines)
    if "styles" in report:
        return _style_markdown(report)
    if "target_classifier" in report:
        return _transfer_markdown(report)
    rows = []
    for key, value in report.items():
        if isinstance(value, dict) and key not in ("images", "distribution", "domain_classifier"):
            for compared, s in value.items():
                lpips = f"{s['lpips']:.4f}" if "lpips" in s else "–"
                label = _COMPARED.get(compared, compared.replace("_", " "))
                rows.append(f"| {key} | {label} | {s['psnr']:.2f} | {s['ssim']:.4f} | "
                            f"{s['ssim_7x7']:.4f} | {s['l1']:.4f} | {lpips} |")
    lines = [f"# Evaluation of {report['model']} ({report['method']}, {report['size']} px, data: {report['data']})"]
    if rows:  # scores against a ground truth (StarGAN's domains have none)
        lines += ["", "| direction | compared | PSNR (dB) | SSIM | SSIM 7x7 | L1 | LPIPS |",
                  "|---|---|---|---|---|---|---|", *rows]
        if any("minterpolate_vs_real" in value for value in report.values() if isinstance(value, dict)):
            lines += ["", "Baselines of each target frame, made from the two input frames: the linear cross-fade, and "
                      "ffmpeg's motion-compensated interpolation (`" + FILTER.format(gap="<gap>") + "`)."]
    if "domain_classifier" in report:
        c = report["domain_classifier"]
        lines += ["", "A classifier trained on the real training images' domains, reading held-out images translated "
                  "into every other domain:", "", "| images | read as the target domain |", "|---|---:|",
                  f"| translations (all) | {c['translated']:.1%} |",
                  *(f"| translations into {name} | {v:.1%} |" for name, v in c["translated_per_domain"].items()),
                  f"| untranslated inputs | {c['untranslated']:.1%} |",
                  f"| real held-out images (as their own domain) | {c['real']:.1%} |"]
    if "distribution" in report:
        lines += ["", "Distances between the sets of images (FID Inception features; FID is biased upwards on small "
                  "sets, KID is not: compare KID across models, FID only with the same number of images):", "",
                  "| direction | compared | images | FID | KID (x 1000) |", "|---|---|---|---:|---:|"]
        for key, d in report["distribution"].items():
            for compared in ("translated_vs_target", "input_vs_target"):
                s = d[compared]
                lines.append(f"| {key} | {compared.replace('_', ' ')} | {d['images'][0]} vs {d['images'][1]} | "
                             f"{s['fid']:.2f} | {1000 * s['kid']:.2f}"
                             + (f" ± {1000 * s['kid_std']:.2f} |" if s["kid_std"] else " |"))
    if "panel" in report:
        lines += ["", f"Panel: `{report['panel']}`"]
    lines += [f"\nNote: {note}" for note in report.get("notes", [])]
    return "\n".join(lines) + "\n"


def _style_markdown(report: dict) -> str:
    lines = [f"# Evaluation of {report['model']} ({report['method']}, {report['size']} px, data: {report['data']})", "",
             f"Weighted perceptual loss on {report['photos']} held-out photos: the network's single pass against "
             f"a per-photo optimisation of the same loss ({report['optimiser_iterations']} L-BFGS iterations "
             "from the photo). Ratio = network / optimised (1 = as good as optimising).", "",
             "| style | network content | network style | network total | optimised content | optimised style | "
             "optimised total | untranslated photo total | mean ratio | max ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in report["styles"].items():
        lines.append(f"| {name} | {s['mean_network_content']:.4g} | {s['mean_network_style']:.4g} | "
                     f"{s['mean_network_total']:.4g} | {s['mean_optimised_content']:.4g} | "
                     f"{s['mean_optimised_style']:.4g} | {s['mean_optimised_total']:.4g} | "
                     f"{s['mean_photo_total']:.4g} | {s['mean_ratio']:.2f} | {s['max_ratio']:.2f} |")
    pictures = [s["sheet"] for s in report["styles"].values() if "sheet" in s] + \
        ([report["blend_sheet"]] if "blend_sheet" in report else [])
    if pictures:
        lines += ["", "Contact sheets: " + ", ".join(f"`{p}`" for p in pictures)]
    return "\n".join(lines) + "\n"


def _transfer_markdown(report: dict) -> str:
    c, f, d = report["target_classifier"], report["f"], report["diversity"]
    others = report.get("other_judges", {})
    judges = {"target classifier (CNN)": c, **{f"{name} (pixels)": j for name, j in others.items()}}
    classes = list(c["translated_per_class"])
    lines = [f"# Evaluation of {report['model']} ({report['method']}, {report['size']} px, data: {report['data']})", "",
             f"{report['source_images']} held-out source images; {report['target_images']} held-out target images.", "",
             "Judges trained on the target's training images and labels, reading real held-out target images, the "
             "untranslated source images and their translations G(source), overall and per class:", "",
             "| judge | real target | untranslated | **G(source)** | " + " | ".join(classes) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(classes),
             *(f"| {name} | {j['real_target']:.1%} | {j['untranslated_source']:.1%} | "
               f"**{j['translated_source']:.1%}** | "
               + " | ".join(f"{j['translated_per_class'][k]:.0%}" for k in classes) + " |" for name, j in judges.items()),
             "", "Classes on which the judges disagree by more than 15 points: "
             + (", ".join(report["judges_disagree"]) if report.get("judges_disagree") else "none") + ".", "",
             "| measure | value |", "|---|---:|",
             f"| f on the held-out source images | {f['source']:.2%} |",
             f"| f on G(source) | {f['translated_source']:.2%} |",
             f"| f on real held-out target images (how well f's classes carry over) | {f['real_target']:.2%} |",
             f"| f-constancy MSE({'f(x) moved by --align' if f.get('aligned') else 'f(x)'}, f(G(x))) (mean of its square: "
             f"{f['feature_mean_square']:.4g}) | {f['constancy_mse']:.4g} |",
             f"| within-class diversity of G(source) / of real targets | {d['translated_source']:.3f} / "
             f"{d['real_target']:.3f} = {d['ratio']:.2f} |"]
    if "nearest_real_distance" in report:
        n = report["nearest_real_distance"]
        lines.append(f"| RMS pixel distance to the nearest real target training image: G(source) / real held-out "
                     f"targets | {n['translated_source']:.4f} / {n['real_target']:.4f} |")
    if "stray_ink" in report:
        k = report["stray_ink"]
        lines.append(f"| share of ink outside each drawing's largest stroke (marks and broken-off pieces): G(source) "
                     f"/ real held-out targets | {k['translated_source']:.2%} / {k['real_target']:.2%} |")
    if "marks" in report:
        k = report["marks"]
        lines.append(f"| share of ink in marks (pieces with under {MARK:.0%} of the largest stroke's ink: dots, "
                     f"dashes): G(source) / real held-out targets | {k['translated_source']:.2%} / "
                     f"{k['real_target']:.2%} |")
    if "in_pieces" in report:
        k = report["in_pieces"]
        lines.append(f"| drawings in more than one piece (a broken stroke or a mark beside it): G(source) / real "
                     f"held-out targets | {k['translated_source']:.1%} / {k['real_target']:.1%} |")
    if "panel" in report:
        lines += ["", f"Panel: `{report['panel']}`"]
    return "\n".join(lines) + "\n"


def write_report(report: dict, output: str | Path) -> tuple[Path, Path]:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output.with_suffix(".json"), output.with_suffix(".md")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path
