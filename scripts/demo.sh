#!/usr/bin/env bash
# The README's first command: set up the environment, then upscale the bundled sample image
# (assets/chelsea.png) x2 with the bundled demo model. Prints where the PNG went and how long
# it took. Optional argument: the output path (default: output/chelsea_ParagonSR2_x2.png).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/setup_env.sh" | tail -n 1)"
out="${1:-$root/output/chelsea_ParagonSR2_x2.png}"
# --overwrite only lets a rerun replace the previous demo output; inputs are never overwritten.
"$py" "$root/paragonsr2.py" upscale "$root/assets/chelsea.png" --output "$out" --overwrite
