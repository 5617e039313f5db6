"""Wall time and peak memory of the full attack x defense matrix of a preset, from a cold cache.

The cache folder must be empty or absent (that is what "cold" means: Fashion-MNIST conversion and
the clean model's pretraining included). The plan (cells, artifacts, trainings) is taken from
``clipbench run --dry-run`` before the run; the run itself is one ``clipbench`` process whose peak
RSS is reported. The result files stay in ``--results-dir`` and the cache stays in
``--cache-dir``, so the run doubles as seed 0 of a leaderboard.

    python perf/bench_matrix.py --cache-dir ~/.cache/clipbench-cold --results-dir results/tiny \\
        --out results/benchmarks/matrix_tiny_cold.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench_cell import current_commit, emit, provenance, timed_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--attack", default="all")
    parser.add_argument("--defense", default="all")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, required=True, help="must be empty or absent")
    parser.add_argument("--results-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    args = parser.parse_args()
    cache = args.cache_dir.expanduser()
    if cache.exists() and any(cache.iterdir()):
        print(f"bench_matrix: error: {cache} is not empty; a cold run needs an empty cache folder", file=sys.stderr)
        return 2
    commit = current_commit()  # taken before the run: the code that ran, not what was committed meanwhile
    clipbench = shutil.which("clipbench") or str(Path(sys.executable).parent / "clipbench")
    base = [clipbench, "run", "--preset", args.preset, "--attack", args.attack, "--defense", args.defense,
            "--seeds", args.seed, "--cache-dir", str(cache), "--results-dir", str(args.results_dir)]
    dry = subprocess.run(base + ["--dry-run"], capture_output=True, text=True)
    if dry.returncode != 0:
        print(dry.stderr.strip() or dry.stdout.strip(), file=sys.stderr)
        return dry.returncode
    plan_line = next((line for line in dry.stdout.splitlines() if " trainings" in line), "")
    run = timed_run(base + ["--workers", str(args.workers)])
    cells = []
    for path in sorted(args.results_dir.glob(f"{args.preset}__*__seed{args.seed}.json")):
        result = json.loads(path.read_text())
        cells.append({"file": path.name, "status": result.get("status")})
    report = {
        "matrix": {"preset": args.preset, "attacks": args.attack, "defenses": args.defense, "seed": args.seed,
                   "workers": args.workers},
        "plan": plan_line,
        "cold": run,
        "cells_ok": sum(1 for c in cells if c["status"] == "ok"),
        "cells_failed": [c["file"] for c in cells if c["status"] != "ok"],
        **provenance(commit),
    }
    emit(report, args.out)
    return 0 if run["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
