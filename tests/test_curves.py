"""Budget sweeps (``run --sweep``), their CA-ASR curves and the matched-budget table of ``report``."""

from __future__ import annotations

import json
import math

import pytest

from clipbench.cells import CellRequest, resolve_cell
from clipbench.curves import curve_points, lowest_asr_within, matched_budget, matched_table
from clipbench.errors import ClipbenchError
from clipbench.report import load_results, long_form, pivot
from clipbench.sweep import expand, parse_sweep


def _metric(value: float) -> dict:
    return {"value": value, "successes": round(value * 1000), "total": 1000, "ci95": [value, value], "definition": "x"}


def fake(attack: str, defense: str, seed: int, ca: float, asr: float, lr: float | None = None,
         swept: bool = False, stage: str = "post_training") -> dict:
    """A result JSON as a cell writes it; ``swept`` marks a point of a ``defense.lr`` sweep."""
    overrides = {"defense": {"lr": str(lr)}} if swept else {}
    cell = {"preset": "micro", "model": "m", "attack": attack, "defense": defense, "seed": seed,
            "name": f"{attack}__{defense}__{seed}__{lr}__{swept}"}
    if swept:
        cell["sweep"] = {"key": "defense.lr", "value": lr}
    defense_config = {"name": defense, "stage": stage, **({"lr": lr} if lr is not None else {})}
    return {"schema_version": 1, "status": "ok", "error": None, "cell": cell,
            "metrics": {"ca_top1": _metric(ca), "asr": _metric(asr), "asr_all": _metric(asr), "ra": _metric(1 - asr)},
            "stages": {"defense": {"wall_s": 1.0}}, "provenance": {"defense": "official method"},
            "config": {"overrides": overrides, "pretrained": None, "defense": defense_config}}


def test_lowest_asr_is_interpolated_where_the_curve_crosses_the_allowed_accuracy():
    line = [(0.86, 0.99), (0.855, 0.50), (0.84, 0.10)]
    asr, crossed = lowest_asr_within(line, floor=0.85)
    assert crossed
    assert asr == pytest.approx(0.50 - (0.005 / 0.015) * 0.40)  # a third of the way from 0.855 to 0.84


def test_a_curve_that_keeps_its_accuracy_is_not_reached_and_one_that_never_does_has_no_value():
    assert lowest_asr_within([(0.86, 0.9), (0.86, 0.4)], floor=0.85) == (0.4, False)
    asr, crossed = lowest_asr_within([(0.80, 0.1), (0.70, 0.0)], floor=0.85)
    assert math.isnan(asr) and crossed


def test_a_non_monotone_curve_takes_its_lowest_admissible_point():
    line = [(0.86, 0.9), (0.80, 0.1), (0.855, 0.3)]  # dips below the floor, then comes back above it
    asr, crossed = lowest_asr_within(line, floor=0.85)
    assert crossed and asr == pytest.approx(0.1 + (0.05 / 0.055) * 0.2)  # where it climbs back across the floor


def _sweep_results() -> list[dict]:
    results = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        results.append(fake("badnet", "none", seed, 0.86, 0.99))
        results.append(fake("badnet", "finetune", seed, 0.855, 0.60 + shift, lr=5e-4))  # the method's own budget
        results.append(fake("badnet", "finetune", seed, 0.858, 0.90 + shift, lr=1e-4, swept=True))
        results.append(fake("badnet", "finetune", seed, 0.84, 0.20 + shift, lr=1e-3, swept=True))
        results.append(fake("badnet", "roclip", seed, 0.75, 0.01, stage="training_time"))
        results.append(fake("badnet", "safeclip", seed, 0.74, 0.02, lr=1e-4, swept=True, stage="training_time"))
        results.append(fake("badnet", "safeclip", seed, 0.73, 0.01, lr=5e-4, swept=True, stage="training_time"))
    return results


def test_curve_points_take_the_own_budget_from_the_config_and_anchor_on_the_victim():
    points = curve_points(_sweep_results())
    finetune = points[(points["defense"] == "finetune") & (points["seed"] == 0)].sort_values("budget")
    assert list(finetune["budget"]) == [1e-4, 5e-4, 1e-3]
    assert list(finetune["point"]) == ["sweep", "own", "sweep"]
    assert set(points[points["point"] == "victim"]["seed"]) == {0, 1}
    assert "roclip" not in set(points["defense"]), "a defense that was not swept has no curve"


def test_matched_budget_interpolates_per_seed_and_training_time_curves_have_no_victim_anchor():
    matched = matched_budget(curve_points(_sweep_results()), ca_loss=0.01)
    finetune = matched[matched["defense"] == "finetune"].set_index("seed")
    # seed 0: victim (0.86, 0.99) -> 1e-4 (0.858, 0.90) -> 5e-4 (0.855, 0.60) -> 1e-3 (0.84, 0.20); floor 0.85
    assert finetune.loc[0, "asr"] == pytest.approx(0.60 - (0.005 / 0.015) * 0.40)
    assert finetune.loc[0, "reached"]
    safeclip = matched[matched["defense"] == "safeclip"]
    assert safeclip["asr"].isna().all(), "no SafeCLIP point keeps CA within one point of the victim"
    table = matched_table(matched)
    assert table.loc["badnet", "finetune (defense.lr)"].startswith("47.7 ± 1.4 (n=2)")
    assert table.loc["badnet", "safeclip (defense.lr)"] == "-"


