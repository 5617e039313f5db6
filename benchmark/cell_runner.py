"""Run one cell as a chain of cached stages and write its result JSON:

``clean -> poison -> reference -> victim (post-training defenses) -> defense -> evaluation``.

The stages are in :mod:`clipbench.stages`; this module only chains them, reuses a finished
result of the same cell, and records a failure (a diverging stage, data a stage cannot use) in
the cell's result so that a matrix goes on with its other cells.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Optional

from .cache import ensure_writable
from .cells import Cell
from .errors import ClipbenchError
from .plan import code_digests, run_key
from .results import build_result, write_result
from .stages import Workspace
from .stages.clean import clean_model
from .stages.defense import defended_model, defense
from .stages.evaluation import clean_reference, evaluate
from .stages.poison import poison
from .stages.victim import victim


class CellRunner:
    """Runs cells in one :class:`Workspace` and writes their results to ``results_dir``."""

    def __init__(self, workspace: Workspace, results_dir: Path):
        self.ws = workspace
        self.results_dir = ensure_writable(results_dir, "results directory")

    def result_path(self, cell: Cell) -> Path:
        return self.results_dir / f"{cell.name}.json"

    def existing_result(self, cell: Cell) -> Optional[dict]:
        """A finished result of this exact cell (same config and code), if one is stored."""
        try:
            stored = json.loads(self.result_path(cell).read_text())
        except (OSError, ValueError):
            return None
        if isinstance(stored, dict) and stored.get("run_key") == run_key(cell) and stored.get("status") == "ok":
            return stored
        return None

    def run_cell(self, cell: Cell) -> dict:
        """Run (or reuse) every stage of ``cell`` and write its result JSON; failures are recorded."""
        if not self.ws.force:
            existing = self.existing_result(cell)
            if existing is not None:
                return existing
        ws, stages, artifacts = self.ws, {}, {}
        ws.scenario(cell)  # missing or corrupt data is an input error: it stops the run, nothing is recorded
        key = run_key(cell)
        try:
            clean = clean_model(ws, cell)
            stages["clean"], artifacts["clean"] = clean.summary(), clean.key
            poisoned = poison(ws, cell, clean)
            stages["poison"], artifacts["poison"] = poisoned.summary(), poisoned.key
            reference = clean_reference(ws, cell, clean, poisoned)
            stages["reference"], artifacts["reference"] = reference.summary(), reference.key
            victim_record = None
            if cell.defense_cls.stage == "post_training":
                victim_record = victim(ws, cell, clean, poisoned)
                stages["victim"], artifacts["victim"] = victim_record.summary(), victim_record.key
            defended = defense(ws, cell, clean, poisoned, victim_record)
            stages["defense"], artifacts["defense"] = defended.summary(), defended.key
            model = defended_model(ws, defended)
            metrics, eval_stats, classifier_key = evaluate(ws, cell, model, poisoned)
            stages["evaluation"] = {"cached": False, **eval_stats}
            artifacts["classifier"] = classifier_key
            result = build_result(cell, key, "ok", None, metrics, stages, artifacts, ws.device, ws.scenario(cell))
            result["clean_model_metrics"] = reference.meta["metrics"]
        except ClipbenchError as error:  # divergence, data a stage cannot use...: recorded; the matrix goes on
            result = build_result(cell, key, "failed", str(error), {}, stages, artifacts, ws.device, None)
        except (RuntimeError, ValueError, FloatingPointError) as error:
            result = build_result(cell, key, "failed", f"{type(error).__name__}: {error}", {}, stages,
                                  artifacts, ws.device, None, traceback.format_exc())
        result["code"] = code_digests(cell)
        write_result(self.result_path(cell), result)
        return result
