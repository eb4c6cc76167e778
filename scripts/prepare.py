#!/usr/bin/env python3
"""Thin entry point: see `python scripts/prepare.py --help` (the same as `tf-translate prepare`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tf_translate.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:], command="prepare"))
