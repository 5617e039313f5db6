"""Run a matrix's job graph (:mod:`clipbench.job_graph`) through submitit: on SLURM, every job
is submitted at once with ``afterok`` dependencies on its parents' jobs (and
``--kill-on-invalid-dep=yes``, so the dependents of a failed job are cancelled by SLURM instead of
pending for ever); with submitit's local executor, which knows no dependencies, a job is
submitted when its parents have finished.

The driver then waits: a job that fails marks every cell that depends on it as failed in its
result JSON (with the job's error) and the rest of the graph goes on. A submission that fails
part-way cancels what it had submitted. Rerunning the same command submits only what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .cells import Cell
from .errors import ClipbenchError
from .job_graph import ClusterSettings, Job, JobGraph

#: Seconds between two looks at the jobs' states (``CLIPBENCH_POLL_S`` overrides it).
POLL_SECONDS = 30.0


def job_main(settings: Any, stage: str, cell: Cell) -> dict:
    """What one job of the graph runs: prepare the scenario's data (``data``), build one stage's
    artifact, or run the cell's evaluation and write its result (``evaluation``)."""
    import dataclasses

    import torch

    from .distributed import init_from_env, local_device

    if settings.threads:
        torch.set_num_threads(settings.threads)
    if init_from_env(settings.device)[1] > 1:  # a training job with one task per GPU
        settings = dataclasses.replace(settings, device=local_device(settings.device))
    runner = settings.cell_runner(force_stage=stage)
    if stage == "data":
        data = runner.ws.scenario(cell)
        return {"stage": "data", "sources": data.sources, "evaluation_images": len(data.evaluation)}
    if stage == "evaluation":
        return runner.run_cell(cell)
    return runner.build_stage(cell, stage)


def check_executor(executor: str):
    """submitit, and for SLURM its ``sbatch``: checked before anything is planned or written."""
    try:
        import submitit
        import submitit.core.utils  # noqa: F401
    except ImportError:
        raise ClipbenchError(f"--executor {executor} needs submitit: pip install submitit") from None
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise ClipbenchError("--executor slurm needs SLURM's sbatch on PATH (not found): run it on a cluster login node")
    return submitit


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(text)


def _job_error(error: BaseException) -> str:
    """The exception a job raised, from submitit's report (its trace sits between dashed lines),
    or the report's last line when the job died without one (killed for time or memory)."""
    parts = str(error).split("----------------------")
    if len(parts) >= 3:
        raised = _last_line(parts[1])
        kind, sep, message = raised.partition(": ")
        return f"{kind.rsplit('.', 1)[-1]}: {message}" if sep else raised
    return _last_line(error)


