#!/usr/bin/env bash
# Set up clipbench on a fresh machine: a virtual environment in .venv with the pinned CPU/GPU torch,
# clipbench installed editable with its test extras, and the Fashion-MNIST data of the tiny preset.
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "clipbench setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.clipbench-installed
want=$(cat setup.cfg constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "clipbench setup: installing dependencies (torch pinned by constraints.txt)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  log=.venv/pip-install.log
  if ! .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]" >"$log" 2>&1; then
    cat "$log" >&2
    echo "clipbench setup: pip install failed (log above, also in $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# Fashion-MNIST: the Debian package is the offline source (DESIGN.md); clipbench falls back to the
# Hugging Face hub and the original download by itself when this is not possible.
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ -z "${CLIPBENCH_FASHION_MNIST_DIR:-}" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
    echo "clipbench setup: installing the Debian package dataset-fashion-mnist" >&2
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1; then
      echo "clipbench setup: could not install dataset-fashion-mnist; clipbench will try the Hugging Face hub" >&2
    fi
  fi
fi
echo "clipbench setup: ready (.venv/bin/clipbench)" >&2