def test_leaderboard_tables_keep_each_method_at_its_own_budget(tmp_path):
    for i, result in enumerate(_sweep_results()):
        (tmp_path / f"{i}.json").write_text(json.dumps(result))
    frame = long_form(load_results(tmp_path))
    assert frame["setting"].nunique() == 1, "a sweep's own value does not make a new setting"
    table = pivot(frame, "asr")
    assert table.loc["badnet", "finetune"] == "61.0 ± 1.4 (n=2)"


def test_report_writes_the_matched_table_and_the_curves(cli_runner, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for i, result in enumerate(_sweep_results()):
        (results / f"{i}.json").write_text(json.dumps(result))
    done = cli_runner(["report", "--results-dir", results, "--out", tmp_path / "out", "--ca-loss", "2"])
    assert done.exit_code == 0, done.output
    out = tmp_path / "out"
    assert (out / "tradeoff_curves.png").stat().st_size > 1000
    assert "finetune (defense.lr)" in (out / "matched_budget.md").read_text()
    page = (out / "index.html").read_text()
    assert "Budget sweeps: clean accuracy against ASR" in page and "ASR at matched budget: at most 2 point(s)" in page


def test_sweep_expands_only_the_defenses_it_reaches():
    requests = [CellRequest(preset="micro", attack="badnet", defense=d, seed=0) for d in ("none", "finetune", "cleanclip")]
    cells = [resolve_cell(r) for r in expand(requests, parse_sweep("finetune.lr=1e-5,1e-3"))]
    assert [(c.request.defense, c.sweep_point()) for c in cells] == [
        ("none", None), ("finetune", {"key": "finetune.lr", "value": 1e-5}),
        ("finetune", {"key": "finetune.lr", "value": 1e-3}), ("cleanclip", None)]
    assert [c.defense_config.lr for c in cells if c.request.defense == "finetune"] == [1e-5, 1e-3]
    assert len({c.name for c in cells}) == 4
    same_value = resolve_cell(CellRequest(preset="micro", attack="badnet", defense="finetune", seed=0,
                                          overrides={"finetune": {"lr": "1e-5"}}))
    assert same_value.name != cells[1].name, "a sweep point is a cell apart from the same --set value"


@pytest.mark.parametrize("text, message", [
    ("defense.lr=1e-5", "at least two values"),
    ("victim.lr=1e-5,1e-4", "section must be 'defense'"),
    ("lr=1,2", "expected section.key"),
])
def test_bad_sweeps_are_one_clear_error(text, message):
    with pytest.raises(ClipbenchError, match=message):
        parse_sweep(text)


def test_a_sweep_no_defense_has_or_one_that_repeats_a_set_value_is_refused():
    none = [CellRequest(preset="micro", attack="badnet", defense="none", seed=0)]
    with pytest.raises(ClipbenchError, match="no selected defense"):
        expand(none, parse_sweep("defense.lr=1e-5,1e-4"))
    abd = [CellRequest(preset="micro", attack="badnet", defense="abd", seed=0)]
    with pytest.raises(ClipbenchError, match="not a number"):
        expand(abd, parse_sweep("abd.position=lower_right,random"))
    both = [CellRequest(preset="micro", attack="badnet", defense="finetune", seed=0, overrides={"defense": {"lr": "1e-4"}})]
    with pytest.raises(ClipbenchError, match="both set"):
        expand(both, parse_sweep("defense.lr=1e-5,1e-4"))


def test_a_swept_run_on_micro_reports_its_curve(cli_runner, cache_dir, tmp_path):
    results = tmp_path / "results"
    done = cli_runner(["run", "--preset", "micro", "--attack", "badnet", "--defense", "none,finetune",
                       "--sweep", "finetune.lr=1e-5,1e-3", "--cache-dir", cache_dir, "--results-dir", results])
    assert done.exit_code == 0, done.output
    stored = load_results(results)
    assert sorted((r["cell"]["defense"], (r["cell"].get("sweep") or {}).get("value")) for r in stored) == [
        ("finetune", 1e-5), ("finetune", 1e-3), ("none", None)]
    points = curve_points(stored)
    assert len(points[points["defense"] == "finetune"]) == 2 and len(points[points["point"] == "victim"]) == 1
    done = cli_runner(["report", "--results-dir", results, "--out", tmp_path / "report"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "report" / "matched_budget.md").exists()


def test_only_swept_seeds_have_curves():
    """Seed 0 was swept; seed 1 has only the method's own cell and its victim: no curve for seed 1."""
    results = [fake("badnet", "none", 0, 0.87, 0.97), fake("badnet", "none", 1, 0.86, 0.98),
               fake("badnet", "finetune", 0, 0.87, 0.50, lr=5e-4), fake("badnet", "finetune", 1, 0.86, 0.55, lr=5e-4),
               fake("badnet", "finetune", 0, 0.87, 0.90, lr=1e-4, swept=True)]
    points = curve_points(results)
    assert set(points["seed"]) == {0}
    assert sorted(points["point"]) == ["own", "sweep", "victim"]
    table = matched_budget(points, 0.01)
    assert set(table["seed"]) == {0}
