"""Stage ``victim``: the clean model fine-tuned on the victim split with the poisoned rows in it, or
under the pre-training threat model a model trained from scratch on it.

Input: the clean model (or the seed's random initialisation), the poison artifact, the preset's victim schedule and the victim-shuffle
sub-seed. Output: a checkpoint. One victim serves every post-training defense of its attack.
"""

from __future__ import annotations

from pathlib import Path

from .. import seeding
from ..cells import Cell
from ..image_pipeline import ImagePipeline
from ..models import save_checkpoint
from .clean import starting_model
from .poison import poisoned_training_data
from .workspace import StageRecord, Workspace


def victim(ws: Workspace, cell: Cell, clean: StageRecord, poison: StageRecord) -> StageRecord:
    """Train the clean model (or a random initialisation) on the victim split with the poisoned rows in it."""
    def build(folder: Path) -> dict:
        from ..training import train_contrastive

        clip = starting_model(cell, clean)
        pipeline = ImagePipeline.from_model(clip.model)
        data = poisoned_training_data(ws, cell, poison, pipeline)
        config = cell.preset.victim.train_config(seeding.sub_seed(cell.seed, "victim_shuffle"))
        stats = train_contrastive(clip, pipeline, data, config, description="train poisoned victim", device=ws.device)
        save_checkpoint(clip, folder, {"stage": "victim"})
        return {"train": stats}

    return ws.stage(cell, "victim", build)
