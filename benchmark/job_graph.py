"""A matrix as a graph of cluster jobs: one job per artifact still to compute, each depending on
the jobs of its parent artifacts, so that every shared artifact (the clean model, a victim) is
built once by its own job and no job holds a GPU while it waits for another's lock.

The jobs follow the stages of :mod:`clipbench.plan`, after one ``data`` job per scenario (it
converts or indexes and verifies the scenario's data once, so the jobs that start first do not
wait on each other's data lock): ``clean`` (with the clean model's zero-shot classifier),
``poison``, ``reference`` (the clean model's metrics under a trigger), ``victim``, ``defense``
(defenses that train; ``none`` is done by its cell's evaluation job) and one ``evaluation`` job
per cell, which writes the cell's result JSON. Cached artifacts and finished
cells get no job. Each job asks for what its stage needs (:class:`JobResources`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .cells import Cell
from .config import stable_hash, to_dict
from .plan import describe_stage, plan_cell

#: Order of the stages in a job graph (parents before children).
JOB_STAGES = ("data", "clean", "poison", "reference", "victim", "defense", "evaluation")


@dataclass(frozen=True)
class JobResources:
    """What one job asks the cluster for: GPUs per node, tasks per node, CPUs per task, minutes."""

    gpus: int
    timeout_min: int
    cpus: int = 8
    tasks: int = 1

    def describe(self) -> str:
        gpus = f"{self.gpus} GPU" + ("s" if self.gpus != 1 else "") if self.gpus else "no GPU"
        tasks = f", {self.tasks} tasks" if self.tasks > 1 else ""
        return f"{gpus}{tasks}, {self.cpus} CPUs, {self.timeout_min} min"


@dataclass(frozen=True)
class ClusterSettings:
    """The resources of each kind of job. ``gpus`` is the GPU count of a training job (clean
    pretraining, victim, defense, BadCLIP's patch optimisation): with more than one, the job runs
    one task per GPU and the stage trains data-parallel. Evaluation jobs take one GPU and
    ``eval_timeout_min``; jobs that train nothing (poisoning with a fixed trigger, fetching
    pretrained weights) take no GPU."""

    gpus: int = 1
    timeout_min: int = 240
    eval_timeout_min: int = 60
    cpus: int = 8
    partition: Optional[str] = None

    def training(self) -> JobResources:
        return JobResources(self.gpus, self.timeout_min, self.cpus, tasks=max(1, self.gpus))

    def evaluation(self) -> JobResources:
        return JobResources(min(1, self.gpus), self.eval_timeout_min, self.cpus)

    def light(self) -> JobResources:
        return JobResources(0, self.eval_timeout_min, min(4, self.cpus))


@dataclass
class Job:
    """One node of the graph: the artifact it builds (``stage``, ``key``), a cell that needs it
    (the job runs that cell's stages up to ``stage``), its parent jobs and the cells that depend on it."""

    name: str
    stage: str
    key: str
    cell: Cell
    what: str
    resources: JobResources
    parents: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)


@dataclass
class JobGraph:
    """Jobs in submission order (every job after its parents)."""

    jobs: list[Job]

    def __len__(self) -> int:
        return len(self.jobs)

    def by_name(self) -> dict[str, Job]:
        return {job.name: job for job in self.jobs}

    def descendants(self, name: str) -> list[str]:
        """Every job that depends on ``name``, directly or not."""
        children: dict[str, list[str]] = {}
        for job in self.jobs:
            for parent in job.parents:
                children.setdefault(parent, []).append(job.name)
        seen: list[str] = []
        todo = list(children.get(name, []))
        while todo:
            child = todo.pop(0)
            if child not in seen:
                seen.append(child)
                todo.extend(children.get(child, []))
        return seen

    def rows(self) -> list[tuple]:
        return [(job.name, job.stage, ", ".join(job.parents) or "-", job.resources.describe(), job.what, len(job.cells))
                for job in self.jobs]

    def summary(self) -> str:
        counts = {stage: sum(1 for job in self.jobs if job.stage == stage) for stage in JOB_STAGES}
        parts = ", ".join(f"{n} {stage}" for stage, n in counts.items() if n)
        return f"{len(self.jobs)} jobs ({parts or 'nothing to compute'})"


def _trains(cell: Cell, stage: str) -> bool:
    if stage == "clean":
        return cell.preset.pretrained is None
    if stage == "poison":
        return bool(cell.attack_cls.needs_clean_model)
    if stage == "defense":
        return cell.request.defense != "none"
    return stage == "victim"


def build_job_graph(cells: list[Cell], cache_root: Path, finished: Optional[set[str]] = None,
                    settings: Optional[ClusterSettings] = None, force: bool = False) -> JobGraph:
    """The jobs that compute what ``cells`` still need.

    An artifact whose folder holds its ``meta.json`` is cached and gets no job; a cell named in
    ``finished`` (its result is stored with the same run key) gets none at all. With ``force``
    nothing counts as cached or finished.
    """
    settings = settings or ClusterSettings()
    finished = set() if force else (finished or set())
    jobs: dict[str, Job] = {}
    for cell in cells:
        if cell.name in finished:
            continue
        planned = plan_cell(cell)
        names: dict[str, str] = {}
        for stage in JOB_STAGES[:-1]:
            if stage not in planned or (stage == "defense" and not _trains(cell, stage)):
                continue
            key = planned[stage].key
            if not force and (Path(cache_root) / stage / key / "meta.json").exists():
                continue
            name = f"{stage}-{key[:10]}"
            names[stage] = name
            if name not in jobs:
                if stage == "reference":
                    resources = settings.evaluation()
                else:
                    resources = settings.training() if _trains(cell, stage) else settings.light()
                jobs[name] = Job(name, stage, key, cell, describe_stage(cell, stage), resources)
            jobs[name].cells.append(cell.name)
        parents_of = _parent_stages(cell)
        for stage, name in names.items():
            job = jobs[name]
            for parent_stage in parents_of[stage]:
                parent = names.get(parent_stage)
                if parent and parent not in job.parents:
                    job.parents.append(parent)
        evaluation = Job(f"evaluation-{cell.name}", "evaluation", cell.name, cell, describe_stage(cell, "evaluation"),
                         settings.evaluation(), cells=[cell.name])
        evaluation.parents = _frontier(list(names.values()), jobs)
        jobs[evaluation.name] = evaluation
    _add_data_jobs(jobs, settings)
    order = {stage: i for i, stage in enumerate(JOB_STAGES)}
    return JobGraph(sorted(jobs.values(), key=lambda job: order[job.stage]))


def _add_data_jobs(jobs: dict[str, Job], settings: ClusterSettings) -> None:
    """One ``data`` job per scenario, before the jobs that start first (those without parents)."""
    roots = [job for job in jobs.values() if not job.parents]
    for job in roots:
        scenario = job.cell.preset.scenario
        name = f"data-{stable_hash(to_dict(scenario), length=10)}"
        if name not in jobs:
            jobs[name] = Job(name, "data", name[5:], job.cell, describe_stage(job.cell, "data"), settings.light())
        jobs[name].cells.extend(c for c in job.cells if c not in jobs[name].cells)
        job.parents.append(name)


def _frontier(names: list[str], jobs: dict[str, Job]) -> list[str]:
    """``names`` without those that another of them depends on (their dependency is implied)."""
    implied: set[str] = set()
    todo = [parent for name in names for parent in jobs[name].parents]
    while todo:
        name = todo.pop()
        if name not in implied:
            implied.add(name)
            todo.extend(jobs[name].parents)
    return [name for name in names if name not in implied]


def _parent_stages(cell: Cell) -> dict[str, tuple[str, ...]]:
    """Each stage's parent stages in this cell's chain."""
    training_time = cell.defense_cls.stage == "training_time"
    return {
        "clean": (),
        "poison": ("clean",) if cell.attack_cls.needs_clean_model else (),
        "reference": ("clean", "poison"),
        "victim": ("clean", "poison"),
        "defense": ("clean", "poison") if training_time else ("victim",),
    }
