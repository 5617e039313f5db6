"""Stage ``victim``: the clean model fine-tuned on the victim split with the poisoned rows in it.

Input: the clean model, the poison artifact, the preset's victim schedule and the victim-shuffle
sub-seed. Output: a checkpoint. One victim serves every post-training defense of its attack.
"""

from __future__ import annotations

from pathlib import Path

from .. import seeding
from ..cells import Cell
from ..image_pipeline import ImagePipeline
from ..models import load_checkpoint, save_checkpoint
from .poison import poisoned_training_data
from .workspace import StageRecord, Workspace


def victim(ws: Workspace, cell: Cell, clean: StageRecord, poison: StageRecord) -> StageRecord:
    """Fine-tune the clean model on the victim split with the poisoned rows in it."""
    def build(folder: Path) -> dict:
        from ..training import train_contrastive

        clip = load_checkpoint(clean.path)
        pipeline = ImagePipeline.from_model(clip.model)
        data = poisoned_training_data(ws, cell, poison, pipeline)
        config = cell.preset.victim.train_config(seeding.sub_seed(cell.seed, "victim_shuffle"))
        stats = train_contrastive(clip, pipeline, data, config, description="train poisoned victim", device=ws.device)
        save_checkpoint(clip, folder, {"stage": "victim"})
        return {"train": stats}

    return ws.stage(cell, "victim", build)
