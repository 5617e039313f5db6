#!/usr/bin/env bash
# Regenerate the committed results of the tiny preset into results/tiny (cached stages are reused,
# finished cells and detection results are skipped): every attack x every defense x seeds 0,1,2;
# fine-tuning and CleanCLIP over the learning rate on BadNet and Blended (the budget curves); the
# filter-then-train compositions of two detectors; every detector, and the data-level ones again at
# 30 poisoned pairs. Then the tables, figures and page into
# results/tiny/report, the ABD tables and RoCLIP's comparison (tiny-pretrain, seeds 0-2) into
# results/reproduce, and the trigger galleries into results/gallery. Extra arguments go to `clipbench run` (e.g. --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cb=.venv/bin/clipbench
$cb run --preset tiny --attack all --defense all --seeds 0,1,2 --results-dir results/tiny "$@"
$cb run --preset tiny --attack badnet,blended --defense finetune,cleanclip --sweep defense.lr=1e-5,5e-5,1e-4,5e-4 \
    --seeds 0,1,2 --results-dir results/tiny "$@"
$cb run --preset tiny --attack blended --defense cleanclip --set cleanclip.augmentation=autoaugment \
    --sweep defense.lr=1e-4,5e-4 --results-dir results/tiny "$@"
$cb run --preset tiny --attack all --defense filter-similarity,filter-kdistance --seeds 0,1,2 --results-dir results/tiny "$@"
$cb detect --preset tiny --attack all --detector all --seeds 0,1,2 --results-dir results/tiny
# the data-level detectors where poisoned pairs are rarer than a detector's k per reference batch
$cb run --preset tiny --attack all --defense none --set poison.count=30 --results-dir results/tiny-sparse-poison "$@"
$cb detect --preset tiny --attack all --detector kdistance,slof,dao,similarity --set poison.count=30 \
    --results-dir results/tiny-sparse-poison
$cb report --results-dir results/tiny-sparse-poison --out results/tiny-sparse-poison/report
$cb report --results-dir results/tiny --out results/tiny/report
mkdir -p results/reproduce/abd-table1-tiny results/reproduce/roclip-tiny-pretrain
$cb reproduce abd-table1 --results-dir results/reproduce/cells-tiny --out results/reproduce/abd-table1-tiny \
    > results/reproduce/abd-table1-tiny/stdout.txt
# RoCLIP's pre-training comparison on tiny-pretrain (every model from scratch), seeds 0-2
$cb reproduce roclip --seeds 0,1,2 --results-dir results/tiny-pretrain --out results/reproduce/roclip-tiny-pretrain "$@" \
    > results/reproduce/roclip-tiny-pretrain/stdout.txt
$cb report --results-dir results/tiny-pretrain --out results/tiny-pretrain/report
for attack in badnet blended wanet sig badclip label_consistent; do
    $cb show attack "$attack" --out "results/gallery/$attack.png"
done
