#!/usr/bin/env bash
# Lint, format and type checks of the repository (configured in pyproject.toml):
#   ruff check          pycodestyle, pyflakes, import order, pyupgrade, bugbear, simplifications
#   ruff format --check the formatter would change nothing
#   pyright             basic type checking of paragonsr2_arch/, engines/, cli/ and nodes/
# Usage: .ci/lint.sh [VENV]   (default: $PARAGONSR2_VENV, else .venv). The pinned tool versions
# below are installed into that environment first, so every machine checks with the same rules.
# Runs all three and exits non-zero if any of them failed.
set -uo pipefail
cd "$(dirname "$0")/.."
venv="${1:-${PARAGONSR2_VENV:-$PWD/.venv}}"
RUFF_VERSION=0.17.6
PYRIGHT_VERSION=1.1.414
if [ ! -x "$venv/bin/python" ]; then
  echo "lint: no Python environment at $venv (create it with scripts/setup_env.sh)" >&2
  exit 2
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "ruff==$RUFF_VERSION" "pyright==$PYRIGHT_VERSION" >&2 \
  || { echo "lint: could not install ruff==$RUFF_VERSION pyright==$PYRIGHT_VERSION" >&2; exit 2; }

status=0
run() {
  echo "== $*"
  "$@" || status=1
}
run "$venv/bin/ruff" check .
run "$venv/bin/ruff" format --check .
# pyright is a Node program; the pip package fetches its Node runtime on first use.
run "$venv/bin/pyright" --pythonpath "$venv/bin/python"
[ "$status" -eq 0 ] && echo "lint: all checks passed" || echo "lint: some checks failed" >&2
exit "$status"
