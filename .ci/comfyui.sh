#!/usr/bin/env bash
# CI: the pack inside a real ComfyUI server (tests/test_real_comfyui.py), as docs say users run it.
#
# ComfyUI is not on the package registry: its source comes from a snapshot (a bare git
# directory): $COMFYUI_SNAPSHOT, else /work/.mirror/Comfy-Org+ComfyUI/repo. Without one this
# prints why and exits 0 (nothing to test against). Steps (CONTRIBUTING.md, "Real ComfyUI"):
#   1. export the snapshot's tree (minus the one blob the snapshot lacks, which only Llama-tokenizer
#      models need) into a temporary folder; ComfyUI's code is never copied into this repository;
#   2. a venv with torch==2.14.1 + torchvision==0.29.1 (the local wheels; CPU torch 2.13.0 has no
#      torchvision that imports), ComfyUI's requirements without its torch lines, `requests`
#      (imported, not listed), transformers<5 (the 4.x line matches 0.3.64), this pack's
#      requirements and pytest;
#   3. run the test with COMFYUI_DIR / COMFYUI_PYTHON pointing at them (one venv for both).
# About 9 minutes here (2 CPU cores): 7 to build the environment, 2 for the tests.
# COMFYUI_CI_KEEP=1 keeps the temporary folder (printed) for a rerun by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

snapshot="${COMFYUI_SNAPSHOT:-/work/.mirror/Comfy-Org+ComfyUI/repo}"
if ! git -C "$snapshot" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  echo "real-ComfyUI test SKIPPED: no ComfyUI snapshot at $snapshot (set COMFYUI_SNAPSHOT to a ComfyUI git directory)"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/paragonsr2-comfyui.XXXXXX")"
if [ "${COMFYUI_CI_KEEP:-0}" = 1 ]; then
  echo "keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi

comfy="$work/ComfyUI"
mkdir -p "$comfy"
# git still reports the absent blob ("invalid object") while leaving it out; the archive is complete otherwise.
git -C "$snapshot" archive HEAD -- . ':(exclude)comfy/text_encoders/llama_tokenizer/tokenizer.json' \
  2> >(grep -v "invalid object .*llama_tokenizer/tokenizer.json" >&2) | tar -x -C "$comfy"
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$comfy/comfyui_version.py")
echo "ComfyUI $version ($(git -C "$snapshot" rev-parse --short HEAD)) exported to $comfy"

venv="$work/venv"
python3 -m venv "$venv"
pip_install() {  # this machine's pip config names index folders that may not exist: drop those warnings
  "$venv/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
pip_install torch==2.14.1 torchvision==0.29.1
grep -v -E '^(torch|torchvision|torchaudio)([<>=~ ]|$)' "$comfy/requirements.txt" > "$work/comfyui-requirements.txt"
pip_install -r "$work/comfyui-requirements.txt" requests "transformers<5" -r requirements.txt pytest
echo "environment ready after $(( $(date +%s) - start )) s"

# test_comfy_integration.py too: this venv has spandrel, so its UPSCALE_MODEL .patcher check runs here.
COMFYUI_DIR="$comfy" COMFYUI_PYTHON="$venv/bin/python" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -rs tests/test_real_comfyui.py tests/test_comfy_integration.py "$@"
echo "real-ComfyUI test finished in $(( $(date +%s) - start )) s"
