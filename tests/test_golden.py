"""Golden counts of a few micro cells: the stage code shared by every method (training loop,
evaluation, poisoning, data) must not change numbers without a ``STAGE_VERSIONS`` bump.

Regenerate after a deliberate change (bump the version of the stage whose code changed first):
``OMP_NUM_THREADS=1 .venv/bin/python tests/test_golden.py``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "micro.json"
CELLS = (("badnet", "none"), ("badnet", "finetune"), ("blended", "cleanclip"), ("sig", "roclip"))


def run_golden_cells(cache_dir: Path, results_dir: Path) -> dict:
    """Counts of every metric of the golden cells, with the code versions they were computed by."""
    import torch

    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.matrix import RunnerSettings
    from clipbench.plan import STAGE_VERSIONS, code_digests

    torch.set_num_threads(1)
    runner = RunnerSettings(str(cache_dir), str(results_dir), "cpu", False).cell_runner()
    cells = {}
    for attack, defense in CELLS:
        cell = resolve_cell(CellRequest(preset="micro", attack=attack, defense=defense, seed=1))
        result = runner.run_cell(cell)
        assert result["status"] == "ok", result.get("error")
        cells[f"{attack}/{defense}"] = {
            "code": code_digests(cell),
            "counts": {name: [m["successes"], m["total"]] for name, m in result["metrics"].items()},
        }
    return {"stage_versions": STAGE_VERSIONS, "cells": cells}


def test_golden_counts(fresh_cache_dir, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    measured = run_golden_cells(fresh_cache_dir, tmp_path / "results")
    if golden["stage_versions"] != measured["stage_versions"]:
        raise AssertionError("STAGE_VERSIONS changed since tests/golden/micro.json was written: regenerate it "
                             "(see this module's docstring)")
    for name, cell in measured["cells"].items():
        expected = golden["cells"][name]
        if cell["code"] != expected["code"]:
            raise AssertionError(f"{name}: the method's code changed since the golden file was written: regenerate it")
        assert cell["counts"] == expected["counts"], (
            f"{name}: numbers changed without a STAGE_VERSIONS bump; bump the version of the stage whose code "
            "changed, then regenerate tests/golden/micro.json")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(os.environ.get("CLIPBENCH_CACHE", Path(scratch) / "cache"))
        data = run_golden_cells(cache, Path(scratch) / "results")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
