#!/usr/bin/env bash
# Sets everything up in .venv, then trains DTN on the embedded digits: scikit-learn's blurry
# 8x8 digits redrawn as MNIST's pen strokes, a short run of the default (a fifth of its
# stage-2 steps, a third of stage 1's, L_STROKE from step 50 instead of 250 so that it comes in
# within the run), about 9 minutes on 2 cores. It exports the model to exported/dtn/<version>/
# and scores it on held-out digits, beside the untranslated ones.
# Extra arguments go to tf-translate train.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir -e .
exec .venv/bin/tf-translate train --method dtn --epochs 4 --encoder-steps 500 --semantic-steps 300 \
    --validate-every 62 --sample-every 62 --stroke-after 50 --evaluate "$@"
