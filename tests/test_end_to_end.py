"""The micro preset through the CLI: result files, shared artifacts, caching and determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

CELLS = ("none", "finetune")
METRICS = ("ca_top1", "ca_top5", "asr", "asr_all", "ra")
TOP_LEVEL = (
    "schema_version", "clipbench_version", "git_commit", "timestamp", "versions", "device", "cell", "status",
    "run_key", "config", "artifacts", "metrics", "stages", "provenance",
)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


def artifact_folders(cache: Path) -> set[str]:
    return {str(p.relative_to(cache)) for p in cache.glob("*/*") if (p / "meta.json").exists()}


@pytest.fixture(scope="module")
def runs(cache_dir, tmp_path_factory):
    """Three CLI invocations: a run, the identical run again, and a forced rerun elsewhere."""
    from click.testing import CliRunner

    from clipbench.cli import cli

    base = tmp_path_factory.mktemp("e2e")
    results, forced_results = base / "results", base / "results-forced"
    args = ["run", "--preset", "micro", "--attack", "badnet", "--defense", ",".join(CELLS),
            "--cache-dir", str(cache_dir), "--device", "cpu"]
    runner = CliRunner()

    first = runner.invoke(cli, args + ["--results-dir", str(results)])
    after_first = snapshot(results)
    artifacts_after_first = artifact_folders(cache_dir)
    second = runner.invoke(cli, args + ["--results-dir", str(results)])
    after_second = snapshot(results)
    artifacts_after_second = artifact_folders(cache_dir)
    forced = runner.invoke(cli, args + ["--results-dir", str(forced_results), "--force"])
    return {
        "first": first, "second": second, "forced": forced, "results": results, "forced_results": forced_results,
        "after_first": after_first, "after_second": after_second,
        "artifacts_after_first": artifacts_after_first, "artifacts_after_second": artifacts_after_second,
    }


def load(folder: Path) -> dict[str, dict]:
    loaded = {}
    for path in folder.glob("*.json"):
        data = json.loads(path.read_text())
        loaded[data["cell"]["defense"]] = data
    return loaded


def test_run_exits_zero_and_prints_a_table(runs):
    for name in ("first", "second", "forced"):
        result = runs[name]
        assert result.exit_code == 0, (name, result.output, result.exception)
    output = runs["first"].stdout
    assert "CA top-1 %" in output and "ASR %" in output
    assert f"results: {runs['results']}" in output


def test_one_result_file_per_cell(runs):
    names = sorted(p.name for p in runs["results"].glob("*.json"))
    assert names == sorted(f"micro__clipbench-micro-vit__badnet__{d}__seed0.json" for d in CELLS)
    assert not list(runs["results"].glob(".*.tmp")), "no temporary files left behind"


def test_result_schema(runs):
    results = load(runs["results"])
    assert set(results) == set(CELLS)
    for defense, result in results.items():
        for key in TOP_LEVEL:
            assert key in result, (defense, key)
        assert result["status"] == "ok" and result["error"] is None
        assert result["schema_version"] == 1
        assert result["cell"] == {
            "preset": "micro", "model": "clipbench-micro-vit", "attack": "badnet", "defense": defense, "seed": 0,
            "name": f"micro__clipbench-micro-vit__badnet__{defense}__seed0",
        }
        assert result["config"]["defense"]["name"] == defense
        assert result["config"]["poison"]["count"] == 16
        assert result["versions"]["python"] and result["versions"]["torch"]
        assert result["device"]["type"] == "cpu"
        assert {"attack", "defense", "defense_source", "attack_source"} <= set(result["provenance"])
        assert len(result["run_key"]) == 16
        for metric in METRICS:
            record = result["metrics"][metric]
            assert set(record) >= {"value", "successes", "total", "ci95", "definition"}, metric
            assert record["total"] > 0 and 0 <= record["successes"] <= record["total"]
            assert math.isclose(record["value"], record["successes"] / record["total"])
            low, high = record["ci95"]
            assert 0.0 <= low <= record["value"] <= high <= 1.0
            assert record["definition"]
        assert result["metrics"]["ca_top1"]["total"] == 200
        assert result["metrics"]["asr"]["total"] == result["metrics"]["ra"]["total"] < 200
        for stage in ("clean", "poison", "victim", "defense", "evaluation"):
            assert stage in result["stages"], (defense, stage)
        for stage, record in result["stages"].items():
            assert record["wall_s"] >= 0 and record["peak_rss_mib"] > 0, (defense, stage)
        assert {"clean", "poison", "victim", "defense"} <= set(result["artifacts"])
        scales = result["logit_scale"]
        assert set(scales) == {"clean", "victim", "evaluated"} and all(1 <= v <= 100 for v in scales.values())
        if defense == "none":
            assert scales["evaluated"] == pytest.approx(scales["victim"]), "no defense evaluates the victim itself"
        else:
            assert scales["evaluated"] != scales["victim"], "fine-tuning trains the temperature"


def test_cells_share_clean_poison_and_victim_artifacts(runs):
    results = load(runs["results"])
    none, finetune = results["none"], results["finetune"]
    for stage in ("clean", "poison", "victim"):
        assert none["artifacts"][stage] == finetune["artifacts"][stage], stage
    assert none["artifacts"]["defense"] != finetune["artifacts"]["defense"]
    assert none["run_key"] != finetune["run_key"]
    # the second cell of the run found the shared stages already built
    for stage in ("clean", "poison", "victim"):
        assert finetune["stages"][stage]["cached"] is True, stage


def test_identical_rerun_recomputes_nothing(runs):
    assert runs["after_second"] == runs["after_first"], "the stored results are returned, not rewritten"
    assert runs["artifacts_after_second"] == runs["artifacts_after_first"]
    assert "CA top-1 %" in runs["second"].stdout


def test_forced_rerun_recomputes_every_stage_with_identical_metrics(runs):
    first, forced = load(runs["results"]), load(runs["forced_results"])
    assert set(forced) == set(CELLS)
    for defense in CELLS:
        assert forced[defense]["status"] == "ok"
        assert forced[defense]["run_key"] == first[defense]["run_key"]
        assert forced[defense]["artifacts"] == first[defense]["artifacts"]
        assert forced[defense]["stages"]["defense"]["cached"] is False
        assert forced[defense]["metrics"] == first[defense]["metrics"], defense
    # the first cell of the forced run rebuilt every cached stage
    for stage, record in forced[CELLS[0]]["stages"].items():
        assert record["cached"] is False, stage


def test_results_and_artifacts_honour_the_umask(runs, cache_dir):
    """A lab-shared cache or results folder is readable by whoever the user's umask lets read it."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    written = list(runs["results"].glob("*.json"))
    for stage in ("clean", "poison", "reference", "victim", "defense", "classifier"):
        written += [p for p in (cache_dir / stage).glob("*/*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in written)
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, (path, oct(path.stat().st_mode))
