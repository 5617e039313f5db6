"""Stage ``evaluation``: zero-shot CA, ASR, ASR-all and RA of a model under the cell's trigger, and
its linear-probe accuracy when the preset asks for it.

Input: a model, the poison artifact (the trigger) and the scenario's evaluation split, class
names and templates. Output: metrics (with counts and intervals). The zero-shot text classifier
is an artifact of its own (``classifier``), keyed by the model weights' sha256, the class names
and the templates. ``reference`` stores the clean model's metrics under the same trigger: the
baseline every cell is read against. The linear probe is an artifact of its own too (``probe``),
keyed by the model weights' sha256, the scenario, the probe's settings and the evaluation rows it
leaves out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import seeding
from ..cells import Cell
from ..config import stable_hash, to_dict
from ..image_pipeline import ImagePipeline
from ..models import ClipModel, load_checkpoint
from ..resources import measure
from .poison import build_attack
from .workspace import StageRecord, Workspace

CLASSIFIER_FILE = "classifier.safetensors"
#: Version of the linear probe's code (features, split, fit), part of its artifact key.
PROBE_VERSION = 1


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


def linear_probe_accuracy(ws: Workspace, cell: Cell, clip: ClipModel, excluded: np.ndarray) -> dict:
    """Linear-probe accuracy of ``clip`` (:class:`clipbench.evaluation_config.EvaluationConfig`):
    fitted on the defense split's features, its strength chosen on a held-out part of it, scored on
    the evaluation split without the rows ``excluded`` (targeted poisoning's targets). Cached per model."""
    config = cell.preset.evaluation
    excluded = np.asarray(sorted(int(r) for r in excluded), dtype=np.int64)
    key = stable_hash("probe", PROBE_VERSION, clip.weights_sha256, to_dict(cell.preset.scenario), to_dict(config), excluded.tolist())

    def build(folder: Path) -> dict:
        from ..evaluation import image_features
        from ..linear_probe import linear_probe
        from ..metrics import wilson_interval

        pipeline = ImagePipeline.from_model(clip.model)
        scenario = ws.scenario(cell)
        train_x = image_features(clip, pipeline, ws.images(cell, "defense", pipeline), device=ws.device)
        train_y = np.asarray(scenario.defense.labels)
        order = np.random.default_rng(seeding.sub_seed(cell.preset.scenario.split_seed, "probe_validation")).permutation(len(train_y))
        held = order[: int(round(len(order) * config.probe_validation))]
        fit = np.setdiff1d(order, held)
        keep = np.setdiff1d(np.arange(len(scenario.evaluation)), excluded)
        test_x = image_features(clip, pipeline, ws.images(cell, "evaluation", pipeline), device=ws.device)[keep]
        test_y = np.asarray(scenario.evaluation.labels)[keep]
        result = linear_probe((train_x[fit], train_y[fit]), (train_x[held], train_y[held]), (test_x, test_y),
                              grid=config.probe_grid, device=ws.device)
        return {"linear_probe": {
            "value": result.accuracy, "successes": result.correct, "total": result.total,
            "ci95": list(wilson_interval(result.correct, result.total)),
            "definition": "linear-probe top-1 accuracy: a logistic regression on the frozen image features of the "
                          f"defense split ({len(fit)} fitted, {len(held)} to choose its L2 strength), scored on the "
                          "evaluation images" + (" without the attack's targets" if len(excluded) else ""),
            "strength": result.strength, "validation_accuracy": {f"{k:g}": v for k, v in result.validation.items()},
            "model_sha256": clip.weights_sha256}}

    return {**ws.artifact("probe", key, build).meta["linear_probe"], "artifact": key}


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
            excluded = attack.state["target_rows"].numpy()
        else:
            metrics = evaluate_backdoor(clip, pipeline, scenario.evaluation, images, weights, scenario.target_index,
                                        attack.apply, device=ws.device)
            excluded = np.zeros(0, dtype=np.int64)
        metrics = {k: v.to_dict() for k, v in metrics.items()}
        if cell.preset.evaluation.linear_probe:
            metrics["linear_probe"] = linear_probe_accuracy(ws, cell, clip, excluded)
    return metrics, stats, classifier_key


def clean_reference(ws: Workspace, cell: Cell, clean: StageRecord, poison: StageRecord) -> StageRecord:
    """CA and ASR of the clean model with this trigger: the baseline every cell is read against."""
    def build(folder: Path) -> dict:
        metrics, _, _ = evaluate(ws, cell, load_checkpoint(clean.path), poison)
        return {"metrics": metrics}

    return ws.stage(cell, "reference", build)
