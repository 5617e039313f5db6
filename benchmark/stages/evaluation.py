"""Stage ``evaluation``: zero-shot CA, ASR, ASR-all and RA of a model under the cell's trigger.

Input: a model, the poison artifact (the trigger) and the scenario's evaluation split, class
names and templates. Output: metrics (with counts and intervals). The zero-shot text classifier
is an artifact of its own (``classifier``), keyed by the model weights' sha256, the class names
and the templates. ``reference`` stores the clean model's metrics under the same trigger: the
baseline every cell is read against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..cells import Cell
from ..config import stable_hash
from ..image_pipeline import ImagePipeline
from ..models import ClipModel, load_checkpoint
from ..resources import measure
from .poison import build_attack
from .workspace import StageRecord, Workspace

CLASSIFIER_FILE = "classifier.safetensors"


def classifier(ws: Workspace, clip: ClipModel, classnames: tuple[str, ...], templates: tuple[str, ...]) -> StageRecord:
    """The ``D x C`` zero-shot classifier of ``clip`` (built by open_clip's recipe), cached and verified."""
    key = stable_hash("classifier", clip.weights_sha256, list(classnames), list(templates))

    def build(folder: Path) -> dict:
        from ..atomic import save_tensors
        from ..evaluation import zero_shot_classifier

        weights = zero_shot_classifier(clip, classnames, templates, ws.device)
        save_tensors(folder / CLASSIFIER_FILE, {"weights": weights.cpu().contiguous()})
        return {"model_sha256": clip.weights_sha256, "classes": len(classnames), "templates": len(templates)}

    return ws.artifact("classifier", key, build)


def classifier_weights(ws: Workspace, clip: ClipModel, scenario) -> tuple[torch.Tensor, str]:
    """The scenario's zero-shot classifier for ``clip`` on the workspace's device (from the cache
    when built before), and its artifact key."""
    from safetensors.torch import load_file

    record = classifier(ws, clip, tuple(scenario.classnames), tuple(scenario.templates))
    return load_file(str(record.path / CLASSIFIER_FILE))["weights"].to(ws.device), record.key


def evaluate(ws: Workspace, cell: Cell, clip: ClipModel, poison: StageRecord) -> tuple[dict, dict, str]:
    """Metrics of ``clip`` under the cell's trigger, their wall time and memory, and the classifier's key."""
    from ..evaluation import evaluate_backdoor, image_logits

    with measure() as stats:
        pipeline = ImagePipeline.from_model(clip.model)
        scenario = ws.scenario(cell)
        attack, _ = build_attack(cell, poison)
        weights, classifier_key = classifier_weights(ws, clip, scenario)
        images = ws.images(cell, "evaluation", pipeline)
        if attack.kind == "targeted":  # success on the attack's own targets, CA without them
            ids = torch.as_tensor(scenario.evaluation.ids)
            logits = image_logits(clip, pipeline, images, ids, weights, (None,), device=ws.device)[0]
            metrics = attack.targeted_metrics(logits, np.asarray(scenario.evaluation.labels))
        else:
            metrics = evaluate_backdoor(clip, pipeline, scenario.evaluation, images, weights, scenario.target_index,
                                        attack.apply, device=ws.device)
    return {k: v.to_dict() for k, v in metrics.items()}, stats, classifier_key


def clean_reference(ws: Workspace, cell: Cell, clean: StageRecord, poison: StageRecord) -> StageRecord:
    """CA and ASR of the clean model with this trigger: the baseline every cell is read against."""
    def build(folder: Path) -> dict:
        metrics, _, _ = evaluate(ws, cell, load_checkpoint(clean.path), poison)
        return {"metrics": metrics}

    return ws.stage(cell, "reference", build)
