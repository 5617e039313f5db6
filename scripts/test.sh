#!/usr/bin/env bash
# Set everything up (idempotent), then run the test suite. Fails when no test ran (pytest exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
.venv/bin/python -m pytest -q "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "clipbench tests: no tests were collected" >&2
  exit 1
fi
exit "$status"
