"""The matrix: planning, worker processes, submitit, failure isolation, kill-and-resume, concurrent
runs and the cache commands, all on the micro preset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def results_in(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def micro_run(*extra) -> list[str]:
    return [sys.executable, "-m", "clipbench.cli", "run", "--preset", "micro", *[str(e) for e in extra]]


def test_dry_run_plans_shared_artifacts_and_writes_nothing(cli_runner, fresh_cache_dir, tmp_path):
    done = cli_runner(["run", "--preset", "micro", "--attack", "badnet,sig", "--defense", "none,finetune,roclip",
                       "--cache-dir", fresh_cache_dir, "--results-dir", tmp_path / "r", "--dry-run"])
    assert done.exit_code == 0, done.output
    # 2 attacks: 1 clean model + 2 victims + 2 x (finetune, roclip) trainings = 7
    assert "6 cells" in done.output
    assert "7 trainings (1 clean, 2 victims, 4 defenses), 7 not cached" in done.output
    assert done.output.count("victim badnet seed 0") == 1
    assert not (tmp_path / "r").exists()
    assert not list(fresh_cache_dir.glob("clean/*"))


def test_workers_and_sequential_runs_give_identical_metrics(cli_runner, cache_dir, tmp_path):
    args = ["run", "--preset", "micro", "--attack", "badnet,blended", "--defense", "none", "--cache-dir", cache_dir]
    assert cli_runner(args + ["--results-dir", tmp_path / "seq"]).exit_code == 0
    done = subprocess.run(micro_run("--attack", "badnet,blended", "--defense", "none", "--cache-dir", cache_dir,
                                    "--results-dir", tmp_path / "par", "--workers", "2", "--force"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    sequential = {r["cell"]["name"]: r["metrics"] for r in results_in(tmp_path / "seq")}
    parallel = {r["cell"]["name"]: r["metrics"] for r in results_in(tmp_path / "par")}
    assert sequential == parallel and len(parallel) == 2


def test_submitit_local_executor_runs_cells(cache_dir, tmp_path):
    pytest.importorskip("submitit")
    done = subprocess.run(micro_run("--attack", "badnet", "--defense", "none,finetune", "--cache-dir", cache_dir,
                                    "--results-dir", tmp_path / "r", "--executor", "submitit-local"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {r["cell"]["defense"] for r in results_in(tmp_path / "r")} == {"none", "finetune"}


def test_diverging_cell_is_recorded_and_the_matrix_goes_on(cache_dir, tmp_path):
    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.matrix import RunnerSettings, run_matrix

    diverging = resolve_cell(CellRequest("micro", "badnet", "finetune", seed=7,
                                         overrides={"defense": {"lr": "1e30", "warmup_steps": "0"}}))
    healthy = resolve_cell(CellRequest("micro", "badnet", "none", seed=7))
    results = run_matrix([diverging, healthy], RunnerSettings(str(cache_dir), str(tmp_path), "cpu", False))
    assert [r["status"] for r in results] == ["failed", "ok"]
    assert "non-finite loss" in results[0]["error"]
    stored = {r["cell"]["defense"]: r["status"] for r in results_in(tmp_path)}
    assert stored == {"finetune": "failed", "none": "ok"}


def test_kill_and_resume_finishes_without_redoing_finished_stages(fresh_cache_dir, tmp_path):
    args = micro_run("--attack", "badnet", "--defense", "none,finetune", "--seed", "3", "--cache-dir", fresh_cache_dir,
                     "--results-dir", tmp_path / "r", "--set", "victim.epochs=40")
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(fresh_cache_dir.glob("victim/.tmp-*")):
        time.sleep(0.2)  # wait until the victim is being trained
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert list(fresh_cache_dir.glob("clean/*/meta.json")), "the clean model finished before the kill"
    assert not list(fresh_cache_dir.glob("victim/*/meta.json")), "the killed victim is not taken as finished"
    clean_meta = next(fresh_cache_dir.glob("clean/*/meta.json")).read_text()
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert next(fresh_cache_dir.glob("clean/*/meta.json")).read_text() == clean_meta, "the clean model was reused"
    results = results_in(tmp_path / "r")
    assert len(results) == 2 and all(r["status"] == "ok" for r in results)
    assert all(r["stages"]["clean"]["cached"] for r in results)
    assert not list((tmp_path / "r").glob(".*")), "no temporary result files are left"


def test_two_concurrent_runs_compute_each_artifact_once(fresh_cache_dir, tmp_path):
    common = ["--attack", "badnet", "--seed", "5", "--cache-dir", fresh_cache_dir]
    first = subprocess.Popen(micro_run(*common, "--defense", "none,finetune", "--results-dir", tmp_path / "a"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(micro_run(*common, "--defense", "finetune,cleanclip", "--results-dir", tmp_path / "b"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert second.wait(timeout=300) == 0, second.stderr.read()[-2000:]
    results = results_in(tmp_path / "a") + results_in(tmp_path / "b")
    built: dict[tuple[str, str], int] = {}
    for result in results:
        for stage in ("clean", "poison", "victim", "defense"):
            info = result["stages"][stage]
            built[(stage, info["key"])] = built.get((stage, info["key"]), 0) + (0 if info["cached"] else 1)
    assert all(count == 1 for count in built.values()), built
    assert len(list(fresh_cache_dir.glob("victim/*/meta.json"))) == 1


def test_cache_ls_verify_and_gc(cli_runner, fresh_cache_dir, tmp_path):
    assert cli_runner(["run", "--preset", "micro", "--attack", "badnet", "--defense", "finetune", "--seed", "9",
                       "--cache-dir", fresh_cache_dir, "--results-dir", tmp_path / "r"]).exit_code == 0
    listing = cli_runner(["cache", "ls", "--cache-dir", fresh_cache_dir])
    assert listing.exit_code == 0 and "victim" in listing.output and "clean" in listing.output
    assert cli_runner(["cache", "verify", "--cache-dir", fresh_cache_dir]).exit_code == 0
    weights = next(fresh_cache_dir.glob("victim/*/model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    verify = cli_runner(["cache", "verify", "--cache-dir", fresh_cache_dir])
    assert verify.exit_code == 1 and not weights.parent.exists(), "a mismatching artifact is removed, to be recomputed"
    orphan = fresh_cache_dir / "victim" / "0123456789abcdef"
    orphan.mkdir()
    (orphan / "meta.json").write_text("{}")
    gc = cli_runner(["cache", "gc", "--cache-dir", fresh_cache_dir, "--results-dir", tmp_path / "r"])
    assert gc.exit_code == 0 and not orphan.exists()
    assert list(fresh_cache_dir.glob("defense/*/meta.json")), "artifacts named by results are kept"
