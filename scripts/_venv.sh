# Sourced by demo.sh and test.sh: create .venv if missing and install the project into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
VENV_PY="$ROOT/.venv/bin/python"
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-$1"
if [ ! -f "$stamp" ]; then
    "$VENV_PY" -m pip install -q --upgrade pip
    # Pinned torch first, so the dependencies below find it in place. From the default package index this is
    # the CUDA build (about 3.2 GB of NVIDIA libraries, GPU or not: see README.md, "Quick start");
    # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu installs PyTorch's CPU build instead.
    "$VENV_PY" -c "import torch, torchvision" 2>/dev/null || \
        "$VENV_PY" -m pip install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
            "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
    "$VENV_PY" -m pip install -q -e ".$2"
    touch "$stamp"
fi
