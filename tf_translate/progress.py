"""How often progress bars redraw."""

from __future__ import annotations

import sys


def bar_interval() -> float:
    """Seconds between progress bar updates: live on a terminal, sparse in a log file."""
    return 1.0 if sys.stderr.isatty() else 30.0
