#!/usr/bin/env bash
# Sets everything up in .venv and trains CycleGAN on the embedded cartoon <-> photo data,
# then exports it to exported/cyclegan/<version>/. Extra arguments go to scripts/train.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/python scripts/train.py --method cyclegan "$@"
