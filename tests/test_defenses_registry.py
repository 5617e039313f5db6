"""Every registered defense (new ones picked up automatically) runs a micro cell end to end."""

from __future__ import annotations

import pytest
import torch

from clipbench.cells import CellRequest, resolve_cell
from clipbench.registry import DEFENSES

DEFENSE_NAMES = DEFENSES.names() + DEFENSES.family_names()  # filter-<detector> compositions too
METRICS = ("ca_top1", "ca_top5", "asr", "asr_all", "ra")


@pytest.fixture(scope="module")
def runner(cache_dir, tmp_path_factory):
    from clipbench.matrix import RunnerSettings

    return RunnerSettings(str(cache_dir), str(tmp_path_factory.mktemp("defense-results")), "cpu", False).cell_runner()


@pytest.mark.parametrize("name", DEFENSE_NAMES)
def test_defense_class_contract(name):
    cls = DEFENSES.get(name)
    assert cls.stage in ("post_training", "training_time")
    assert cls.description and cls.source
    assert cls.registry_name == name
    config = cls.default_config()
    cls(config)  # the defaults validate


@pytest.mark.parametrize("name", DEFENSE_NAMES)
def test_defense_runs_a_micro_cell(name, runner):
    cell = resolve_cell(CellRequest(preset="micro", attack="badnet", defense=name))
    result = runner.run_cell(cell)
    assert result["status"] == "ok", result.get("error")
    assert runner.result_path(cell).exists()
    for metric in METRICS:
        record = result["metrics"][metric]
        assert record["total"] > 0 and 0.0 <= record["value"] <= 1.0, metric
    assert result["config"]["defense"]["stage"] == cell.defense_cls.stage
    assert "defense" in result["artifacts"] and "evaluation" in result["stages"]
    if cell.defense_cls.stage == "post_training":
        assert "victim" in result["artifacts"] and "victim" in result["stages"]
    else:
        assert "victim" not in result["artifacts"] and "victim" not in result["stages"]
        assert "clean" in result["artifacts"] and "poison" in result["artifacts"]


def test_training_time_defense_skips_the_victim(runner, monkeypatch):
    """A training-time defense hangs off the clean model and the poisoned manifest, not a victim."""
    import dataclasses

    from clipbench.defenses.base import Defense

    seen = {}

    class PassThroughTrainingTime(Defense):
        Config = dataclasses.make_dataclass("PassThroughConfig", [], frozen=True)
        stage = "training_time"
        description = "test double"
        source = "tests"

        def run(self, context):
            seen["rows"] = context.data.trigger_rows
            seen["trigger"] = context.data.trigger
            seen["captions"] = context.data.captions
            seen["pairs"] = len(context.pairs)
            return None

    monkeypatch.setitem(DEFENSES._items, "test-training-time", PassThroughTrainingTime)
    cell = resolve_cell(CellRequest(preset="micro", attack="badnet", defense="test-training-time"))
    import clipbench.cell_runner as cell_runner

    called = []
    monkeypatch.setattr(cell_runner, "victim", lambda *args, **kwargs: called.append(args) or None)
    evaluated = []
    original_evaluate = cell_runner.evaluate

    def recording_evaluate(ws, cell, clip, poison):
        evaluated.append(clip)
        return original_evaluate(ws, cell, clip, poison)

    monkeypatch.setattr(cell_runner, "evaluate", recording_evaluate)
    result = runner.run_cell(cell)
    assert result["status"] == "ok", result.get("error")
    # the defense returned its input unchanged, so the clean model is what gets evaluated
    from clipbench.models import load_checkpoint

    clean_state = load_checkpoint(runner.ws.store.path("clean", result["artifacts"]["clean"])).model.state_dict()
    assert evaluated
    for clip in evaluated:
        state = clip.model.state_dict()
        assert all(torch.equal(state[k], clean_state[k]) for k in clean_state)
    assert not called, "no victim is trained for a training-time defense"
    assert "victim" not in result["artifacts"]
    assert seen["pairs"] == cell.preset.scenario.victim_size
    assert len(seen["rows"]) == cell.preset.poison.count and seen["trigger"] is not None
    assert all("bag" in seen["captions"][int(row)] for row in seen["rows"])
