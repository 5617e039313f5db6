"""Run a matrix of cells: plan the stage graph, then execute it sequentially, in worker
processes on one machine, or as a graph of submitit jobs, one per artifact to compute
(SLURM, or submitit's local executor; :mod:`clipbench.job_graph`, :mod:`clipbench.cluster`).

Cells share artifacts through the cache; its per-artifact lock makes a second process that needs
an artifact under construction wait and then reuse it, so no artifact is computed twice.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .cells import Cell
from .config import stable_hash, to_dict
from .plan import TRAINING_STAGES, describe_stage, plan_cell


@dataclass
class MatrixPlan:
    """Every distinct artifact a matrix needs, whether it is cached, and which cells use it."""

    nodes: dict[tuple[str, str], dict]

    def count(self, stage: Optional[str] = None, cached: Optional[bool] = None) -> int:
        return sum(1 for (s, _), node in self.nodes.items()
                   if (stage is None or s == stage) and (cached is None or node["cached"] == cached))

    def trainings(self, cached: Optional[bool] = None) -> int:
        """Distinct model trainings (clean pretraining, victims, defenses that train)."""
        return sum(1 for (stage, _), node in self.nodes.items()
                   if stage in TRAINING_STAGES and node["trains"] and (cached is None or node["cached"] == cached))

    def summary(self, cells: int) -> str:
        by_stage = {stage: sum(1 for (s, _), node in self.nodes.items() if s == stage and node["trains"])
                    for stage in TRAINING_STAGES}
        return (f"{cells} cells; {self.count()} artifacts, {self.count(cached=False)} to compute; "
                f"{self.trainings()} trainings ({by_stage['clean']} clean, {by_stage['victim']} victims, "
                f"{by_stage['defense']} defenses), {self.trainings(cached=False)} not cached")

    def rows(self) -> list[tuple]:
        order = {"clean": 0, "poison": 1, "reference": 2, "victim": 3, "defense": 4}
        return [(stage, key, "cached" if node["cached"] else "compute", node["what"], len(node["cells"]))
                for (stage, key), node in sorted(self.nodes.items(), key=lambda item: (order[item[0][0]], item[0][1]))]


def _trains(cell: Cell, stage: str, key: str) -> bool:
    """Whether the stage's artifact is a model training: not a defense that returns its input, nor
    a clean model that is downloaded or shipped with clipbench."""
    if stage == "defense":
        return cell.request.defense != "none"
    if stage == "clean":
        from .shipped import shipped_for

        return cell.preset.pretrained is None and shipped_for(key) is None
    return True


def plan_matrix(cells: list[Cell], cache_root: Path) -> MatrixPlan:
    """The union of the cells' stage graphs, marked cached where the artifact is complete."""
    nodes: dict[tuple[str, str], dict] = {}
    for cell in cells:
        for stage, planned in plan_cell(cell).items():
            node = nodes.setdefault((stage, planned.key), {
                "cached": (Path(cache_root) / stage / planned.key / "meta.json").exists(),
                "what": describe_stage(cell, stage), "cells": [],
                "trains": _trains(cell, stage, planned.key),
            })
            node["cells"].append(cell.name)
    return MatrixPlan(nodes)


def check_data(cells: list[Cell], cache_root: Path) -> None:
    """Check the attacks that read the evaluation split (targeted poisoning) against each cell's
    scenario data, once per attack config and scenario, before anything runs."""
    from .data.scenario import load_scenario

    seen, scenarios = set(), {}
    for cell in cells:
        if not cell.attack_cls.needs_evaluation_images:
            continue
        scenario_key = stable_hash(to_dict(cell.preset.scenario))
        key = (scenario_key, cell.request.attack, stable_hash(to_dict(cell.attack_config)))
        if key in seen:
            continue
        seen.add(key)
        if scenario_key not in scenarios:
            scenarios[scenario_key] = load_scenario(cell.preset.scenario, Path(cache_root))
        cell.attack_cls.check_data(cell.attack_config, scenarios[scenario_key])


