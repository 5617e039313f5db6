"""Wall time and peak memory of one ``clipbench run`` cell, cold and warm.

Cold: an empty cache (Fashion-MNIST conversion and pretraining of the clean model included).
Warm: the same cache, a fresh results folder, so every stage is reused and only evaluation runs.
Each run is a separate ``clipbench`` process; peak memory is that process's maximum RSS.

    python perf/bench_cell.py --attack badnet --defense finetune --out results/benchmarks/cell.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def current_commit() -> str | None:
    """The checkout's commit (``None`` outside git)."""
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip() or None


def provenance(commit: str | None) -> dict:
    """Where a measurement was taken: the machine and the commit that ran."""
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    return {"machine": machine, "git_commit": commit}


def emit(report: dict, out: Path | None) -> None:
    """Print the report as JSON and write it to ``out`` when given."""
    print(json.dumps(report, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")


def timed_run(args: list[str]) -> dict:
    """Run a command in a child process; return wall time, its peak RSS and exit code."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        os.execv(args[0], args)
    _, status, usage = os.wait4(pid, 0)
    return {"wall_s": round(time.perf_counter() - start, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "exit_code": os.waitstatus_to_exitcode(status)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attack", default="badnet")
    parser.add_argument("--defense", default="finetune")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    args = parser.parse_args()
    commit = current_commit()  # taken before the run: the code that ran, not what was committed meanwhile
    clipbench = shutil.which("clipbench") or str(Path(sys.executable).parent / "clipbench")
    work = Path(tempfile.mkdtemp(prefix="clipbench-bench-"))
    try:
        base = [clipbench, "run", "--preset", args.preset, "--attack", args.attack, "--defense", args.defense,
                "--cache-dir", str(work / "cache")]
        cold = timed_run(base + ["--results-dir", str(work / "results-cold")])
        warm = timed_run(base + ["--results-dir", str(work / "results-warm")])
        result_files = sorted((work / "results-cold").glob("*.json"))
        metrics = json.loads(result_files[0].read_text())["metrics"] if result_files else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "cell": {"preset": args.preset, "attack": args.attack, "defense": args.defense, "seed": 0},
        "cold": cold, "warm": warm,
        "metrics": {k: round(v["value"], 4) for k, v in metrics.items()},
        **provenance(commit),
    }
    emit(report, args.out)
    return 0 if cold["exit_code"] == 0 and warm["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
