"""Run configuration: frozen dataclasses with a JSON round trip.

A run is described by one :class:`RunConfig` with four sections: ``data``, ``train``,
``export`` and ``model`` (the method's own config, carrying the paper's defaults). Values
are resolved in this order, later winning:

    dataclass defaults -> the method's overrides -> the embedded-data demo profile (only
    when no data source is given) -> a ``--config file.json`` -> explicit command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tf_translate.errors import UsageError

SECTIONS = ("data", "train", "export", "model")
# The exports' default pixel limit per request: 2048 x 1024 (about 1448 x 1448). A call of the
# heaviest paper-size generator measured needs about 1.9 KB per pixel, so a request at the limit
# costs about 4 GB (benchmarks/serving_memory.md).
SERVING_MAX_PIXELS = 2048 * 1024


def opt(default, help: str, choices: tuple | None = None):
    """A config field with its --help text (and, for an enumerated one, its values)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data: str | None = opt(None, "folder, video, tfds:NAME[/CONFIG]; None = the embedded default data")
    load_size: int = opt(286, "images are resized to this square before the random crop")
    crop_size: int = opt(256, "size of the random square crop the networks train on")
    flip: bool = opt(True, "random horizontal flip")
    batch_size: int = opt(1, "global batch size (split across replicas)")
    domains: tuple[str, ...] = opt(("a", "b"), "names of the domains, in the data's folder order")
    max_pixels: int = opt(50_000_000, "images larger than this are refused from their header")
    min_images: int = opt(2, "training stops before it starts with fewer good images per domain")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    output: str | None = opt(None, "run folder; default runs/<method>")
    epochs: int = opt(100, "epochs at the initial learning rate")
    decay_epochs: int = opt(100, "epochs of linear decay to 0 that follow")
    steps_per_epoch: int | None = opt(None, "default: one pass over the larger training set")
    lr: float = opt(2e-4, "Adam learning rate")
    beta_1: float = opt(0.5, "Adam beta_1")
    beta_2: float = opt(0.999, "Adam beta_2")
    seed: int = opt(0, "seed of every random choice (crops, flips, shuffles, pool, init)")
    jit_compile: str = opt("auto", "auto = on (faster on the AVX2 CPUs first measured, "
                                   "not on AVX-512 ones: benchmarks/README.md), but off under mixed_bfloat16 "
                                   "on a CPU, where XLA loses the bfloat16 gain", ("auto", "on", "off"))
    strategy: str = opt("default", "default (one device) | mirrored (this machine's GPUs, or its logical CPUs) | "
                                   "multiworker (the machines TF_CONFIG names) | tpu (TPU_NAME); --batch-size is "
                                   "the global batch, split across replicas", STRATEGIES)
    precision: str = opt("auto", "auto | float32 | mixed_float16 | mixed_bfloat16 (layers compute in 16 bits, "
                                 "variables, losses, outputs and exports stay float32); auto = mixed_bfloat16 on "
                                 "CPUs with BF16 instructions for the methods measured as fast and as good in it, "
                                 "float32 elsewhere (docs/scaling.md)", PRECISIONS)
    log_every: int = opt(10, "steps between TensorBoard scalars")
    sample_every: int = opt(200, "steps between sample panels")
    checkpoint_every: int = opt(200, "steps between checkpoints (also at the end and on Ctrl-C)")
    validate_every: int = opt(0, "steps between validations on the test split (0 = off)")
    keep_checkpoints: int = opt(3, "latest checkpoints kept")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    export_dir: str | None = opt(None, "default exported/<method>")
    export: bool = opt(True, "export at the end of training")
    tflite: bool = opt(True, "also write a float32 .tflite model, checked against the SavedModel")
    tflite_variants: tuple[str, ...] = opt(("float32",), "TFLite variants: float32 (model.tflite), float16, "
                                           "dynamic-int8, int8, int16x8 (both calibrated on training images; "
                                           "int16x8 at the training size only); each compared with the "
                                           "SavedModel in tflite_parity.json")
    test_dropout: bool = opt(False, "keep dropout on at inference (pix2pix's noise): outputs then vary "
                                    "per call and TFLite parity is not checked; off = deterministic")
    max_pixels: int = opt(SERVING_MAX_PIXELS, "the exported signatures refuse (InvalidArgument, before decoding "
                                              "or running a network) an encoded image of more pixels, or a float "
                                              "request of more batch x height x width: a bound on a server's "
                                              "memory per request (docs/serving.md)")

    def __post_init__(self):
        if self.max_pixels < 1:
            raise UsageError(f"max_pixels {self.max_pixels}: an export's pixel limit must be at least 1")


_SECTION_TYPES = {"data": DataConfig, "train": TrainConfig, "export": ExportConfig}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    method: str
    data: DataConfig
    train: TrainConfig
    export: ExportConfig
    model: Any  # the method's config dataclass

    def to_dict(self) -> dict:
        out = {"method": self.method}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)

    @property
    def run_dir(self) -> Path:
        return Path(self.train.output or f"runs/{self.method}")

    @property
    def export_dir(self) -> Path:
        return Path(self.export.export_dir or f"exported/{self.method}")


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(cls, values: dict) -> Any:
    """Build dataclass ``cls`` from ``values``, turning JSON lists back into tuples."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UsageError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        if isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def merge(*layers: dict) -> dict:
    """Merge nested ``{section: {field: value}}`` dicts; later layers win, None values are dropped."""
    out: dict = {name: {} for name in SECTIONS}
    for layer in layers:
        for section, values in (layer or {}).items():
            if section == "method":
                continue
            if section not in out:
                raise UsageError(f"unknown config section {section!r} (expected one of {', '.join(SECTIONS)})")
            out[section].update({k: v for k, v in values.items() if v is not None})
    return out


def build(method: str, model_cls, *layers: dict) -> RunConfig:
    merged = merge(*layers)
    sections = {name: _coerce(cls, merged[name]) for name, cls in _SECTION_TYPES.items()}
    return RunConfig(method=method, model=_coerce(model_cls, merged["model"]), **sections)


def load(path: str | Path) -> RunConfig:
    """Rebuild a RunConfig from a config.json written by :meth:`RunConfig.save`."""
    from tf_translate import registry

    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no config.json (is this a run or export folder?)") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    spec = registry.get(raw["method"])
    return build(raw["method"], spec.config, raw)


def read_layer(path: str | Path) -> dict:
    """A ``--config file.json``: either a full saved config or a partial ``{section: {...}}``."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a JSON object with sections {', '.join(SECTIONS)}")
    return raw
