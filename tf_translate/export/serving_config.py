"""Files TF Serving reads beside the models: ``models.config`` (a ModelServerConfig in text
format, one entry per exported model) and, in each version, warm-up requests
(``assets.extra/tf_serving_warmup_requests``: PredictionLog records the server replays at
load time, so that the first real request is not the slow one). Both are written with
``tensorflow-serving-api``'s protos and read back through them."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
WARMUP_SIDE = 64  # the image side of warm-up requests for models that take any size


def exported_models(root: str | Path) -> dict[str, Path]:
    """Model name -> base path: every folder under ``root`` holding numeric version folders
    with a SavedModel (exported/<method>/<version>/ as train and export write them)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of exported models")
    found = {folder.name: folder.resolve() for folder in sorted(root.iterdir()) if folder.is_dir() and any(
        v.name.isdigit() and (v / "saved_model.pb").is_file() for v in folder.iterdir())}
    if not found:
        raise FileNotFoundError(f"{root}: no exported model in it (expected NAME/VERSION/saved_model.pb)")
    return found


def models_config(models: dict[str, Path], server_root: str | None = None) -> str:
    """The ModelServerConfig text for ``models`` (name -> base path), checked by parsing it
    back. ``server_root``: the folder the server sees the models under (e.g. /models inside a
    container), instead of their absolute paths here."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name, base in models.items():
        entry = config.model_config_list.config.add()
        path = f"{server_root.rstrip('/')}/{name}" if server_root else str(Path(base).resolve())
        entry.name, entry.base_path, entry.model_platform = name, path, "tensorflow"
    text = text_format.MessageToString(config)
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    if parsed != config:
        raise RuntimeError("models.config did not read back as written")
    return text


def write_models_config(root: str | Path, path: str | Path, server_root: str | None = None) -> Path:
    """``models.config`` for every model exported under ``root``; the model names are the folders'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(models_config(exported_models(root), server_root))
    return path


def input_specs(function) -> dict:
    """A concrete function's inputs: name -> (dtype, shape with None for unknown dimensions)."""
    args, kwargs = function.structured_input_signature  # args also hold bound Python values
    named = {spec.name: spec for spec in args if isinstance(spec, tf.TensorSpec)} | kwargs
    return {name: (spec.dtype, list(spec.shape)) for name, spec in named.items()}


def example_inputs(specs: dict, *, batch: int = 1, side: int = WARMUP_SIDE, domains: tuple[str, ...] = ()) -> dict:
    """Valid inputs for a signature: random images (float in [0, 1], or PNG bytes), the first
    style or domain (one-hot, its per-pixel map, or the first domain's name)."""
    rng = np.random.default_rng(0)
    values = {}
    for name, (dtype, shape) in specs.items():
        if dtype == tf.string and name == "domain":
            values[name] = np.array([domains[k % len(domains)].encode() for k in range(batch)], object)
        elif dtype == tf.string:
            values[name] = np.array([png(rng, side) for _ in range(batch)], object)
        else:
            dims = [batch] + [side if d is None else d for d in shape[1:]]
            if name in ("style_weights", "labels", "style_map", "label_map"):
                values[name] = np.broadcast_to(np.eye(dims[-1], dtype=np.float32)[0], dims).copy()
            else:
                values[name] = rng.random(dims, dtype=np.float32)
    return values


def png(rng: np.random.Generator, side: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(out, "PNG")
    return out.getvalue()


def write_warmup(version_dir: str | Path, signatures: dict, domains: tuple[str, ...] = (),
                 max_pixels: int | None = None) -> Path:
    """One warm-up Predict request per signature (``serving_default`` is the first one's
    alias and is left out) into ``version_dir/assets.extra/``, its images within ``max_pixels``
    (a model's pixel limit: TF Serving refuses to load a model whose warm-up fails)."""
    side = WARMUP_SIDE if max_pixels is None else max(1, min(WARMUP_SIDE, math.isqrt(max_pixels)))
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name, function in signatures.items():
            if name == "serving_default":
                continue
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = name
            for key, value in example_inputs(input_specs(function), side=side, domains=domains).items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup(version_dir: str | Path) -> list[tuple[str, dict]]:
    """The warm-up requests of a version: (signature name, inputs as numpy arrays)."""
    from tensorflow_serving.apis import prediction_log_pb2

    out = []
    for record in tf.data.TFRecordDataset(str(Path(version_dir) / WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        out.append((request.model_spec.signature_name,
                    {k: tf.make_ndarray(v) for k, v in request.inputs.items()}))
    return out
