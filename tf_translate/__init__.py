"""tf_translate: image-to-image translation in TensorFlow 2 / Keras 3.

Public API: :func:`list_methods`, :func:`get_method`, :func:`train`, :func:`load_exported`.
"""

from __future__ import annotations

import os as _os

# TensorFlow uses its oneDNN CPU kernels by default only on CPUs with AVX-512 VNNI/BF16 or AMX.
# On AVX2 CPUs they make training steps faster too (pix2pix at 128 px 1.17x with XLA, 1.25x
# without: benchmarks/pix2pix_onednn.md), so they are on unless the user set
# TF_ENABLE_ONEDNN_OPTS (0 = off).
# Effective only when tf_translate is imported before TensorFlow, as the scripts do.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"


def list_methods(**capabilities: bool) -> list[str]:
    """Registered method names, e.g. ``list_methods(exportable=True)``."""
    from tf_translate import registry

    return registry.names(**capabilities)


def get_method(name: str):
    """The registry entry (model class, config class, capabilities) of ``name``."""
    from tf_translate import registry

    return registry.get(name)


def train(config, strategy=None):
    """Train (or resume) the run described by a :class:`tf_translate.config.RunConfig`, then
    export it; returns the export folder (or the run folder when export is off)."""
    from tf_translate import export
    from tf_translate.training import trainer

    return trainer.run(config, strategy, exporter=export.export_trained)


def load_exported(path):
    """Load an exported version folder for inference: see :class:`tf_translate.export.Exported`."""
    from tf_translate.export import Exported

    return Exported(path)
