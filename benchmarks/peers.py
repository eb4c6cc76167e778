"""The PyTorch reference implementation's own files, imported from ../shared/peers beside the
project (never copied into it), for the benchmarks that time its training step."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

# The reference's unmodified files, beside the project: ../shared/peers relative to the project root.
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "pytorch-CycleGAN-and-pix2pix"


def load_reference(module: str):
    """(torch, the reference's ``models.<module>``); ImportError with a one-line reason if absent."""
    if not (REFERENCE / "models" / f"{module}.py").is_file():
        raise ImportError(f"the PyTorch reference implementation is not at {REFERENCE}")
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"the PyTorch reference needs torch: {e}") from None
    for name in ("models", "util"):  # it imports these as top-level packages
        loaded = getattr(sys.modules.get(name), "__file__", None) or ""
        if name in sys.modules and not Path(loaded).resolve().is_relative_to(REFERENCE):
            raise ImportError(f"a different top-level '{name}' module is already imported ({loaded})")
    if str(REFERENCE) not in sys.path:
        sys.path.insert(0, str(REFERENCE))
    return torch, importlib.import_module(f"models.{module}")


def load_or_exit(module: str, script: str, main: bool):
    """``load_reference(module)`` at a benchmark's import, so that ``benchmark.py --torch`` fails
    before building anything; run as a script (``main``), a missing reference ends it with a
    one-line error naming ``script``."""
    try:
        return load_reference(module)
    except ImportError as e:
        if not main:
            raise
        sys.exit(f"{script}: error: {e}")