class GraphRun:
    """Submits the jobs of one graph and follows them to the end."""

    def __init__(self, graph: JobGraph, settings: Any, cluster: ClusterSettings, executor: str):
        self.graph, self.settings, self.cluster, self.executor = graph, settings, cluster, executor
        self.submitit = check_executor(executor)
        self.folder = Path(settings.cache_dir) / "submitit" / "%j"
        self.submitted: dict[str, Any] = {}
        self.outcome: dict[str, tuple[str, Any]] = {}  # job name -> ("ok", value) | ("failed", message)

    # ------------------------------------------------------------------ submission
    def _executor_for(self, job: Job):
        cluster = "local" if self.executor == "submitit-local" else "slurm"
        executor = self.submitit.AutoExecutor(folder=str(self.folder), cluster=cluster)
        parameters: dict[str, Any] = {"name": f"clipbench-{job.name}", "timeout_min": job.resources.timeout_min}
        if cluster == "slurm":
            parameters.update(tasks_per_node=job.resources.tasks, cpus_per_task=job.resources.cpus)
            if job.resources.gpus:
                parameters["gpus_per_node"] = job.resources.gpus
            if self.cluster.partition:
                parameters["slurm_partition"] = self.cluster.partition
            after = [self.submitted[parent].job_id for parent in job.parents]
            if after:
                parameters["slurm_additional_parameters"] = {"dependency": "afterok:" + ":".join(after),
                                                            "kill-on-invalid-dep": "yes"}
        executor.update_parameters(**parameters)
        return executor

    def submit(self, job: Job) -> None:
        try:
            self.submitted[job.name] = self._executor_for(job).submit(job_main, self.settings, job.stage, job.cell)
        except Exception as error:  # sbatch refused it (partition, GPU count...): undo the submission
            cancelled = self.cancel_all()
            detail = _last_line(getattr(error, "stderr", None) or error)
            raise ClipbenchError(f"submitting job {job.name} failed: {detail}"
                                 + (f" ({cancelled} jobs submitted before it were cancelled)" if cancelled else "")) from None

    def cancel_all(self) -> int:
        live = [job for name, job in self.submitted.items() if name not in self.outcome]
        if live and self.executor == "slurm":
            subprocess.run(["scancel", *(job.job_id for job in live)], capture_output=True)
        else:
            for job in live:
                job.cancel(check=False)
        return len(live)

    # ------------------------------------------------------------------ following
    def _ready(self, job: Job) -> bool:
        return all(self.outcome.get(parent, ("",))[0] == "ok" for parent in job.parents)

    def _failed_parent(self, job: Job) -> Optional[str]:
        return next((parent for parent in job.parents if self.outcome.get(parent, ("",))[0] == "failed"), None)

    def _look(self, job: Job) -> None:
        handle = self.submitted[job.name]
        if not handle.done():
            return
        try:
            self.outcome[job.name] = ("ok", handle.result())
        except Exception as error:  # the job raised, or the cluster killed it (time limit, memory)
            self.outcome[job.name] = ("failed", f"job {handle.job_id} ({job.name}) failed: {_job_error(error)}")

    def run(self, on_job: Callable[[Job, str], None] = lambda job, status: None,
            poll_s: Optional[float] = None) -> dict[str, tuple[str, Any]]:
        """Submit and follow every job; returns each job's outcome."""
        poll_s = float(os.environ.get("CLIPBENCH_POLL_S", poll_s or POLL_SECONDS))
        if self.executor == "slurm":  # SLURM holds the dependencies: everything goes in now
            for job in self.graph.jobs:
                self.submit(job)
        while len(self.outcome) < len(self.graph):
            for job in self.graph.jobs:
                if job.name in self.outcome:
                    continue
                failed = self._failed_parent(job)
                if failed is not None:
                    self.outcome[job.name] = ("failed", self.outcome[failed][1])
                    handle = self.submitted.get(job.name)
                    if handle is not None and self.executor != "slurm":  # SLURM cancels it itself
                        handle.cancel(check=False)
                elif job.name not in self.submitted:
                    if self._ready(job):
                        self.submit(job)
                else:
                    self._look(job)
                if job.name in self.outcome:
                    on_job(job, self.outcome[job.name][0])
            if len(self.outcome) < len(self.graph):
                time.sleep(poll_s)
        return self.outcome


def run_graph(cells: list[Cell], graph: JobGraph, settings: Any, cluster: ClusterSettings, executor: str,
              on_result: Callable[[dict], None] = lambda result: None) -> list[dict]:
    """Run ``graph`` for ``cells`` and return every cell's result, failed ones recorded with the
    error of the job that failed."""
    runner = settings.cell_runner()
    results: dict[str, dict] = {}
    for cell in cells:
        stored = runner.existing_result(cell)
        if stored is not None and not settings.force:
            results[cell.name] = stored
            on_result(stored)
    cells_by_name = {cell.name: cell for cell in cells}

    def on_job(job: Job, status: str) -> None:
        if job.stage != "evaluation":
            return
        outcome = run.outcome[job.name]
        cell = cells_by_name[job.cells[0]]
        result = outcome[1] if status == "ok" else runner.record_failure(cell, outcome[1])
        results[cell.name] = result
        on_result(result)

    run = GraphRun(graph, settings, cluster, executor)
    try:
        run.run(on_job)
    except KeyboardInterrupt:
        raise ClipbenchError("interrupted: the submitted jobs go on (squeue shows them); rerun the same command "
                             "after they end to submit only what is missing") from None
    return [results[cell.name] for cell in cells]
