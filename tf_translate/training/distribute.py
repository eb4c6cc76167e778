"""Strategies and numeric precision of a training run: ``--strategy`` and ``--precision``.

``default`` trains on one device. ``mirrored`` replicates over this machine's GPUs (or, without
GPUs, its logical CPU devices), ``multiworker`` over the machines ``TF_CONFIG`` names, ``tpu``
over the TPU that ``TPU_NAME`` names. The global batch (``--batch-size``) is split across
replicas; losses are reduced by it (``losses.reduce``), per-sample randomness is drawn for it
(``replicas``), batch norm is synchronised, and checkpoints restore under any strategy.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import keras
import tensorflow as tf

from tf_translate.config import PRECISIONS, STRATEGIES
from tf_translate.errors import UsageError


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy ``--strategy name`` asks for. ``multiworker`` must be made before any other
    TensorFlow work in the process (TensorFlow's rule), which the command line does."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        if "TF_CONFIG" in os.environ:
            check_tf_config(os.environ["TF_CONFIG"])
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise UsageError(f"--strategy {name!r}: expected one of {', '.join(STRATEGIES)}")


def check_tf_config(text: str) -> None:
    """A one-line error for a TF_CONFIG that MultiWorkerMirroredStrategy would reject obscurely."""
    try:
        spec = json.loads(text)
        workers = spec["cluster"]["worker"]
        task = spec["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
                         f"\"task\": {{\"type\": \"worker\", \"index\": N}}}} ({type(e).__name__}: {e})") from None
    if kind == "worker" and not 0 <= index < len(workers):
        raise UsageError(f"TF_CONFIG: task index {index} is outside the {len(workers)} workers listed")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (samples, logs, config, export): always, but
    under ``multiworker`` only the chief (or worker 0 when no chief is named)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    kind, index = resolver.task_type, resolver.task_id
    return kind in (None, "chief") or (kind == "worker" and index == 0
                                       and "chief" not in resolver.cluster_spec().as_dict())


def worker_folder(run_dir: Path, strategy) -> Path:
    """Where a non-chief worker writes the checkpoints every worker must write (TensorFlow's
    multi-worker saving needs all of them to take part); the chief's go in the run folder."""
    resolver = strategy.cluster_resolver
    return Path(run_dir) / "workers" / f"{resolver.task_type}-{resolver.task_id}"


# --- precision -----------------------------------------------------------------------------

def cpu_has_bf16() -> bool:
    """Whether this x86 CPU has bfloat16 instructions (AVX-512 BF16 or AMX), from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


def resolve_precision(setting: str, bfloat16_measured: bool) -> str:
    """The Keras dtype policy of ``--precision setting``. ``auto`` = ``mixed_bfloat16`` on a
    CPU-only machine whose CPU has BF16 instructions, for a method where bfloat16 was measured
    faster at the same quality (``bfloat16_measured``); ``float32`` elsewhere."""
    if setting not in PRECISIONS:
        raise UsageError(f"--precision {setting!r}: expected one of {', '.join(PRECISIONS)}")
    if setting != "auto":
        return setting
    on_cpu = not tf.config.list_physical_devices("GPU")
    return "mixed_bfloat16" if bfloat16_measured and on_cpu and cpu_has_bf16() else "float32"


class policy:
    """``with policy("mixed_bfloat16"):`` layers built inside compute in that dtype (variables
    stay float32); ``float64`` (the lockstep tests) makes the models' inputs float64 too; the
    global policy is put back afterwards."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.before, self.floatx = keras.config.dtype_policy(), keras.config.floatx()
        keras.config.set_dtype_policy(self.name)
        if self.name == "float64":
            keras.config.set_floatx("float64")

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.before)
        keras.config.set_floatx(self.floatx)
