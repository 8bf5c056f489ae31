#!/usr/bin/env bash
# The GPU check (README: "GPU"): MTCNN frames/s on the GPU against the CPU; for each method,
# paper-profile training with mixed precision (steps/s, share of time waiting for data, peak
# GPU memory); embedding throughput. About 5-7 minutes; stops itself at 8.
#
#   bash benchmarks/gpu_check.sh                       # with .venv (make venv), else python3
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#   WHEELS=folder bash benchmarks/gpu_check.sh         # a machine without internet whose Python
#       has torch but lacks a package (facenet-pytorch): its wheels are installed, without
#       their dependencies, into a temporary folder first
#   bash benchmarks/gpu_check.sh --smoke               # the same steps, tiny, on any machine
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [ -n "${WHEELS:-}" ]; then
  site="$(mktemp -d)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$WHEELS"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import torch, facenet_pytorch, pandas, pyarrow, yaml, PIL, matplotlib, sklearn, tqdm" 2>/dev/null; then
  echo "gpu_check: $PY lacks a package the check needs (torch, facenet-pytorch, pandas, pyarrow, pyyaml," \
       "pillow, matplotlib, scikit-learn, tqdm): run 'make venv', or set PYTHON or WHEELS" >&2
  exit 1
fi
export PYTHONUNBUFFERED=1
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
