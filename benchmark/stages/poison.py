"""Stage ``poison``: the attack's trigger artifact and the poisoned manifest of the victim split.

Input: the attack and its config, the trigger and row-choice sub-seeds, the victim split, and
the clean model for attacks that optimise their trigger on it (BadCLIP). Output:
``trigger.safetensors`` (exactly the tensors ``apply`` uses) and ``manifest.json`` (which rows
were poisoned and their captions). :func:`build_attack` and :func:`poisoned_training_data` turn
the artifact back into a ready attack and the training data a victim (or a training-time
defense) trains on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import seeding
from ..cells import Cell
from ..image_pipeline import ImagePipeline
from ..models import ClipModel, load_checkpoint
from .workspace import StageRecord, Workspace

TRIGGER_FILE = "trigger.safetensors"
MANIFEST_FILE = "manifest.json"


def make_attack(cell: Cell, image_size: int) -> Any:
    """The cell's attack object for images of ``image_size`` px, seeded by the trigger sub-seed."""
    return cell.attack_cls(cell.attack_config, seeding.sub_seed(cell.seed, "trigger"), image_size)


def prepare_attack(ws: Workspace, cell: Cell, clean: Optional[ClipModel], pipeline: ImagePipeline) -> Any:
    """An attack with its trigger built (``prepare``), from the clean model when it needs one."""
    from clipbench.attacks.base import AttackContext

    attack = make_attack(cell, pipeline.size)
    scenario = ws.scenario(cell)
    evaluation = {}
    if attack.needs_evaluation_images:
        evaluation = {"evaluation_images": ws.images(cell, "evaluation", pipeline),
                      "evaluation_labels": np.asarray(scenario.evaluation.labels)}
    context = AttackContext(pairs=scenario.victim, images=ws.images(cell, "victim", pipeline), pipeline=pipeline,
                            target_index=scenario.target_index, target_name=scenario.target_name, device=ws.device,
                            classnames=tuple(scenario.classnames), **evaluation)
    attack.prepare(clean if attack.needs_clean_model else None, context)
    return attack


def poison(ws: Workspace, cell: Cell, clean: StageRecord) -> StageRecord:
    """Build the trigger artifact and the poisoned manifest of the victim split."""
    def build(folder: Path) -> dict:
        from ..atomic import save_tensors

        clip = load_checkpoint(clean.path)
        pipeline = ImagePipeline.from_model(clip.model)
        attack = prepare_attack(ws, cell, clip, pipeline)
        scenario = ws.scenario(cell)
        manifest = attack.poison(scenario.victim, cell.preset.poison.count, scenario.target_index,
                                 scenario.language, seeding.numpy_rng(cell.seed, "poison_rows"),
                                 label_consistent=cell.preset.poison.label_consistent)
        save_tensors(folder / TRIGGER_FILE, {k: v.contiguous() for k, v in attack.state.items()})
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest.to_json()))
        return {"poisoned_rows": len(manifest.rows), "image_size": pipeline.size}

    return ws.stage(cell, "poison", build)


def build_attack(cell: Cell, poison_record: StageRecord) -> tuple[Any, Any]:
    """The attack with its stored trigger loaded, and the poisoned manifest."""
    from safetensors.torch import load_file

    from clipbench.attacks.base import PoisonManifest

    attack = make_attack(cell, poison_record.meta["image_size"])
    attack.load_state(load_file(str(poison_record.path / TRIGGER_FILE)))
    manifest = PoisonManifest.from_json(json.loads((poison_record.path / MANIFEST_FILE).read_text()))
    return attack, manifest


def poisoned_training_data(ws: Workspace, cell: Cell, poison_record: StageRecord, pipeline: ImagePipeline):
    """The victim split as the victim trains on it: poisoned captions in place, and the trigger
    applied to the poisoned rows each time they are drawn."""
    from ..training import TrainingData

    attack, manifest = build_attack(cell, poison_record)
    pairs = ws.scenario(cell).victim
    captions = list(pairs.captions)
    for row, caption in zip(manifest.rows, manifest.captions):
        captions[int(row)] = caption
    rows, transform = attack.training_trigger(manifest, pairs)
    return TrainingData(ws.images(cell, "victim", pipeline), pairs, captions, rows, transform)


def ready_attack(ws: Workspace, cell: Cell) -> tuple[Any, ImagePipeline]:
    """The cell's attack with its trigger (built, or read from the cache) and the model's image
    pipeline; the clean model and the poison stage are computed first when not cached."""
    from .clean import clean_model

    clean = clean_model(ws, cell)
    attack, _ = build_attack(cell, poison(ws, cell, clean))
    return attack, ImagePipeline.from_model(load_checkpoint(clean.path).model)
