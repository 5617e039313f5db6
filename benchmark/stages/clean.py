"""Stage ``clean``: the clean model every attack starts from.

Input: the preset's model, pretrained tag and pretraining schedule (and, when the model is
pretrained by clipbench, the scenario's pretraining split). Output: a checkpoint. A clean model
that clipbench ships for exactly this key (:mod:`clipbench.shipped`) is installed instead of
pretrained.
"""

from __future__ import annotations

from pathlib import Path

from ..cells import Cell
from ..image_pipeline import ImagePipeline
from ..models import create_model, save_checkpoint
from ..plan import plan_cell
from ..shipped import shipped_for
from .workspace import StageRecord, Workspace


def clean_model(ws: Workspace, cell: Cell) -> StageRecord:
    """Pretrain the clean model on the scenario's pretraining split, or fetch pretrained weights."""
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
            data = TrainingData.clean(ws.images(cell, "pretrain", pipeline), ws.scenario(cell).pretrain)
            stats = train_contrastive(clip, pipeline, data, preset.pretrain, description="pretrain clean model",
                                      device=ws.device)
        save_checkpoint(clip, folder, {"stage": "clean"})
        return {"train": stats}

    return ws.stage(cell, "clean", build)
