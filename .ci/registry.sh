#!/usr/bin/env bash
# Registry checks with the real comfy-cli, installed in a throw-away environment:
#   1. `comfy node validate` (what `comfy node publish` checks first) passes and prints no
#      warning (comfy-cli only *warns* about an invalid classifier or requires-comfyui and then
#      drops it, so a warning fails here);
#   2. `comfy node pack` on a copy of the tree: the archive keeps what ComfyUI needs (the bundled
#      demo model, workflows and thumbnails, the icon) and leaves out what .comfyignore excludes.
# Usage: .ci/registry.sh   (COMFY_CLI_VERSION overrides the pinned comfy-cli.)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
COMFY_CLI_VERSION="${COMFY_CLI_VERSION:-1.23.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "comfy-cli==$COMFY_CLI_VERSION"
# comfy-cli keeps its config under HOME and asks about telemetry on first use: a private HOME,
# telemetry off, no prompts.
export HOME="$work/home" DO_NOT_TRACK=1 COMFY_NO_TELEMETRY=1
mkdir -p "$HOME"
comfy=("$work/venv/bin/comfy" --skip-prompt)

echo "== comfy node validate"
log="$work/validate.log"
"${comfy[@]}" node validate </dev/null 2>&1 | tee "$log"
if grep -qiE "warning|error" "$log"; then
  echo "registry: comfy node validate printed a warning or an error" >&2
  exit 1
fi

echo "== comfy node pack"
# A copy of every file git would commit (tracked, plus new files that are not ignored), as a
# fresh repository: pack archives git-tracked files only.
tree="$work/tree"
mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && cp --parents -- "$f" "$tree/"
done
(cd "$tree" && git init -q && git add -A && "${comfy[@]}" node pack </dev/null)
"$work/venv/bin/python" - "$tree/node.zip" <<'EOF'
import sys
import zipfile

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
must_keep = ["__init__.py", "pyproject.toml", "LICENSE", "nodes/__init__.py", "engines/__init__.py",
             "paragonsr2_arch/__init__.py", "models/ParagonSR2_realtime_x2_demo.safetensors",
             "example_workflows/ParagonSR2_image_upscale.json", "example_workflows/ParagonSR2_image_upscale.jpg",
             "example_workflows/ParagonSR2_video_upscale.json", "example_workflows/ParagonSR2_video_upscale.jpg",
             "example_workflows/ParagonSR2_video_streaming.json", "example_workflows/ParagonSR2_video_streaming.jpg",
             "assets/icon.png"]
excluded = ("tests/", "benchmarks/", "training/", ".ci/", "requirements-dev.txt", "scripts/test.sh")
missing = [n for n in must_keep if n not in names]
leaked = sorted(n for n in names if n.startswith(excluded))
print(f"node.zip: {len(names)} files")
if missing or leaked:
    print(f"registry: archive is missing {missing}, carries {leaked[:10]}", file=sys.stderr)
    sys.exit(1)
print("registry: archive keeps the runtime files and leaves out tests, benchmarks, training and CI")
EOF
echo "registry: all checks passed"
