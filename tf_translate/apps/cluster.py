"""Curating a folder of images by clustering: embed every image with
the canonical VGG-16, group the embeddings with k-means, show each group as a contact sheet,
and keep the groups that belong.

The StarGAN write-up embedded with VGG-16's fc6 (4,096-d); the offline weights hold the
convolutions only, so the default embedding is relu5_3 averaged over the image (512-d), and
``fc6`` takes Keras' full ImageNet VGG-16 where Keras can load it. Images are resized to
224x224 (the networks' training size) before embedding; embeddings are L2-normalised, so
k-means groups by direction (what the image shows) rather than by activation strength.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from tf_translate.data.images import DataError, image_files, read_image, scan_images
from tf_translate.errors import UsageError

EMBEDDINGS = ("conv5_3", "fc6")
SIZE = 224
THUMB = 96


def embedder(kind: str = "conv5_3"):
    """A function from float [0, 1] image batches (224x224) to L2-normalised embeddings."""
    if kind == "conv5_3":
        from tf_translate.nn import features

        vgg = features.vgg16(["relu5_3"])
        net = lambda x: tf.reduce_mean(vgg(x * 2.0 - 1.0)["relu5_3"], axis=[1, 2])  # noqa: E731
    elif kind == "fc6":
        import keras

        from tf_translate.nn.features import WeightsMissing

        try:
            full = keras.applications.VGG16(include_top=True, weights="imagenet")
        except Exception as e:  # no network, or a broken download
            raise WeightsMissing(f"--embedding fc6 needs Keras' full ImageNet VGG-16, which could not be loaded "
                                 f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); use the default "
                                 "conv5_3") from None
        fc6 = keras.Model(full.input, full.get_layer("fc1").output)
        net = lambda x: fc6(keras.applications.vgg16.preprocess_input(x * 255.0))  # noqa: E731
    else:
        raise UsageError(f"--embedding {kind!r}: expected one of {', '.join(EMBEDDINGS)}")
    run = tf.function(lambda x: tf.math.l2_normalize(tf.cast(net(x), tf.float32), axis=-1))
    return lambda images: run(tf.constant(images)).numpy()


def load(path: Path) -> np.ndarray:
    """An image file as float [0, 1], 224x224 (squashed, as the networks saw ImageNet crops)."""
    image = Image.fromarray(read_image(path)).resize((SIZE, SIZE), Image.BICUBIC)
    return np.asarray(image, np.float32) / 255.0


def embed(files: list[Path], kind: str = "conv5_3", batch: int = 16) -> np.ndarray:
    from tqdm import tqdm

    net = embedder(kind)
    out = []
    for i in tqdm(range(0, len(files), batch), desc="embedding", unit="batch", file=sys.stderr):
        out.append(net(np.stack([load(f) for f in files[i: i + batch]])))
    return np.concatenate(out)


def kmeans(embeddings: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cluster per image, distance to its centre) from scikit-learn's k-means (10 restarts,
    seeded), clusters numbered by size, largest first."""
    from sklearn.cluster import KMeans

    if not 1 <= k <= len(embeddings):
        raise UsageError(f"--k {k}: between 1 and the number of images ({len(embeddings)})")
    fit = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(embeddings)
    order = np.argsort(-np.bincount(fit.labels_, minlength=k), kind="stable")
    rank = np.empty(k, int)
    rank[order] = np.arange(k)
    labels = rank[fit.labels_]
    distances = np.linalg.norm(embeddings - fit.cluster_centers_[fit.labels_], axis=1)
    return labels, distances


def contact_sheet(files: list[Path], title: str, columns: int = 8) -> Image.Image:
    """Thumbnails of ``files`` in a grid under ``title``."""
    rows = -(-len(files) // columns)
    gap, header = 4, 18
    sheet = Image.new("RGB", (columns * (THUMB + gap) + gap, header + rows * (THUMB + gap) + gap), "white")
    ImageDraw.Draw(sheet).text((gap, 3), title, fill="black")
    for i, path in enumerate(files):
        thumb = Image.fromarray(read_image(path))
        thumb.thumbnail((THUMB, THUMB))
        x, y = gap + (i % columns) * (THUMB + gap), header + gap + (i // columns) * (THUMB + gap)
        sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
    return sheet


def cluster_folder(folder, output, *, k: int = 8, seed: int = 0, embedding: str = "conv5_3",
                   sheet_size: int = 64) -> Path:
    """Embed and cluster ``folder``'s images; writes ``output``/clusters.csv (file, cluster,
    distance to its centre), clusters.json (the settings) and one contact sheet per cluster
    (``cluster_N.jpg``, its ``sheet_size`` images nearest the centre first). Unreadable files
    are named and skipped. The same folder and settings give the same clusters, so a finished
    clustering is reused."""
    output = Path(output)
    settings = {"folder": str(Path(folder).resolve()), "k": k, "seed": seed, "embedding": embedding}
    files = scan_images(image_files(folder))
    if not files:
        raise DataError(f"{folder}: no readable images")
    settings["files"] = [f.name for f in files]
    done = output / "clusters.json"
    if done.exists() and json.loads(done.read_text()) == settings and (output / "clusters.csv").exists():
        print(f"reusing {output / 'clusters.csv'} (same folder and settings)", file=sys.stderr)
        return output / "clusters.csv"
    labels, distances = kmeans(embed(files, embedding), k, seed)
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "clusters.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "cluster", "distance"])
        for path, label, distance in zip(files, labels, distances):
            writer.writerow([path.name, int(label), f"{distance:.6f}"])
    for c in range(k):
        members = sorted(np.flatnonzero(labels == c), key=lambda i: distances[i])
        title = f"cluster {c}: {len(members)} image(s)" + (f", the {sheet_size} nearest its centre"
                                                            if len(members) > sheet_size else "")
        contact_sheet([files[i] for i in members[:sheet_size]], title).save(output / f"cluster_{c}.jpg", quality=90)
    done.write_text(json.dumps(settings, indent=1))
    return output / "clusters.csv"


def keep(assignments, folder, drop: list[int], output) -> list[Path]:
    """Copy the images of ``folder`` whose cluster (``assignments``, a clusters.csv) is not in
    ``drop`` into ``output``; returns the copies."""
    with open(assignments, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(rows[0]) != {"file", "cluster", "distance"}:
        raise DataError(f"{assignments}: not a clusters.csv written by cluster")
    known = {int(r["cluster"]) for r in rows}
    unknown = sorted(set(drop) - known)
    if unknown:
        raise UsageError(f"--drop {','.join(map(str, unknown))}: no such cluster (clusters: "
                         f"{', '.join(map(str, sorted(known)))})")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    copies = []
    for r in rows:
        if int(r["cluster"]) not in drop:
            source = Path(folder) / r["file"]
            if not source.is_file():
                raise DataError(f"{source}: listed in {assignments} but missing")
            copies.append(Path(shutil.copy2(source, output / r["file"])))
    return copies
