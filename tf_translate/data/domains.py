"""Many domains, for StarGAN (Choi et al. 2018): every image with its label vector.

Single-label (softmax): a folder per domain, ``DIR/<domain>/`` (the last tenth of each
held out), or ``DIR/train/<domain>/`` with ``DIR/test/<domain>/``; the label is one-hot.
Without --data: the embedded textures (``tf_translate/samples/textures``: brick, grass and
gravel from scikit-image, CC0). Multi-label (sigmoid): a table of binary attributes,
CelebA's ``list_attr_celeba.txt`` (a count, the attribute names, then ``file v1 v2 ...``
with -1/1) or a CSV (``file,attr,...`` with 0/1), given as ``--data TABLE`` or as a folder
holding one of those two names; the images are beside the table (or in CelebA's
``img_align_celeba/``); the last tenth is held out. ``--domains`` picks and orders the
domain folders, ``--attrs`` the table's attributes (default: all).
"""

from __future__ import annotations

import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_translate.config import DataConfig
from tf_translate.data import pipeline, sources
from tf_translate.data.images import DataError, image_files, read_image, scan_images

TABLES = ("list_attr_celeba.txt", "attributes.csv")


@dataclasses.dataclass
class DomainData:
    domains: tuple[str, ...]  # the label vector's entries, in order
    multi_label: bool
    train: sources.ImageSource
    train_labels: np.ndarray  # (images, domains) float32 of 0 and 1
    test: sources.ImageSource | None
    test_labels: np.ndarray | None
    crop_size: int

    @property
    def steps_per_epoch_samples(self) -> int:
        return len(self.train)

    def complete(self, cfg):
        """``cfg`` with the domain names in label order, as this data resolved them (and, for
        attributes, as ``model.attrs``: what makes a saved model multi-label)."""
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, domains=self.domains),
                                   model=dataclasses.replace(cfg.model, attrs=self.domains if self.multi_label else ()))

    def training(self, *, batch_size: int, flip: bool, seed: int, first_step: int, steps: int,
                 part: tuple[int, int] = (0, 1)):
        """Batches (images in [-1, 1], labels) for global steps ``first_step .. first_step+steps-1``."""
        labels = tf.constant(self.train_labels)

        def sample(j):
            index = pipeline.pick(self.train, j, seed, 0)
            (image,) = pipeline.jitter([pipeline.read(self.train, index)], crop_size=self.crop_size, flip=flip,
                                       seed=seed, sample=j)
            return pipeline.to_float(image), labels[index]

        return pipeline.indexed(first_step * batch_size, steps * batch_size, batch_size, sample, part)

    def held_out(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(held-out images centre-cropped in [-1, 1], their labels)."""
        if self.test is None:
            raise DataError("no held-out images to validate on")
        return pipeline.first_images(self.test, limit, self.crop_size), self.test_labels[: limit or len(self.test)]

    def preview(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """One image of each of the first ``n`` domains (of the held-out images if any)."""
        source, labels = (self.test, self.test_labels) if self.test is not None else (self.train, self.train_labels)
        picks = [int(np.argmax(labels[:, k])) for k in range(len(self.domains)) if labels[:, k].any()][:n]
        images = np.stack([pipeline.center_crop(source.load(i), self.crop_size) for i in picks])
        return images.astype(np.float32) / 127.5 - 1.0, labels[picks]


def table(source: str | None) -> Path | None:
    """The attribute table ``source`` names (itself, or one of TABLES in that folder), if any."""
    if source is None:
        return None
    root = Path(source)
    if root.is_file():
        return root
    return next((root / name for name in TABLES if (root / name).is_file()), None)


def load(cfg: DataConfig, attrs: tuple[str, ...] = ()) -> DomainData:
    """Domain folders (picked by ``cfg.domains``) or an attribute table (picked by ``attrs``);
    without a source, the embedded textures (brick, grass, gravel)."""
    source = sources.resolve(cfg.data, "textures")
    attributes = table(source)
    if attributes is not None:
        if cfg.domains and tuple(cfg.domains) != tuple(attrs):  # a trained model's config names them in both
            raise DataError(f"{attributes} is an attribute table: choose its attributes with --attrs, "
                            f"not --domains {','.join(cfg.domains)}")
        return _from_table(attributes, attrs, cfg)
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder or attribute table")
    if attrs:
        raise DataError(f"--attrs {','.join(attrs)}: {root} holds domain folders, not an attribute table "
                        f"({' or '.join(TABLES)}); choose domains with --domains")
    return _from_folders(root, cfg)


def _source(items: list, cfg: DataConfig, describe: str) -> sources.ImageSource:
    return sources.ImageSource("domains", items, size=cfg.load_size, describe=describe,
                               loader=lambda p: read_image(p, max_pixels=cfg.max_pixels))


def _scan(paths: list[Path], cfg: DataConfig) -> list[Path]:
    return scan_images(paths, max_pixels=cfg.max_pixels, warn=lambda msg: print(f"skipping {msg}", file=sys.stderr))


def _from_folders(root: Path, cfg: DataConfig) -> DomainData:
    split = (root / "train").is_dir()
    base = root / "train" if split else root
    found = sorted(p.name for p in base.iterdir() if p.is_dir())
    domains = tuple(cfg.domains) or tuple(found)
    missing = [d for d in domains if d not in found]
    if missing:
        raise DataError(f"{base}: no folder for domain(s) {', '.join(missing)} (found: {', '.join(found) or 'none'})")
    if len(domains) < 2:
        raise DataError(f"{base}: StarGAN needs at least two domain folders, found {len(domains)}")
    train, test = [], []
    for k, domain in enumerate(domains):
        good = _scan(image_files(base / domain), cfg)
        if split:
            held = _scan(image_files(root / "test" / domain), cfg) if (root / "test" / domain).is_dir() else []
        else:
            cut = len(good) - max(1, len(good) // 10) if len(good) > 1 else len(good)
            good, held = good[:cut], good[cut:]
        if len(good) < cfg.min_images:
            raise DataError(f"{base / domain}: only {len(good)} usable training image(s); at least "
                            f"{cfg.min_images} needed")
        train += [(p, k) for p in good]
        test += [(p, k) for p in held]
    return _data(domains, False, train, test, cfg, str(root))


def _data(domains, multi_label, train, test, cfg, describe) -> DomainData:
    """``train`` and ``test``: lists of (path, label) with a domain index or a 0/1 vector as label."""
    def labels(pairs):
        if multi_label:
            return np.array([label for _, label in pairs], np.float32).reshape(len(pairs), len(domains))
        return np.eye(len(domains), dtype=np.float32)[[label for _, label in pairs]]

    held = _source([p for p, _ in test], cfg, describe) if test else None
    return DomainData(tuple(domains), multi_label, _source([p for p, _ in train], cfg, describe), labels(train),
                      held, labels(test) if test else None, cfg.crop_size)


def read_table(path: Path) -> tuple[list[str], list[tuple[str, list[int]]]]:
    """Attribute names and (file, 0/1 values) rows of CelebA's text table or a CSV."""
    lines = path.read_text().splitlines()
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(lines) if r]
        if not rows:
            raise DataError(f"{path}: empty attribute table")
        names, body = [c.strip() for c in rows[0][1:]], rows[1:]
    else:  # CelebA: the image count, the attribute names, then "file v1 v2 ..."
        if len(lines) < 2:
            raise DataError(f"{path}: expected CelebA's layout (a count, the attribute names, then one row per image)")
        names, body = lines[1].split(), [line.split() for line in lines[2:] if line.strip()]
    out = []
    for number, row in enumerate(body, start=3 if path.suffix.lower() != ".csv" else 2):
        if len(row) != len(names) + 1:
            raise DataError(f"{path}, line {number}: {len(row) - 1} values for {len(names)} attributes")
        try:
            values = [int(v) for v in row[1:]]
        except ValueError:
            raise DataError(f"{path}, line {number}: attribute values must be 0/1 or -1/1, got {row[1:]}") from None
        if any(v not in (-1, 0, 1) for v in values):
            raise DataError(f"{path}, line {number}: attribute values must be 0/1 or -1/1, got {row[1:]}")
        out.append((row[0].strip(), [1 if v == 1 else 0 for v in values]))
    return names, out


def _from_table(path: Path, attrs: tuple[str, ...], cfg: DataConfig) -> DomainData:
    names, rows = read_table(path)
    attrs = tuple(attrs) or tuple(names)
    unknown = [a for a in attrs if a not in names]
    if unknown:
        raise DataError(f"{path}: no attribute {', '.join(unknown)} (it has: {', '.join(names)})")
    columns = [names.index(a) for a in attrs]
    folder = path.parent / "img_align_celeba" if (path.parent / "img_align_celeba").is_dir() else path.parent
    missing = [f for f, _ in rows if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{path}: {len(missing)} listed image(s) not found in {folder}, e.g. {missing[0]}")
    good = set(_scan([folder / f for f, _ in rows], cfg))
    pairs = [(folder / f, [v[c] for c in columns]) for f, v in rows if folder / f in good]
    if len(pairs) < max(2, cfg.min_images):
        raise DataError(f"{path}: only {len(pairs)} usable image(s)")
    cut = len(pairs) - max(1, len(pairs) // 10)
    return _data(attrs, True, pairs[:cut], pairs[cut:], cfg, str(path))


def from_config(cfg):
    """The data a run of ``cfg`` trains on (``tf_translate.data.load``)."""
    return load(cfg.data, cfg.model.attrs)
