#!/usr/bin/env bash
# The test command of the README and of CI: set up the environment, then run pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k tiling).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/setup_env.sh" | tail -n 1)"
cd "$root"
set +e
"$py" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests; that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
