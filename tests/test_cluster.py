"""The matrix as a graph of cluster jobs: one job per artifact still to compute, each after the
jobs of its parents; run through submitit against fake ``sbatch``/``sacct``/``scancel``/``srun``
commands (``tests/fake_slurm.py``), so the real submission path runs without a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import fake_slurm
import pytest

pytest.importorskip("submitit")


def graph_of(cells, cache: Path, finished=None):
    from clipbench.job_graph import build_job_graph

    return build_job_graph(cells, cache, finished)


def cells_of(preset: str, attacks: str, defenses: str, seeds=(0,), overrides=None):
    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.registry import ATTACKS, DEFENSES

    return [resolve_cell(CellRequest(preset, a, d, seed=s, overrides=overrides or {}))
            for s in seeds for a in ATTACKS.resolve_list(attacks) for d in DEFENSES.resolve_list(defenses)]


def test_tiny_full_matrix_builds_every_shared_artifact_in_one_job(tmp_path):
    cells = cells_of("tiny", "all", "all")
    graph = graph_of(cells, tmp_path)
    jobs = graph.by_name()
    stages = Counter(job.stage for job in graph.jobs)
    # 7 attacks x 7 defenses: 1 clean model, 7 triggers, 7 references, 7 victims,
    # 7 x 4 post-training defenses that train + 7 x 2 training-time ones, 49 evaluations
    assert stages == {"data": 1, "clean": 1, "poison": 7, "reference": 7, "victim": 7, "defense": 42, "evaluation": 49}
    assert len({(job.stage, job.key) for job in graph.jobs}) == len(graph)
    order = [job.name for job in graph.jobs]
    for job in graph.jobs:  # submitted after its parents, which are jobs of the stages it reads
        assert all(order.index(parent) < order.index(job.name) for parent in job.parents)
    clean = next(job.name for job in graph.jobs if job.stage == "clean")
    data = next(job.name for job in graph.jobs if job.stage == "data")
    assert jobs[clean].parents == [data] and jobs[data].resources.gpus == 0
    for job in graph.jobs:
        cell = job.cell
        parents = {jobs[p].stage for p in job.parents}
        if job.stage == "poison":
            assert job.parents == ([clean] if cell.attack_cls.needs_clean_model else [data])
            assert (job.resources.gpus > 0) == cell.attack_cls.needs_clean_model
        if job.stage == "victim":
            assert parents == {"clean", "poison"}
        if job.stage == "defense":
            expected = {"clean", "poison"} if cell.defense_cls.stage == "training_time" else {"victim"}
            assert parents == expected and job.resources.gpus == 1
        if job.stage == "evaluation":
            assert "reference" in parents and job.resources.timeout_min < jobs[clean].resources.timeout_min
    assert all(len(job.cells) == 5 for job in graph.jobs if job.stage == "victim")  # none, finetune, cleanclip, abd, par
    assert len(jobs[clean].cells) == 49


def test_paper_table1_dry_run_prints_the_job_graph(cli_runner, tmp_path):
    data = tmp_path / "data"
    for folder in ("cc3m", "val/n01440764"):
        (data / folder).mkdir(parents=True)
    done = cli_runner(["reproduce", "abd-table1", "--preset", "paper-abd", "--executor", "slurm", "--dry-run",
                       "--set", f"scenario.train_data={data / 'cc3m'}", "--set", f"scenario.eval_data={data / 'val'}",
                       "--cache-dir", tmp_path / "cache", "--results-dir", tmp_path / "r"])
    assert done.exit_code == 0, done.output
    # 3 attacks x (none, RoCLIP, CleanCLIP, ABD): the pretrained model is fetched by a job without a GPU
    assert "slurm: 32 jobs (1 data, 1 clean, 3 poison, 3 reference, 3 victim, 9 defense, 12 evaluation)" in done.output
    clean_line = next(line for line in done.output.splitlines() if line.startswith("clean-"))
    assert "no GPU" in clean_line
    assert not (tmp_path / "r").exists()


def test_cached_artifacts_and_finished_cells_get_no_job(cli_runner, cache_dir, tmp_path):
    args = ["run", "--preset", "micro", "--attack", "badnet", "--defense", "none", "--seed", "11",
            "--cache-dir", cache_dir, "--results-dir", tmp_path / "r"]
    assert cli_runner(args).exit_code == 0
    cells = cells_of("micro", "badnet", "none,finetune", seeds=(11,))
    from clipbench.cell_runner import stored_result

    finished = {cell.name for cell in cells if stored_result(tmp_path / "r", cell)}
    graph = graph_of(cells, cache_dir, finished)
    assert [job.stage for job in graph.jobs] == ["data", "defense", "evaluation"]
    assert graph.jobs[1].parents == [graph.jobs[0].name] and graph.jobs[2].parents == [graph.jobs[1].name]


@pytest.fixture
def fake_cluster(tmp_path, monkeypatch):
    state = tmp_path / "slurm"
    bin_dir = fake_slurm.install(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_DIR": str(state),
           "CLIPBENCH_POLL_S": "0.3", "PYTHONPATH": str(Path(__file__).parent)}
    return env, state


def submissions(state: Path) -> list[dict]:
    path = state / "submissions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def clipbench(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipbench.cli", *[str(a) for a in args]], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_fake_cluster_runs_the_graph_and_a_failed_job_fails_only_its_cells(fake_cluster, fresh_cache_dir, tmp_path):
    env, state = fake_cluster
    args = ["run", "--preset", "micro", "--attack", "badnet", "--defense", "none,finetune", "--seed", "5",
            "--executor", "slurm", "--cache-dir", fresh_cache_dir, "--results-dir", tmp_path / "r",
            "--set", "finetune.lr=1e30", "--set", "finetune.warmup_steps=0"]
    done = clipbench(env, *args)
    assert done.returncode == 1, done.stderr[-3000:]
    results = {r["cell"]["defense"]: r for r in map(json.loads, map(Path.read_text, (tmp_path / "r").glob("*.json")))}
    assert results["none"]["status"] == "ok"
    assert results["finetune"]["status"] == "failed" and "non-finite loss" in results["finetune"]["error"]
    assert "failed" in results["finetune"]["error"] and "defense-" in results["finetune"]["error"]
    first = submissions(state)
    names = [s["flags"]["job-name"] for s in first]
    assert Counter(n.split("-")[1] for n in names) == {"data": 1, "clean": 1, "poison": 1, "reference": 1, "victim": 1,
                                                       "defense": 1, "evaluation": 2}
    ids = {s["flags"]["job-name"]: s["job_id"] for s in first}
    by_stage = {name.split("-")[1]: s for name, s in zip(names, first) if "evaluation" not in name}
    assert by_stage["victim"]["flags"]["dependency"] == f"afterok:{ids[by_stage['clean']['flags']['job-name']]}:" \
                                                      f"{ids[by_stage['poison']['flags']['job-name']]}"
    assert by_stage["defense"]["flags"]["kill-on-invalid-dep"] == "yes"
    assert "gpus-per-node" not in by_stage["poison"]["flags"] and by_stage["victim"]["flags"]["gpus-per-node"] == "1"
    def job_states() -> dict:
        return {json.loads(p.read_text())["name"]: json.loads(p.read_text())["state"] for p in (state / "jobs").glob("*.json")}

    states = job_states()
    failed_eval = next(n for n in states if "evaluation" in n and "finetune" in n)
    deadline = time.monotonic() + 15  # the scheduler cancels a dependent job on its own poll, after the submitter returns
    while states[failed_eval] == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.2)
        states = job_states()
    assert states[failed_eval] == "CANCELLED" and sum(s == "FAILED" for s in states.values()) == 1

    # resubmitted: only what is missing (the failed defense and its cell's evaluation)
    again = clipbench(env, *args)
    assert again.returncode == 1
    second = submissions(state)[len(first):]
    assert sorted(s["flags"]["job-name"].split("-")[1] for s in second) == ["data", "defense", "evaluation"]


def test_sbatch_missing_or_a_rejected_submission_is_one_line_and_nothing_is_left(fake_cluster, fresh_cache_dir, tmp_path):
    env, state = fake_cluster
    base = ["run", "--preset", "micro", "--attack", "badclip", "--defense", "none,finetune", "--executor", "slurm",
            "--cache-dir", fresh_cache_dir, "--results-dir", tmp_path / "r"]
    done = clipbench({**env, "PATH": os.environ["PATH"]}, *base)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "clipbench: error: --executor slurm needs SLURM's sbatch on PATH (not found): run it on a cluster login node"]

    done = clipbench({**env, "FAKE_SLURM_REJECT_PARTITION": "gpu"}, *base, "--slurm-partition", "gpu")
    assert done.returncode == 2 and not submissions(state)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("clipbench: error: submitting job data-")
    assert last.endswith(" failed: sbatch: error: invalid partition specified: gpu")

    state.mkdir(parents=True, exist_ok=True)
    (state / "hold").touch()  # the cluster is busy: nothing starts before the refusal
    done = clipbench({**env, "FAKE_SLURM_ACCEPT": "3"}, *base)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "Requested node configuration is not available" in last and "(3 jobs submitted before it were cancelled)" in last
    accepted = [s["job_id"] for s in submissions(state)]
    assert len(accepted) == 3
    assert sorted((state / "scancel.log").read_text().split()) == sorted(accepted)
    assert all(json.loads((state / "jobs" / f"{i}.json").read_text())["state"] == "CANCELLED" for i in accepted)
    assert not list((tmp_path / "r").glob("*.json"))
