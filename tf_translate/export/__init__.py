"""Export of a model's generator(s): a SavedModel that TF Serving loads as it is, and
TFLite models checked against it.

Layout: ``EXPORT_DIR/<version>/`` is the SavedModel root (``saved_model.pb``,
``variables/``) with ``config.json``, ``model.tflite`` and ``tflite_parity.json`` beside
them. A version is written under a hidden temporary name and renamed when complete, so TF
Serving (which polls for the highest numeric folder) never sees a half-written one
(``staging``). The signatures: ``signatures``; TFLite: ``tflite``; loading an export for
inference: ``exported``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_translate.export import serving_config, staging
from tf_translate.export.exported import Exported, blend_ramp, tile_starts
from tf_translate.export.signatures import (
    CONDITIONS,
    MAP_INPUTS,
    ServingModule,
    calibration,
    decode_rgb,
    pad_to_multiple,
    symmetric_indices,
)
from tf_translate.export.tflite import (
    CALIBRATED,
    FIXED_SIZE_VARIANTS,
    PARITY_TOLERANCE,
    TFLITE_VARIANTS,
    ExportError,
    convert_tflite,
    flex_ops,
    litert_interpreter,
    needs_calibration,
    run_tflite,
    tflite_file,
    tflite_parity,
    write_tflite,
)
from tf_translate.nn.layers import StatelessDropout

__all__ = ["CALIBRATED", "CONDITIONS", "FIXED_SIZE_VARIANTS", "MAP_INPUTS", "PARITY_TOLERANCE", "TFLITE_VARIANTS",
           "ExportError", "Exported", "ServingModule", "blend_ramp", "calibration", "convert_tflite", "decode_rgb",
           "export_model", "export_run", "export_trained", "flex_ops", "litert_interpreter", "needs_calibration",
           "next_version", "pad_to_multiple", "run_tflite", "symmetric_indices", "tflite_file", "tflite_parity",
           "tile_starts", "training_inputs", "write_tflite"]


def next_version(root: Path) -> int:
    versions = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.exists() else []
    return max(versions, default=0) + 1


def export_model(model, cfg, *, examples=None, export_dir: str | Path | None = None, representative=None) -> Path:
    """Write the next version of ``model``'s generators; returns the version folder.
    ``representative``: training images (float [-1, 1]) to calibrate an int8 or int16x8 variant."""
    root = Path(export_dir or cfg.export_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging.remove_stale(root)
    version = next_version(root)
    with staging.staging(root, version) as tmp:
        module = ServingModule(model.generators(), model.down_factor(), model.domain_labels(), model.input_size(),
                               model.readers(), max_pixels=cfg.export.max_pixels)
        for net in module.nets.values():
            for layer in net.layers:
                if isinstance(layer, StatelessDropout):
                    layer.at_test = cfg.export.test_dropout
        signatures = module.signatures()
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        serving_config.write_warmup(tmp, signatures, domains=module.labels.names if module.labels else (),
                                    max_pixels=module.max_pixels)
        cfg.save(tmp / "config.json")
        if cfg.export.tflite:
            with tempfile.TemporaryDirectory(prefix="tf_translate_fixed_") as fixed:
                if FIXED_SIZE_VARIANTS & set(cfg.export.tflite_variants):
                    # the same generators without the padding (no index arithmetic) at the training size
                    sized = ServingModule(model.generators(), model.down_factor(), model.domain_labels(),
                                          size=model.input_size() or cfg.data.crop_size)
                    every = sized.signatures()
                    tf.saved_model.save(sized, fixed, signatures={n: every[n] for n in sized.nets})
                write_tflite(tmp, list(module.nets), examples, check=not cfg.export.test_dropout,
                             variants=cfg.export.tflite_variants, representative=calibration(module, representative),
                             fixed_size=Path(fixed))
        final = root / str(version)
        os.rename(tmp, final)
    print(f"exported {final}", flush=True)
    return final


def export_run(run_dir: str | Path, *, export_dir: str | Path | None = None, best: bool = False,
               test_dropout: bool | None = None, tflite_variants: tuple[str, ...] | None = None,
               tflite: bool = True, max_pixels: int | None = None) -> Path:
    """Export a run folder's latest (or best) checkpoint as the next version; ``tflite_variants``
    replaces the run's (float32 is always written); ``tflite=False`` writes the SavedModel only;
    ``max_pixels`` replaces the run's pixel limit per request."""
    from tf_translate import config
    from tf_translate.training import trainer

    run_dir = Path(run_dir)
    cfg = config.load(run_dir / "config.json")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output=str(run_dir)))
    if test_dropout is not None:
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, test_dropout=test_dropout))
    if tflite_variants is not None:
        unknown = sorted(set(tflite_variants) - set(TFLITE_VARIANTS))
        if unknown:
            raise ExportError(f"unknown TFLite variant {', '.join(unknown)}; expected some of {', '.join(TFLITE_VARIANTS)}")
        variants = ("float32", *(v for v in tflite_variants if v != "float32"))
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, tflite=True, tflite_variants=variants))
    if not tflite:
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, tflite=False))
    if max_pixels is not None:  # ExportConfig refuses a value under 1
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, max_pixels=max_pixels))
    representative = None
    if cfg.export.tflite and needs_calibration(cfg.export.tflite_variants):
        from tf_translate import data as tf_data
        from tf_translate import registry

        representative = training_inputs(tf_data.load(registry.get(cfg.method).data_kind, cfg), cfg)
    return export_model(trainer.restore(cfg, best), cfg, export_dir=export_dir, representative=representative)


def training_inputs(data, cfg, n: int = 16):
    """Training inputs (random crops, float [-1, 1]) to calibrate an int8 or int16x8 TFLite
    export; None when no such variant is asked for."""
    if not needs_calibration(cfg.export.tflite_variants):
        return None
    batches = data.training(batch_size=1, flip=False, seed=cfg.train.seed, first_step=0, steps=n)
    return np.concatenate([(b[0] if isinstance(b, tuple) else b).numpy() for b in batches])


def export_trained(model, cfg, data) -> Path:
    """What a training run exports at its end (``trainer.run``'s exporter): the next version,
    checked on held-out examples, calibrated on training inputs where a variant needs it."""
    return export_model(model, cfg, examples=data.preview(4), representative=training_inputs(data, cfg))
