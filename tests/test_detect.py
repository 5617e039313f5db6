"""``clipbench detect`` and the filter-then-train compositions: results scored against the
manifest, reuse, bad input before compute, and the family names of the defense registry."""

from __future__ import annotations

import json

import pytest
from test_cli_errors import check_one_line_error

from clipbench.code_digest import method_digest
from clipbench.errors import ClipbenchError
from clipbench.registry import DEFENSES


def test_detect_writes_one_scored_result_per_attack_detector_and_seed(cli_subprocess, tmp_path, cache_dir):
    results = tmp_path / "results"
    args = ["detect", "--preset", "micro", "--attack", "badnet", "--detector", "kdistance,similarity",
            "--results-dir", results, "--cache-dir", cache_dir]
    done = cli_subprocess(args, timeout=600)
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in results.glob("*.json"))
    assert files == ["micro__clipbench-micro-vit__badnet__detect-kdistance__seed0.json",
                     "micro__clipbench-micro-vit__badnet__detect-similarity__seed0.json"]
    result = json.loads((results / files[0]).read_text())
    assert result["pairs"] == 256 and 0 < result["poisoned"] < 256
    for name in ("auroc", "auprc", "tpr_at_fpr_1", "tpr_at_fpr_5"):
        metric = result["metrics"][name]
        assert 0 <= metric["ci95"][0] <= metric["value"] <= metric["ci95"][1] <= 1 and metric["definition"]
    assert result["detector"]["config"] == {"k": 16, "reference_size": 1024}
    assert set(result["provenance"]["stages"]) == {"clean", "poison", "victim"} and result["provenance"]["detector_code"]
    stamps = [p.stat().st_mtime_ns for p in sorted(results.glob("*.json"))]
    again = cli_subprocess(args, timeout=600)
    assert again.returncode == 0 and [p.stat().st_mtime_ns for p in sorted(results.glob("*.json"))] == stamps
    changed = cli_subprocess(args + ["--set", "detector.k=8"], timeout=600)  # similarity has no k: left alone
    assert changed.returncode == 0, changed.stderr
    assert json.loads((results / files[0]).read_text())["detector"]["config"]["k"] == 8
    assert (results / files[1]).stat().st_mtime_ns == stamps[1]
    report = cli_subprocess(["report", "--results-dir", results, "--out", tmp_path / "report"], timeout=300)
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "report" / "detection_auroc.md").read_text()
    assert "kdistance" in table and "similarity" in table and "badnet" in table
    assert (tmp_path / "report" / "roc_curves.png").stat().st_size > 0


def test_detect_runs_an_input_level_detector_on_clean_and_triggered_images(cli_subprocess, tmp_path, cache_dir):
    results = tmp_path / "results"
    done = cli_subprocess(["detect", "--preset", "micro", "--attack", "badnet", "--detector", "strip", "--set",
                           "detector.perturbations=4", "--results-dir", results, "--cache-dir", cache_dir], timeout=600)
    assert done.returncode == 0, done.stderr
    (path,) = results.glob("*.json")
    result = json.loads(path.read_text())
    assert result["cell"]["level"] == "input" and result["triggered"] * 2 == result["images"] > 0
    assert 0 <= result["metrics"]["auroc"]["value"] <= 1


def test_detect_scores_the_clean_model_and_the_victim_with_a_model_level_detector(cli_subprocess, tmp_path, cache_dir):
    results = tmp_path / "results"
    done = cli_subprocess(["detect", "--preset", "micro", "--attack", "badnet", "--detector", "decree",
                           "--set", "detector.max_epochs=2", "--set", "detector.shadow_images=64",
                           "--results-dir", results, "--cache-dir", cache_dir], timeout=600)
    assert done.returncode == 0, done.stderr
    (path,) = results.glob("*.json")
    result = json.loads(path.read_text())
    assert [m["role"] for m in result["models"]] == ["clean", "victim"]
    assert all(0 <= m["score"] <= 1 and "pl1" in m["details"] for m in result["models"])
    report = cli_subprocess(["report", "--results-dir", results, "--out", tmp_path / "report"], timeout=300)
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "report" / "detection_models.md").read_text()
    assert "decree" in table and "victim, badnet" in table and "(1 vs 1)" in table


