"""What every stage works in: the artifact store, the device, data loaded once per process, and
the failures already seen in this run."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from ..cache import ArtifactStore
from ..cells import Cell
from ..config import stable_hash, to_dict
from ..data.images import ModelImages, at_model_resolution
from ..data.scenario import load_scenario
from ..data.splits import ScenarioData
from ..distributed import barrier, broadcast, is_main, world
from ..errors import ClipbenchError
from ..image_pipeline import ImagePipeline
from ..plan import plan_cell
from ..resources import measure
from ..resume import parse_every, resumable


class StageFailed(ClipbenchError):
    """A stage failed earlier in this run; its dependents are not retried."""


@dataclass
class StageRecord:
    """A stage's artifact: its key, folder and metadata, and whether this call built it."""

    stage: str
    key: str
    path: Path
    meta: dict
    built: bool
    stats: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"key": self.key, "cached": not self.built, **self.stats, "build": self.meta.get("build_stats", {})}


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


class Workspace:
    """One process's view of the cache: stages built or reused through it share loaded data.

    ``run_id`` names the run (a matrix, shared by its worker processes): a stage that fails is
    recorded under it and not retried by the other cells of the run. ``save_every`` is how often a
    training stage saves its resume state (:func:`clipbench.resume.parse_every`: steps or a time). With ``force`` each
    artifact of the requested cells is rebuilt once per workspace; with ``force_only`` as well, only
    the artifacts of that stage (a cluster job rebuilds its own stage, not its parents').
    """

    def __init__(self, cache_dir: Path, device: str = "auto", force: bool = False, run_id: Optional[str] = None,
                 lock_mode: Optional[str] = None, save_every: str = "10min", force_only: Optional[str] = None):
        self.store = ArtifactStore(Path(cache_dir), lock_mode)
        self.save_every = parse_every(save_every)
        self.device = resolve_device(device)
        self.force = force
        self.force_only = force_only
        self.run_id = run_id or uuid.uuid4().hex
        self._scenarios: dict[str, ScenarioData] = {}
        self._images: dict[tuple, ModelImages] = {}
        self._forced: set[tuple[str, str]] = set()

    def scenario(self, cell: Cell) -> ScenarioData:
        """The cell's scenario data, loaded once per process."""
        key = stable_hash(to_dict(cell.preset.scenario))
        if key not in self._scenarios:
            self._scenarios[key] = load_scenario(cell.preset.scenario, self.store.root)
        return self._scenarios[key]

    def images(self, cell: Cell, split: str, pipeline: ImagePipeline) -> ModelImages:
        """The split's images at the model's resolution (uint8), computed once per process."""
        key = (stable_hash(to_dict(cell.preset.scenario)), split, pipeline)
        if key not in self._images:
            self._images[key] = at_model_resolution(getattr(self.scenario(cell), split).images, pipeline)
        return self._images[key]

    def stage(self, cell: Cell, stage: str, build: Callable[[Path], dict]) -> StageRecord:
        """The artifact of ``stage`` for ``cell``: reused when cached and intact, else built.

        ``build(folder)`` writes the artifact's files into ``folder`` and returns its metadata. A
        build that raises is remembered for the rest of the run (:class:`StageFailed` next time).
        """
        planned = plan_cell(cell)[stage]
        return self.artifact(stage, planned.key, build, planned.parts.get("parents", {}))

    def artifact(self, stage: str, key: str, build: Callable[[Path], dict], parents: Optional[dict] = None) -> StageRecord:
        """Like :meth:`stage` for an artifact keyed by the caller (the zero-shot classifier)."""
        earlier = self.store.failure(self.run_id, stage, key)
        if earlier is not None:
            raise StageFailed(f"{stage} stage failed earlier in this run: {earlier}")
        resume_folder = self.store.root / stage / f".resume-{key}"
        force = (self.force and (stage, key) not in self._forced
                 and (self.force_only is None or self.force_only == stage))
        with measure() as stats:
            def timed_build(folder: Path) -> dict:
                if force:
                    shutil.rmtree(resume_folder, ignore_errors=True)  # --force recomputes from the start
                steps, seconds = self.save_every
                with measure() as build_stats, resumable(resume_folder, f"{stage}:{key}", steps, seconds):
                    meta = build(folder)
                return {**meta, "build_stats": build_stats, "parents": parents or {}}

            try:
                if world()[1] > 1:
                    path, meta, built = self._get_or_build_ranks(stage, key, timed_build, force)
                else:
                    path, meta, built = self.store.get_or_build(stage, key, timed_build, force=force)
            except (ClipbenchError, RuntimeError, ValueError, FloatingPointError) as error:
                message = str(error) if isinstance(error, ClipbenchError) else f"{type(error).__name__}: {error}"
                self.store.record_failure(self.run_id, stage, key, message)
                raise
            self._forced.add((stage, key))
        if built:
            shutil.rmtree(resume_folder, ignore_errors=True)
        return StageRecord(stage, key, path, meta, built, stats)

    def _get_or_build_ranks(self, stage: str, key: str, build: Callable[[Path], dict], force: bool) -> tuple[Path, dict, bool]:
        """Under several ranks (:mod:`clipbench.distributed`): rank 0 decides whether the artifact
        is reusable; if not, rank 0 builds and writes it while the other ranks build along (the
        training is collective) into a scratch folder they discard, then read rank 0's artifact."""
        def missing(folder: Path) -> dict:
            raise ClipbenchError(f"{stage} artifact {key} is missing after rank 0 built it (is the cache on a shared file system?)")

        reusable = broadcast(False if force or not is_main() else self.store.has_reusable(stage, key))
        if reusable:
            return self.store.get_or_build(stage, key, missing)
        if is_main():
            try:
                return self.store.get_or_build(stage, key, build, force=True)
            finally:
                barrier()
        scratch = Path(tempfile.mkdtemp(prefix=f"clipbench-{stage}-rank-"))
        try:
            build(scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            barrier()
        path, meta, _ = self.store.get_or_build(stage, key, missing)
        return path, meta, True
