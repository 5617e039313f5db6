"""Stage ``defense``: the defended model.

Input: for a post-training defense, the victim and the scenario's clean defense split; for a
training-time defense, the clean model (the seed's random initialisation under the pre-training threat
model) and the poisoned victim split (it replaces the victim's
training). The defense config and the defense sub-seed. Output: a checkpoint, or
``same_as.json`` when the defense returns its input model unchanged (``none``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .. import seeding
from ..cells import Cell
from ..image_pipeline import ImagePipeline
from ..models import ClipModel, load_checkpoint, place, save_checkpoint
from .poison import poisoned_training_data
from .workspace import StageRecord, Workspace

SAME_AS_FILE = "same_as.json"


def defense(ws: Workspace, cell: Cell, clean: StageRecord, poison: StageRecord, victim: Optional[StageRecord]) -> StageRecord:
    """Run the cell's defense; a training-time defense starts from the clean model (pre-training
    threat model: the victim's random initialisation) and the poisoned data."""
    from clipbench.defenses.base import DefenseContext

    from ..training import TrainingData

    training_time = cell.defense_cls.stage == "training_time"
    source = clean if training_time else victim
    assert source is not None, "a post-training defense needs the victim stage"

    def build(folder: Path) -> dict:
        from .clean import starting_model

        clip = place(starting_model(cell, clean) if training_time else load_checkpoint(source.path), ws.device)
        pipeline = ImagePipeline.from_model(clip.model)
        if training_time:
            data = poisoned_training_data(ws, cell, poison, pipeline)
        else:
            data = TrainingData.clean(ws.images(cell, "defense", pipeline), ws.scenario(cell).defense)
        origin = None
        if cell.defense_cls.needs_origin_model and not training_time:
            origin = place(load_checkpoint(clean.path), ws.device)
            origin.model.requires_grad_(False)
        context = DefenseContext(model=clip, pipeline=pipeline, data=data, seed=seeding.sub_seed(cell.seed, "defense"),
                                 device=ws.device, cache_dir=str(ws.store.root), origin=origin)
        defended = cell.defense_cls(cell.defense_config).run(context)
        if defended is None and training_time and cell.preset.scenario.from_scratch:  # its start is no stage
            save_checkpoint(clip, folder, {"stage": "defense", "defense": cell.request.defense})
        elif defended is None:
            (folder / SAME_AS_FILE).write_text(json.dumps({"stage": source.stage, "key": source.key}))
        else:
            save_checkpoint(defended, folder, {"stage": "defense", "defense": cell.request.defense})
        return {"extras": _json_ready(context.extras)}

    return ws.stage(cell, "defense", build)


def defended_model(ws: Workspace, record: StageRecord) -> ClipModel:
    """The model a defense artifact stands for (its checkpoint, or the model it returned unchanged)."""
    same_as = record.path / SAME_AS_FILE
    if same_as.exists():
        source = json.loads(same_as.read_text())
        return load_checkpoint(ws.store.path(source["stage"], source["key"]))
    return load_checkpoint(record.path)


def _json_ready(extras: dict) -> dict:
    """The JSON-serialisable entries of a defense's ``extras`` (kept in its artifact's metadata)."""
    ready = {}
    for name, value in extras.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        ready[name] = value
    return ready