@pytest.mark.parametrize("extra,fragment", [
    (["--detector", "kdistanse"], "Did you mean 'kdistance'?"),
    (["--set", "detector.k=0"], "detector.k must be >= 1, got 0"),
    (["--set", "detector.k=600"], "detector.k=600 needs more than 600 reference points"),
    (["--set", "detector.nosuch=1"], "--set detector.nosuch: no selected detector (kdistance) has this key; their keys: k, reference_size"),
    (["--detector", "similarity", "--set", "detector.k=3"], "no selected detector (similarity) has this key; their keys: none"),
    (["--detector", "strip", "--set", "scenario.defense_size=0"], "it needs scenario.defense_size > 0"),
])
def test_detect_bad_input_is_one_line_before_compute(extra, fragment, cli_subprocess, tmp_path):
    results, cache = tmp_path / "results", tmp_path / "cache"
    done = cli_subprocess(["detect", "--preset", "micro", "--detector", "kdistance", "--results-dir", results,
                           "--cache-dir", cache, *extra])
    check_one_line_error(done, fragment)
    assert not results.exists() or not any(results.iterdir())
    assert not cache.exists() or not any(cache.rglob("*.safetensors"))


def test_a_changed_setting_gets_its_own_detection_result(cli_subprocess, tmp_path, cache_dir):
    results = tmp_path / "results"
    base = ["detect", "--preset", "micro", "--attack", "badnet", "--detector", "similarity", "--results-dir", results,
            "--cache-dir", cache_dir]
    assert cli_subprocess(base, timeout=600).returncode == 0
    assert cli_subprocess(base + ["--set", "poison.count=32"], timeout=600).returncode == 0
    results_by_name = {p.name: json.loads(p.read_text()) for p in results.glob("*.json")}
    assert len(results_by_name) == 2  # the override's hash names the second file
    assert sorted(r["poisoned"] for r in results_by_name.values()) == [16, 32]


def test_a_family_name_is_a_set_section_and_decree_needs_its_shadow_batch():
    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.registry import DETECTORS

    cell = resolve_cell(CellRequest(preset="micro", attack="badnet", defense="filter-similarity",
                                    overrides={"filter-similarity": {"drop_fraction": "0.2"}}))
    assert cell.defense_config.drop_fraction == 0.2
    decree = DETECTORS.get("decree")
    scenario = resolve_cell(CellRequest(preset="micro", attack="badnet", defense="none",
                                        overrides={"scenario": {"defense_size": "16"}})).preset.scenario
    with pytest.raises(ClipbenchError, match="fewer than detector.batch_size"):
        decree.check_scenario(decree.default_config(), scenario)


def test_filter_defenses_are_a_family_of_the_defense_registry():
    assert "filter-kdistance" in DEFENSES.family_names() and "filter-similarity" in DEFENSES.family_names()
    assert not any(name.startswith("filter-") for name in DEFENSES.resolve_list("all"))  # 'all' leaves them out
    kdistance, similarity = DEFENSES.get("filter-kdistance"), DEFENSES.get("filter-similarity")
    assert kdistance.stage == similarity.stage == "training_time" and kdistance.registry_name == "filter-kdistance"
    assert DEFENSES.get("filter-kdistance") is kdistance  # built once
    assert method_digest(kdistance) != method_digest(similarity)  # each digest covers its detector's code
    with pytest.raises(ClipbenchError, match="unknown defense 'filter-nope'.*filter-slof"):
        DEFENSES.get("filter-nope")


def test_a_filter_defense_drops_its_share_of_pairs(cache_dir, tmp_path):
    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.matrix import RunnerSettings

    runner = RunnerSettings(str(cache_dir), str(tmp_path / "results"), "cpu", False).cell_runner()
    cell = resolve_cell(CellRequest(preset="micro", attack="badnet", defense="filter-similarity",
                                    overrides={"defense": {"drop_fraction": "0.25"}}))
    result = runner.run_cell(cell)
    assert result["status"] == "ok", result.get("error")
    key = result["stages"]["defense"]["key"]
    (meta,) = [json.loads(p.read_text()) for p in cache_dir.rglob("meta.json") if p.parent.name == key]
    selection = meta["extras"]["filter"]
    assert (selection["detector"], selection["pairs"], selection["dropped"], len(selection["dropped_rows"])) == (
        "similarity", 256, 64, 64)
    scored = result["filter"]
    assert scored["dropped"] == 64 and scored["poisoned"] == 16 and 0 <= scored["poisoned_dropped"] <= 16
    assert scored["recall"] == scored["poisoned_dropped"] / 16 and scored["precision"] == scored["poisoned_dropped"] / 64


def test_a_detector_not_run_on_an_attack_is_a_dash_in_the_detection_table():
    import pandas as pd

    from clipbench.detection_report import detection_table

    frame = pd.DataFrame([{"attack": "badnet", "detector": "kdistance", "seed": s, "metric": "auroc", "value": v}
                          for s, v in ((0, 0.6), (1, 0.8))] +
                         [{"attack": "sig", "detector": "strip", "seed": 0, "metric": "auroc", "value": 0.5}])
    table = detection_table(frame, "auroc")
    assert table.loc["badnet", "kdistance"].startswith("70.0 ± 14.1 (n=2)")
    assert table.loc["badnet", "strip"] == "-" and table.loc["sig", "kdistance"] == "-"
