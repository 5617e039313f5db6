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
from typing import Iterator, Optional

from .cache import ensure_writable
from .cells import Cell
from .distributed import is_main
from .errors import ClipbenchError
from .plan import code_digests, run_key
from .results import build_result, write_result
from .stages import StageRecord, Workspace
from .stages.clean import clean_model
from .stages.defense import defended_model, defense
from .stages.evaluation import clean_reference, evaluate
from .stages.poison import poison
from .stages.victim import victim


def filtered_rows(cell: Cell, defended: StageRecord, poisoned: StageRecord) -> Optional[dict]:
    """For a defense that dropped training rows (``filter-<detector>``): how many of the poisoned
    rows it dropped, read against the poison manifest, which the defense never saw."""
    import numpy as np

    from .stages.poison import build_attack

    selection = (defended.meta.get("extras") or {}).get("filter")
    if not selection or "dropped_rows" not in selection:
        return None
    poisoned_rows = np.asarray(build_attack(cell, poisoned)[1].rows, dtype=np.int64)
    dropped = np.asarray(selection["dropped_rows"], dtype=np.int64)
    hits = int(np.isin(poisoned_rows, dropped).sum())
    return {"detector": selection["detector"], "pairs": selection["pairs"], "dropped": int(len(dropped)),
            "poisoned": int(len(poisoned_rows)), "poisoned_dropped": hits,
            "recall": hits / len(poisoned_rows) if len(poisoned_rows) else None,
            "precision": hits / len(dropped) if len(dropped) else None,
            "definition": "recall: share of the poisoned rows the filter dropped; precision: share of the dropped "
                          "rows that were poisoned"}


def stored_result(results_dir: Path, cell: Cell) -> Optional[dict]:
    """The finished (``ok``) result of this exact cell (same config and code) in ``results_dir``, if any."""
    try:
        stored = json.loads((Path(results_dir) / f"{cell.name}.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(stored, dict) and stored.get("run_key") == run_key(cell) and stored.get("status") == "ok":
        return stored
    return None


def logit_scales(records: dict[str, StageRecord], evaluated) -> dict[str, Optional[float]]:
    """The CLIP temperature ``exp(logit_scale)`` of the clean model, the victim (post-training
    defenses) and the evaluated model: how far each is from a converged CLIP's 100."""
    from .models import checkpoint_logit_scale

    scales = {"clean": checkpoint_logit_scale(records["clean"].path)}
    if "victim" in records:
        scales["victim"] = checkpoint_logit_scale(records["victim"].path)
    scales["evaluated"] = float(evaluated.model.logit_scale.detach().exp())
    return scales


class CellRunner:
    """Runs cells in one :class:`Workspace` and writes their results to ``results_dir``."""

    def __init__(self, workspace: Workspace, results_dir: Path):
        self.ws = workspace
        self.results_dir = ensure_writable(results_dir, "results directory")

    def result_path(self, cell: Cell) -> Path:
        return self.results_dir / f"{cell.name}.json"

    def existing_result(self, cell: Cell) -> Optional[dict]:
        """A finished result of this exact cell (same config and code), if one is stored."""
        return stored_result(self.results_dir, cell)

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
            records = {}
            for stage, record in self.stage_records(cell):
                records[stage] = record
                stages[stage], artifacts[stage] = record.summary(), record.key
            reference, defended, poisoned = records["reference"], records["defense"], records["poison"]
            model = defended_model(ws, defended)
            metrics, eval_stats, classifier_key = evaluate(ws, cell, model, poisoned)
            stages["evaluation"] = {"cached": False, **eval_stats}
            artifacts["classifier"] = classifier_key
            if "linear_probe" in metrics:  # so that `clipbench cache gc` keeps it
                artifacts["probe"] = metrics["linear_probe"]["artifact"]
            result = build_result(cell, key, "ok", None, metrics, stages, artifacts, ws.device, ws.scenario(cell))
            result["clean_model_metrics"] = reference.meta["metrics"]
            result["logit_scale"] = logit_scales(records, model)
            selection = filtered_rows(cell, defended, poisoned)
            if selection is not None:
                result["filter"] = selection
        except ClipbenchError as error:  # divergence, data a stage cannot use...: recorded; the matrix goes on
            result = build_result(cell, key, "failed", str(error), {}, stages, artifacts, ws.device, None)
        except (RuntimeError, ValueError, FloatingPointError) as error:
            result = build_result(cell, key, "failed", f"{type(error).__name__}: {error}", {}, stages,
                                  artifacts, ws.device, None, traceback.format_exc())
        result["code"] = code_digests(cell)
        if is_main():  # under several ranks (a data-parallel stage), rank 0 writes
            write_result(self.result_path(cell), result)
        return result

    def record_failure(self, cell: Cell, error: str) -> dict:
        """Write a failed result for ``cell`` whose stages ran elsewhere (a cluster job that failed)."""
        result = build_result(cell, run_key(cell), "failed", error, {}, {}, {}, self.ws.device, None)
        result["code"] = code_digests(cell)
        if is_main():  # under several ranks (a data-parallel stage), rank 0 writes
            write_result(self.result_path(cell), result)
        return result

    def stage_records(self, cell: Cell, until: Optional[str] = None) -> Iterator[tuple[str, StageRecord]]:
        """Build or reuse the cell's stages in order, ``clean`` to ``defense`` (or to ``until``),
        yielding each stage's record."""
        ws = self.ws
        clean = clean_model(ws, cell)
        yield "clean", clean
        if until == "clean":
            return
        poisoned = poison(ws, cell, clean)
        yield "poison", poisoned
        if until == "poison":
            return
        yield "reference", clean_reference(ws, cell, clean, poisoned)
        if until == "reference":
            return
        victim_record = None
        if cell.defense_cls.stage == "post_training":
            victim_record = victim(ws, cell, clean, poisoned)
            yield "victim", victim_record
        if until == "victim":
            return
        yield "defense", defense(ws, cell, clean, poisoned, victim_record)

    def build_stage(self, cell: Cell, stage: str) -> dict:
        """Build (or reuse) the artifact of one ``stage`` of ``cell`` and its parents: what one job
        of a cluster's job graph runs. A failure raises (the job fails, and so do its dependents).

        The ``clean`` stage also builds the clean model's zero-shot classifier, which every
        ``reference`` job of that model reads."""
        self.ws.scenario(cell)
        records = dict(self.stage_records(cell, until=stage))
        if stage not in records:
            raise ClipbenchError(f"cell {cell.name} has no {stage} stage")
        record = records[stage]
        if stage == "clean":
            from .models import load_checkpoint
            from .stages.evaluation import classifier

            scenario = self.ws.scenario(cell)
            classifier(self.ws, load_checkpoint(record.path), tuple(scenario.classnames), tuple(scenario.templates))
        return record.summary()
