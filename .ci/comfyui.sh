#!/usr/bin/env bash
# CI: the pack inside real ComfyUI servers, 0.3.64 (October 2025, the oldest supported: pyproject's
# requires-comfyui) and 0.33.0 (August 2026), as users run it: the real-server tests (`-m comfyui`:
# tests marked so or parametrised by tests/comfyui_probe, e.g. tests/test_real_comfyui.py) and the browser stage
# (tests/browser: each example workflow and saved-workflow fixture loaded, converted and queued
# by ComfyUI's own frontend in headless Chromium), plus comfy-import-guard over the shipped files.
#
# ComfyUI is not on the package registry: each version comes from a snapshot (a bare git
# directory): $COMFYUI_SNAPSHOT_064 (default /work/.mirror/Comfy-Org+ComfyUI/repo) and
# $COMFYUI_SNAPSHOT_033 (default /work/.mirror/yzkee+ComfyUI/repo). A missing one is skipped with
# the reason printed; with neither this exits 0. ComfyUI's code is never copied into this repository.
#
# Steps (CONTRIBUTING.md, "Real ComfyUI"):
#   1. comfy-import-guard (PyPI) against each snapshot (.ci/import_guard.py): fails on a real break;
#   2. Debian's chromium + chromium-driver (apt-get; already there on a warm machine);
#   3. ONE venv for both versions: torch 2.9.1 + torchvision 0.24.1 + torchaudio 2.9.1 from PyPI,
#      this pack's requirements, pytest, selenium;
#   4. per version, oldest first: export the snapshot's tree (minus the blobs a snapshot lacks:
#      0.3.64 one Llama tokenizer file, 0.33 that and a Qwen3.5 vocabulary; only those text
#      encoders need them), install its requirements.txt without the torch lines plus `requests`
#      (imported, not listed) and transformers<5 (the 4.x line both versions work with) into the
#      shared venv (0.33's pins then replace 0.3.64's: frontend 1.49.6, comfy-kitchen, comfy-aimdo),
#      run the tests with COMFYUI_DIR/COMFYUI_PYTHON, remove the tree;
#   5. remove the venv.
#
# torch: 0.33 imports torchaudio at start, and no torchaudio wheel matches the local torch 2.14.1.
# Measured here (2 cores, December 2026): `pip download torch==2.9.1 torchvision==0.24.1
# 'torchaudio==2.9.*'` fetched all 4.1 GB (torch, torchaudio, torchvision, CUDA 12 libraries,
# triton) in about 45 s (90-100 MB/s); a venv with that stack plus both versions' requirements was
# ready in about 3 minutes, no slower than one built on the local 2.14.1 wheels. So CI uses the
# real stack, shared by both versions (torch 2.9 was current when 0.3.64 came out, so its users
# had it), and no stand-in torchaudio module is needed. The CUDA build runs fine with --cpu.
#
# Time (`time nice -n 10 bash .ci/comfyui.sh`, 2026-12-06, this 2-core machine shared with other
# jobs): 665 s (11 min) at load average 5-8: tools 14 s, torch stack 3.2 min (download +
# install), 0.3.64 environment 1 min and tests 3.8 min (browser stage included), 0.33
# environment 0.5 min and tests 2.2 min. An earlier run at load average 8-12 took 1263 s (21 min).
# COMFYUI_CI_KEEP=1 keeps the temporary folder (printed) for a rerun by hand; arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }

declare -A snapshots=(
  [0.3.64]="${COMFYUI_SNAPSHOT_064:-/work/.mirror/Comfy-Org+ComfyUI/repo}"
  [0.33.0]="${COMFYUI_SNAPSHOT_033:-/work/.mirror/yzkee+ComfyUI/repo}"
)
versions=()
for v in 0.3.64 0.33.0; do
  if git -C "${snapshots[$v]}" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    versions+=("$v")
  else
    echo "real-ComfyUI $v SKIPPED: no ComfyUI snapshot at ${snapshots[$v]} (COMFYUI_SNAPSHOT_064 / _033 name a ComfyUI git directory)"
  fi
