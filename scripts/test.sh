#!/usr/bin/env bash
# The test command of the README and of CI: set up the environment, then run every test.
# Two passes, so the everyday set finishes quickly and nothing is dropped:
#   1. the default set (`-m "not slow"`) on every core (pytest-xdist `-n auto`),
#   2. the tests marked slow (pyproject.toml [tool.pytest.ini_options]), also on every core.
# Extra arguments go to both passes (e.g. scripts/test.sh -k tiling). With your own `-m`,
# `--slow` or a test id (file.py::test) it runs one pass with exactly what you asked for.
# PARAGONSR2_TEST_WORKERS sets the worker count (default: auto = one per core; 0 = no xdist).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/setup_env.sh" | tail -n 1)"
cd "$root"

workers="${PARAGONSR2_TEST_WORKERS:-auto}"
parallel=()
if [ "$workers" != "0" ] && "$py" -c "import xdist" >/dev/null 2>&1; then
  parallel=(-n "$workers")
fi

# The tests start servers (a local Ray cluster, subprocesses) that must talk over loopback only.
# Ray always binds to the machine's network address, so where we may (root, or unprivileged user
# namespaces) the tests run in a private network namespace whose only interface is lo; there
# Ray uses 127.0.0.1. Elsewhere the Ray tests skip and say why. PARAGONSR2_TEST_NETNS=0 opts out.
isolate=()
if [ "${PARAGONSR2_TEST_NETNS:-1}" != "0" ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then
  for try in "unshare --net" "unshare --user --map-root-user --net"; do
    if $try sh -c 'ip link set lo up' >/dev/null 2>&1; then
      read -r -a isolate <<< "$try"
      isolate+=(sh -c 'ip link set lo up && exec "$@"' sh)
      echo "[test] running in a private network namespace (loopback only)" >&2
      break
    fi
  done
fi

# pytest exit status 5 = no tests collected. One empty pass is fine (e.g. -k matching only
# fast tests); both empty is a failure, not a pass.
run_pass() {
  set +e
  ${isolate[@]+"${isolate[@]}"} "$py" -m pytest ${parallel[@]+"${parallel[@]}"} "$@"
  local status=$?
  set -e
  return "$status"
}

single_pass=0
for arg in "$@"; do
  case "$arg" in
    -m|-m*|--slow|*::*) single_pass=1 ;;
  esac
done

if [ "$single_pass" -eq 1 ]; then
  status=0; run_pass "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests; that is a failure, not a pass" >&2
    exit 1
  fi
  exit "$status"
fi

fast=0; run_pass -m "not slow" "$@" || fast=$?
echo "[test] default set done (exit $fast); now the slow set" >&2
slow=0; run_pass -m slow "$@" || slow=$?
if [ "$fast" -eq 5 ] && [ "$slow" -eq 5 ]; then
  echo "error: pytest collected no tests; that is a failure, not a pass" >&2
  exit 1
fi
for status in "$fast" "$slow"; do
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
    exit "$status"
  fi
done
exit 0
