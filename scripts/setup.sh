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

# Data from Debian packages (docs/design.md, "Environment"): Fashion-MNIST for the tiny preset, and WordNet for EDA.
# Without apt, clipbench falls back to the Hugging Face hub (Fashion-MNIST) and nltk's downloader.
missing=""
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ -z "${CLIPBENCH_FASHION_MNIST_DIR:-}" ]; then
  missing="$missing dataset-fashion-mnist"
fi
if [ ! -f /usr/share/wordnet/data.noun ]; then missing="$missing wordnet-base"; fi
if [ ! -f /usr/share/wordnet/index.sense ]; then missing="$missing wordnet-sense-index"; fi
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
  echo "clipbench setup: installing Debian packages:$missing" >&2
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing; } >/dev/null 2>&1; then
    echo "clipbench setup: could not install$missing; clipbench will try the Hugging Face hub and nltk's downloader" >&2
  fi
fi
echo "clipbench setup: ready (.venv/bin/clipbench)" >&2
