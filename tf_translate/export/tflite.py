"""TFLite variants of the float signatures, builtin ops only, each checked against the
SavedModel: float32 (``model.tflite``, within PARITY_TOLERANCE), float16, dynamic-int8, and
int8 / int16x8 calibrated on training images (their error reported in tflite_parity.json)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_translate.errors import ExportError
from tf_translate.export.signatures import CONDITIONS
from tf_translate.quiet import caught_stderr

PARITY_TOLERANCE = 1e-3  # max |TFLite - SavedModel| on [0, 1] outputs for the float32 model


TFLITE_VARIANTS = ("float32", "float16", "dynamic-int8", "int8", "int16x8")
CALIBRATED = {"int8", "int16x8"}  # variants whose activations are quantized on representative images
# int16x8 is converted from signatures of the training size: the converter cannot calibrate
# 16-bit activations through the dynamic-size padding ("Max and min for dynamic tensors should
# be recorded during calibration: Failed for tensor FloorMod"), a known converter bug.
FIXED_SIZE_VARIANTS = {"int16x8"}


def needs_calibration(variants) -> bool:
    return bool(CALIBRATED & set(variants))


def tflite_file(variant: str) -> str:
    return "model.tflite" if variant == "float32" else f"model_{variant}.tflite"


def convert_tflite(saved_model: Path, names: list[str], variant: str, representative=None) -> bytes:
    """One TFLite variant of the float signatures, builtin ops only: float32; float16 weights;
    dynamic-int8 (int8 weights, float activations); int8 (weights and activations, calibrated
    on ``representative``: {signature: [input dicts]}, float in and out); int16x8 (int8
    weights, 16-bit activations, calibrated likewise; ops without a 16-bit kernel stay float)."""
    if variant not in TFLITE_VARIANTS:
        raise ExportError(f"unknown TFLite variant {variant!r}; expected one of {', '.join(TFLITE_VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=names)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant in CALIBRATED:
        if not representative:
            raise ExportError(f"{variant} TFLite needs representative images (from the training data)")

        def samples():
            for name, inputs in representative.items():
                for values in inputs:
                    yield (name, values) if len(names) > 1 else values

        converter.representative_dataset = samples
    with warnings.catch_warnings():  # int8 calibration runs TF's own deprecated interpreter inside
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        try:
            with caught_stderr():  # the converter's info lines on C++ stderr
                flat = converter.convert()
        except Exception as e:  # the converter raises its own types; its first line names the op
            first = next((line for line in str(e).splitlines() if "op" in line.lower()), str(e).splitlines()[0])
            raise ExportError(f"{saved_model}: cannot convert to {variant} TFLite with builtin ops only: {first.strip()}") from None
    flex = flex_ops(flat)
    if flex:
        raise ExportError(f"TFLite model needs Flex (TF) ops {', '.join(flex)}; only builtin ops are allowed")
    return flat


def write_tflite(saved_model: Path, names: list[str], examples=None, check: bool = True,
                 variants=("float32",), representative=None, fixed_size: Path | None = None) -> dict | None:
    """Convert the float signatures to each TFLite variant (``model.tflite`` is float32; the
    FIXED_SIZE_VARIANTS from ``fixed_size``, the same signatures at the training size) and
    check them against the SavedModel (not for a model with test-time dropout, whose outputs
    differ on every call): float32 must agree within PARITY_TOLERANCE; the quantized variants'
    max error and PSNR are reported in ``tflite_parity.json``."""
    for variant in variants:
        source = fixed_size if variant in FIXED_SIZE_VARIANTS else saved_model
        (saved_model / tflite_file(variant)).write_bytes(convert_tflite(source, names, variant, representative))
    if not check:
        return None
    report = tflite_parity(saved_model, names, examples)
    report["variants"] = {v: tflite_parity(saved_model, names, examples, variant=v)["signatures"]
                          for v in variants if v != "float32"}
    (saved_model / "tflite_parity.json").write_text(json.dumps(report, indent=2))
    worst = max(r["max_abs_error"] for r in report["signatures"].values())
    if not worst <= PARITY_TOLERANCE:  # NaN fails too
        raise ExportError(f"TFLite output differs from the SavedModel by {worst:.2e} (> {PARITY_TOLERANCE})")
    return report


def flex_ops(flat: bytes) -> list[str]:
    """Names of TF (Flex) ops in a TFLite flatbuffer."""
    ops = set()
    interpreter = litert_interpreter(flat)
    for detail in interpreter._get_ops_details():
        if detail["op_name"].startswith("Flex") or detail["op_name"] == "DELEGATE":
            ops.add(detail["op_name"])
    return sorted(ops)


def litert_interpreter(flat: bytes):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=flat)


def run_tflite(interpreter, name: str, images: np.ndarray, **inputs) -> np.ndarray:
    runner = interpreter.get_signature_runner(name)
    with caught_stderr():  # the first run applies XNNPACK: "Created TensorFlow Lite XNNPACK delegate for CPU."
        return runner(images=images.astype(np.float32), **{k: v.astype(np.float32) for k, v in inputs.items()})["images"]


def tflite_parity(saved_model: Path, names: list[str], examples=None, variant: str = "float32",
                  limit: int | None = 2) -> dict:
    """Max and mean |TFLite - SavedModel| and PSNR per signature on the first ``limit`` of
    ``examples`` (float [-1, 1] batches per signature input) or, without them, on a fixed
    random image of an odd size."""
    loaded = tf.saved_model.load(str(saved_model))
    interpreter = litert_interpreter((saved_model / tflite_file(variant)).read_bytes())
    report = {"tolerance": PARITY_TOLERANCE, "signatures": {}}
    for i, name in enumerate(names):
        fn = loaded.signatures[name]
        channels = fn.structured_input_signature[1]["images"].shape[-1]
        if examples is not None and i < len(examples):
            images = (np.asarray(examples[i][:limit], np.float32) + 1.0) / 2.0
        else:  # an odd size, or the size of a fixed-size variant
            shape = interpreter.get_signature_runner(name).get_input_details()["images"]["shape_signature"]
            height, width = (int(n) if n > 0 else default for n, default in zip(shape[1:3], (37, 45)))
            images = np.random.default_rng(0).random((1, height, width, channels), dtype=np.float32)
        extra = {}
        for key in CONDITIONS.intersection(fn.structured_input_signature[1]):  # an even blend of all
            n = fn.structured_input_signature[1][key].shape[-1]
            extra[key] = np.full((1, n), 1.0 / n, np.float32)
        expected = [fn(images=tf.constant(image[None]), **extra)["images"].numpy()[0] for image in images]
        errors = []
        for image, want in zip(images, expected):
            got = run_tflite(interpreter, name, image[None], **extra)[0]
            errors.append(np.abs(got - want))
        errors = np.stack(errors)
        mse = float(np.mean(errors**2))
        report["signatures"][name] = {"max_abs_error": float(errors.max()), "mean_abs_error": float(errors.mean()),
                                      "psnr_db": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
                                      "images": int(len(images)), "shape": list(images.shape[1:])}
    return report
