"""Stage ``clean``: the clean model every attack starts from (under the pre-training threat model:
the clean baseline, trained from scratch on the victim split without the poison).

Input: the preset's model, pretrained tag and pretraining schedule (and, when the model is
pretrained by clipbench, the scenario's pretraining split, or its victim split under the
pre-training threat model). Output: a checkpoint. A clean model that clipbench ships for exactly
this key (:mod:`clipbench.shipped`) is installed instead of pretrained.
"""

from __future__ import annotations

from pathlib import Path

from .. import seeding
from ..cells import Cell
from ..image_pipeline import ImagePipeline
from ..models import ClipModel, create_model, load_checkpoint, save_checkpoint
from ..plan import plan_cell
from ..shipped import shipped_for
from .workspace import StageRecord, Workspace


def clean_model(ws: Workspace, cell: Cell) -> StageRecord:
    """Pretrain the clean model on the scenario's pretraining split (pre-training threat model: its
    victim split, unpoisoned), or fetch pretrained weights."""
    preset = cell.preset

    shipped = shipped_for(plan_cell(cell)["clean"].key) if preset.pretrained is None else None

    def build(folder: Path) -> dict:
        if shipped is not None:
            shipped.install(folder)
            return {"shipped": {"name": shipped.name, "sha256": shipped.sha256, "command": shipped.command}}
        clip = create_model(preset.model, preset.pretrained, seed=preset.pretrain.seed)
        stats = {}
        if preset.pretrained is None:
            from ..training import TrainingData, train_contrastive

            pipeline = ImagePipeline.from_model(clip.model)
            split = "victim" if preset.scenario.from_scratch else "pretrain"  # pre-training: the victim split, unpoisoned
            data = TrainingData.clean(ws.images(cell, split, pipeline), getattr(ws.scenario(cell), split))
            stats = train_contrastive(clip, pipeline, data, preset.pretrain, description="pretrain clean model",
                                      device=ws.device)
        save_checkpoint(clip, folder, {"stage": "clean"})
        return {"train": stats}

    return ws.stage(cell, "clean", build)


def starting_model(cell: Cell, clean: StageRecord) -> ClipModel:
    """The model the victim and a training-time defense start from: the clean model, or under the
    pre-training threat model a random initialisation from the cell's ``scratch_init`` sub-seed
    (the same for the victim and every training-time defense of the seed)."""
    if cell.preset.scenario.from_scratch:
        return create_model(cell.preset.model, None, seed=seeding.sub_seed(cell.seed, "scratch_init"))
    return load_checkpoint(clean.path)
