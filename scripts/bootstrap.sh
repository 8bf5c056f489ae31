#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv by default).
# Idempotent: re-installs only when requirements.lock or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FACEVOICE_VENV:-.venv}"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "facevoice needs Python >= 3.10 (found: $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.x." >&2
  exit 1
fi

stamp="$VENV/.facevoice-stamp"
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

echo "[bootstrap] creating $VENV (first run installs PyTorch and friends: a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_install() {  # pip, minus the local mirror's noise; fails when pip fails (pipefail)
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
pip_install -r requirements.lock
# The project itself, editable; its dependencies are already pinned by requirements.lock.
pip_install --no-deps -e .
"$VENV/bin/python" -c "import facevoice, facenet_pytorch, torch, torchvision, snakemake, librosa, webrtcvad, silero_vad, pytest, snakemake_executor_plugin_slurm" \
  || { echo "[bootstrap] the environment in $VENV is incomplete; see the pip output above" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[bootstrap] $VENV ready" >&2
