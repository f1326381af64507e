#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs what the tests, the demo
# and the benchmarks need. Prints the environment's python path as its last line.
#   PARAGONSR2_VENV   where the environment lives (default: .venv in the repository)
#   PARAGONSR2_TORCH  the torch requirement when torch is missing (default: torch==2.13.0,
#                     which is a CPU build where a local wheel exists; elsewhere pick the
#                     build you want, e.g. from https://pytorch.org)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PARAGONSR2_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv" >&2
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
if ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing ${PARAGONSR2_TORCH:-torch==2.13.0}" >&2
  "$py" -m pip install -q --disable-pip-version-check "${PARAGONSR2_TORCH:-torch==2.13.0}" >&2
fi
echo "[setup] installing requirements" >&2
"$py" -m pip install -q --disable-pip-version-check -r "$root/requirements.txt" -r "$root/requirements-dev.txt" >&2
# Editors and pyright resolve `import paragonsr2_pack...` (the name tests import the pack under)
# through this link; it is local and gitignored (tests/packlib.py registers the name at run time).
mkdir -p "$root/.ide" && ln -sfn .. "$root/.ide/paragonsr2_pack" 2>/dev/null || true
echo "$py"