def check_world(cells: list[Cell], world_size: int) -> None:
    """Under ``world_size`` data-parallel ranks every training batch must split evenly over the
    ranks. Checked before anything runs."""
    from .errors import ClipbenchError

    for cell in cells:
        preset = cell.preset
        batches = {"victim": preset.victim.batch_size}
        if preset.pretrained is None:
            batches["pretrain"] = preset.pretrain.batch_size
        if hasattr(cell.defense_config, "batch_size"):
            batches[cell.request.defense] = cell.defense_config.batch_size
        for what, size in batches.items():
            if size % world_size:
                raise ClipbenchError(f"{what} batch_size {size} does not split over {world_size} ranks "
                                     f"(each rank takes an equal share of every batch): use a multiple of {world_size}")


# --------------------------------------------------------------------------- execution
@dataclass(frozen=True)
class RunnerSettings:
    """What a worker needs to build its own :class:`~clipbench.cell_runner.CellRunner`.

    ``run_id`` is shared by every process of one matrix, so a stage that fails in one is not
    retried by the others; ``lock_mode`` is the cache's lock mode (``flock`` or ``soft``);
    ``save_every`` how often training stages save their resume state.
    """

    cache_dir: str
    results_dir: str
    device: str
    force: bool
    threads: Optional[int] = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    lock_mode: Optional[str] = None
    save_every: str = "10min"

    def cell_runner(self, force_stage: Optional[str] = None):
        """A runner over this matrix's cache; ``force_stage`` limits ``force`` to one stage's artifacts."""
        from .cell_runner import CellRunner
        from .stages import Workspace

        workspace = Workspace(Path(self.cache_dir), device=self.device, force=self.force, run_id=self.run_id,
                              lock_mode=self.lock_mode, save_every=self.save_every, force_only=force_stage)
        return CellRunner(workspace, Path(self.results_dir))


def run_one(settings: RunnerSettings, cell: Cell) -> dict:
    """Run one cell in this process (the function workers and submitit jobs execute)."""
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    return settings.cell_runner().run_cell(cell)


def _worker_init(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run_matrix(cells: list[Cell], settings: RunnerSettings, workers: int = 1, executor: str = "local",
               on_result: Callable[[dict], None] = lambda result: None, submitit_options: Optional[dict] = None) -> list[dict]:
    """Run every cell; ``executor`` is ``local`` (``workers`` processes) or a submitit cluster
    (``slurm``, or ``submitit-local`` to test the same path on one machine)."""
    if executor == "local" and workers <= 1:
        runner = settings.cell_runner()
        results = []
        for cell in cells:
            results.append(runner.run_cell(cell))
            on_result(results[-1])
        return results
    if executor == "local":
        return _run_pool(cells, settings, workers, on_result)
    return _run_submitit(cells, settings, executor, on_result, submitit_options or {})


def _run_pool(cells, settings, workers, on_result) -> list[dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    settings = RunnerSettings(**{**settings.__dict__, "threads": threads})
    results: dict[int, dict] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futures = {pool.submit(run_one, settings, cell): i for i, cell in enumerate(cells)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            on_result(results[futures[future]])
    return [results[i] for i in range(len(cells))]


def cluster_graph(cells: list[Cell], settings: RunnerSettings, options: Optional[dict] = None):
    """The job graph of ``cells`` on a cluster (what is cached or finished gets no job) and its settings."""
    from .cell_runner import stored_result
    from .job_graph import ClusterSettings, build_job_graph

    options = options or {}
    cluster = ClusterSettings(gpus=int(options.get("gpus", 1)), timeout_min=int(options.get("timeout_min", 240)),
                              partition=options.get("slurm_partition"))
    if cluster.gpus > 1:
        check_world(cells, cluster.gpus)
    finished = {cell.name for cell in cells if stored_result(Path(settings.results_dir), cell) is not None}
    return build_job_graph(cells, Path(settings.cache_dir), finished, cluster, force=settings.force), cluster


def _run_submitit(cells, settings, executor, on_result, options) -> list[dict]:
    from .cluster import run_graph

    graph, cluster = cluster_graph(cells, settings, options)
    return run_graph(cells, graph, settings, cluster, executor, on_result)
