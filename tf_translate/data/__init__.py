"""Data builders by kind. ``load(kind, run_config)`` returns the method's data object."""

from __future__ import annotations

from tf_translate.data.images import DataError, ImageError  # noqa: F401


def load(kind: str, cfg):
    if cfg.data.crop_size > cfg.data.load_size:
        raise DataError(f"crop size {cfg.data.crop_size} is larger than load size {cfg.data.load_size}")
    from tf_translate.data import records

    if records.is_records(cfg.data.data):  # prepared by scripts/prepare.py
        return records.load(cfg.data.data, kind, cfg)
    if kind == "unpaired":
        from tf_translate.data import unpaired

        return unpaired.load(cfg.data)
    if kind == "paired":
        from tf_translate.data import paired

        return paired.load(cfg)
    if kind == "photos":
        from tf_translate.data import photos

        return photos.load(cfg.data)
    if kind == "domains":
        from tf_translate.data import domains

        return domains.load(cfg.data, cfg.model.attrs)
    if kind == "transfer":
        from tf_translate.data import transfer

        return transfer.load(cfg.data, cfg.model.settings["channels"])
    raise ValueError(f"unknown data kind {kind!r}")
