#!/usr/bin/env bash
# Set everything up, then run the main job on the embedded default (preset tiny): BadNet against
# no defense and plain fine-tuning. Extra arguments go to `clipbench run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/clipbench run --preset tiny --attack badnet --defense none,finetune "$@"
