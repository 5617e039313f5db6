#!/usr/bin/env bash
# Regenerate the committed leaderboard of the tiny preset: every attack x every defense x seeds
# 0,1,2 into results/tiny (cached stages are reused, finished cells are skipped), then its tables,
# figures and page into results/tiny/report, the ABD tables into results/reproduce, and the
# trigger galleries into results/gallery. Extra arguments go to `clipbench run` (e.g. --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/clipbench run --preset tiny --attack all --defense all --seeds 0,1,2 --results-dir results/tiny "$@"
.venv/bin/clipbench report --results-dir results/tiny --out results/tiny/report
.venv/bin/clipbench reproduce abd-table1 --results-dir results/reproduce/cells-tiny --out results/reproduce/abd-table1-tiny
for attack in badnet blended wanet sig badclip label_consistent; do
    .venv/bin/clipbench show attack "$attack" --out "results/gallery/$attack.png"
done