done
if [ ${#versions[@]} -eq 0 ]; then
  echo "real-ComfyUI stage SKIPPED: no ComfyUI snapshot"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/paragonsr2-comfyui.XXXXXX")"
if [ "${COMFYUI_CI_KEEP:-0}" = 1 ]; then
  echo "keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi

venv="$work/venv"
python3 -m venv "$venv"
pip_install() {  # this machine's pip config names index folders that may not exist: drop those warnings
  "$venv/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# 1. comfy.* uses of the shipped files against each snapshot (seconds; before the big installs).
pip_install comfy-import-guard==1.3.0
for v in "${versions[@]}"; do
  "$venv/bin/python" .ci/import_guard.py "${snapshots[$v]}" "$venv/bin/comfy-import-guard"
done

# 2. The browser (Debian's packages; CI runs as root). Without it the browser tests say why and skip.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
      || echo "browser stage: apt-get could not install chromium chromium-driver; the browser tests will skip"
  else
    echo "browser stage: chromium/chromedriver missing and not root; the browser tests will skip"
  fi
fi
echo "tools ready after $(elapsed)"

# 3. The shared environment.
pip_install torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1
pip_install -r requirements.txt pytest selenium
echo "torch stack ready after $(elapsed)"

# The test modules that start or import a real ComfyUI: marked `comfyui`, or using
# tests/comfyui_probe (whose install params carry that marker); `-m comfyui` picks their tests.
mapfile -t modules < <(grep -l -r -E --include='test_*.py' "pytest\.mark\.comfyui|comfyui_probe" tests | sort)
echo "real-ComfyUI test modules: ${modules[*]}"

status=0
for v in "${versions[@]}"; do
  snapshot="${snapshots[$v]}"
  comfy="$work/ComfyUI-$v"
  mkdir -p "$comfy"
  # 4a. The snapshot's tree, without the blobs it lacks (git reports each as "invalid object").
  git -C "$snapshot" ls-tree -r HEAD | awk -F'\t' '{ split($1, m, " "); print m[3] "\t" $2 }' > "$work/tree.txt"
  cut -f1 "$work/tree.txt" | git -C "$snapshot" cat-file --batch-check | awk '$2 == "missing" { print $1 }' > "$work/missing.txt"
  excludes=()
  while IFS=$'\t' read -r _ path; do excludes+=(":(exclude)$path"); done < <(grep -F -f "$work/missing.txt" "$work/tree.txt" || true)
  git -C "$snapshot" archive HEAD -- . "${excludes[@]}" 2> >(grep -v "invalid object" >&2) | tar -x -C "$comfy"
  found=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$comfy/comfyui_version.py")
  echo; echo "=== ComfyUI $found ($(git -C "$snapshot" rev-parse --short HEAD)), left out: ${excludes[*]:-nothing} (at $(elapsed))"

  # 4b. Its requirements into the shared venv (torch lines dropped: the stack above stays).
  grep -v -E '^(torch|torchvision|torchaudio)([<>=~ ]|$)' "$comfy/requirements.txt" > "$work/comfyui-requirements.txt"
  pip_install -r "$work/comfyui-requirements.txt" requests "transformers<5"
  echo "ComfyUI $found environment ready after $(elapsed)"

  # 4c. The tests, this version only. test_comfy_integration.py (no server; needs spandrel, which
  # this venv has) once, with the first version.
  extra=()
  if [ "$v" = "${versions[0]}" ]; then extra=(tests/test_comfy_integration.py); fi
  COMFYUI_DIR="$comfy" COMFYUI_PYTHON="$venv/bin/python" COMFYUI_SERVERS="" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -rs -m comfyui "${modules[@]}" "$@" \
    || status=$?
  if [ ${#extra[@]} -gt 0 ]; then
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -rs "${extra[@]}" "$@" || status=$?
  fi
  echo "ComfyUI $found stage finished after $(elapsed)"
  rm -rf "$comfy"
done

# 5. The venv goes with $work (trap), unless kept.
echo "real-ComfyUI stage finished in $(elapsed) (status $status)"
exit "$status"
