"""Data builders by kind. ``load(kind, run_config)`` returns the method's data object, built by
the module named after the kind (``tf_translate.data.<kind>.from_config``): a new data kind is
one new module, with nothing here to edit."""

from __future__ import annotations

import importlib

from tf_translate.data.images import DataError, ImageError  # noqa: F401


def load(kind: str, cfg):
    if cfg.data.crop_size > cfg.data.load_size:
        raise DataError(f"crop size {cfg.data.crop_size} is larger than load size {cfg.data.load_size}")
    from tf_translate.data import records

    if records.is_records(cfg.data.data):  # prepared by scripts/prepare.py
        return records.load(cfg.data.data, kind, cfg)
    return importlib.import_module(f"tf_translate.data.{kind}").from_config(cfg)
