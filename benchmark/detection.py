"""Detection on a cell: data level, the victim split's pairs embedded as the victim trained on
them (poisoned captions in place, triggers applied); input level, evaluation images of
non-target classes clean and triggered, shuffled together; model level, the clean model and the
victim, each scored alone (metrics over models are pooled by the report). The detector gets no labels; its
scores are measured against the poison manifest or the trigger, which only this module reads.

A detection result is one JSON per (attack, detector, seed), beside the CA/ASR results and in
the same spirit: the cell, the detector and its config, the metrics with their definitions and
intervals (:mod:`clipbench.detection_metrics`), and the score quantiles of poisoned and clean pairs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import seeding
from .cells import Cell
from .config import to_dict
from .errors import ClipbenchError

#: Pairs embedded per forward pass.
EMBED_BATCH = 512
#: Evaluation images of non-target classes an input-level detector scores, each clean and
#: triggered: clipbench's sample size, which keeps STRIP's 100 blends per image to minutes on a CPU
#: and bounds AUROC's bootstrap interval to a few points.
INPUT_IMAGES = 1000
SCHEMA_VERSION = 3
#: False-positive rates the stored ROC curve is sampled at (0 to 1 in steps of 0.01).
ROC_GRID = np.round(np.linspace(0, 1, 101), 2)


def detection_name(cell: Cell, detector: str) -> str:
    """``<preset>__<model>__<attack>__detect-<detector>__seed<k>`` and, as a cell's name has it, a
    hash of any ``--set`` overrides (the file name, without ``.json``)."""
    return cell.name.replace(f"__{cell.request.defense}__", f"__detect-{detector}__", 1)


def provenance(cell: Cell, detector_cls: type) -> dict:
    """What a detection result was computed from: the keys of the stages it read (which hash
    their configs, parents and code) and the digest of the detector's code. A stored result is
    reused only when this matches."""
    from .code_digest import method_digest
    from .plan import plan_cell

    plan = plan_cell(cell)
    return {"stages": {stage: plan[stage].key for stage in ("clean", "poison", "victim")},
            "detector_code": method_digest(detector_cls)}


def embed_pairs(clip: Any, pipeline: Any, data: Any, device: Any) -> tuple[Any, Any]:
    """Image and text embeddings (``encode_image`` / ``encode_text``, not normalised) of every
    pair of ``data`` in its order, the trigger applied to its triggered rows."""
    import torch

    from .data.feed import feed
    from .training import TriggerRows

    n = len(data)
    transform = TriggerRows(n, data.trigger_rows, data.trigger, torch.as_tensor(data.pairs.ids))
    batches = [np.arange(start, min(start + EMBED_BATCH, n)) for start in range(0, n, EMBED_BATCH)]
    images, texts = [], []
    clip.model.eval()
    with torch.no_grad():
        for rows, batch in feed(data.images, batches, transform, device):
            images.append(clip.model.encode_image(pipeline.pixels(batch, device)).float().cpu())
            tokens = clip.tokenize([data.captions[int(r)] for r in rows]).to(device)
            texts.append(clip.model.encode_text(tokens).float().cpu())
    return torch.cat(images), torch.cat(texts)


def checked_scores(name: str, scores: Any, count: int) -> np.ndarray:
    """A detector's output as ``count`` finite float64 scores, or one clear error."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (count,):
        raise ClipbenchError(f"detector {name} returned {scores.size} scores for {count} items")
    if not np.isfinite(scores).all():
        raise ClipbenchError(f"detector {name} returned {int((~np.isfinite(scores)).sum())} scores that are not finite")
    return scores


class DetectionRun:
    """Runs detectors on cells, embedding each (cell, model) once and scoring each model once."""

    def __init__(self, workspace: Any):
        self.ws = workspace
        self._embedded: dict[tuple[str, str], tuple[Any, Any, np.ndarray]] = {}
        self._model_scores: dict[tuple, dict] = {}

    def _records(self, cell: Cell) -> tuple[Any, Any, Any]:
        """The cell's clean, poison and victim stages (cached, or computed as ``run`` would)."""
        from .stages.clean import clean_model
        from .stages.poison import poison
        from .stages.victim import victim

        clean = clean_model(self.ws, cell)
        poisoned = poison(self.ws, cell, clean)
        return clean, poisoned, victim(self.ws, cell, clean, poisoned)

    def _model(self, record: Any) -> tuple[Any, Any]:
        from .image_pipeline import ImagePipeline
        from .models import load_checkpoint, place

        clip = place(load_checkpoint(record.path), self.ws.device)
        return clip, ImagePipeline.from_model(clip.model)

    def _embeddings(self, cell: Cell, which: str) -> tuple[Any, Any, np.ndarray]:
        key = (cell.name, which)
        if key not in self._embedded:
            from .stages.poison import build_attack, poisoned_training_data

            clean, poisoned, victim = self._records(cell)
            clip, pipeline = self._model(victim if which == "victim" else clean)
            data = poisoned_training_data(self.ws, cell, poisoned, pipeline)
            images, texts = embed_pairs(clip, pipeline, data, self.ws.device)
            labels = np.zeros(len(data), dtype=bool)
            labels[np.asarray(build_attack(cell, poisoned)[1].rows, dtype=np.int64)] = True
            self._embedded = {k: v for k, v in self._embedded.items() if k[0] == cell.name}  # one cell held at a time
            self._embedded[key] = (images, texts, labels)
        return self._embedded[key]

    def _input_images(self, cell: Cell, seed: int) -> tuple[dict, np.ndarray]:
        """The victim and what STRIP-like detectors need, with :data:`INPUT_IMAGES` evaluation
        images of non-target classes, clean and triggered, shuffled together; and their labels."""
        import torch

        from .stages.evaluation import classifier_weights
        from .stages.poison import build_attack

        _, poisoned, victim = self._records(cell)
        clip, pipeline = self._model(victim)
        attack, _ = build_attack(cell, poisoned)
        scenario = self.ws.scenario(cell)
        labels = np.asarray(scenario.evaluation.labels)
        rng = np.random.default_rng(seed)
        candidates = np.flatnonzero(labels != scenario.target_index)
        rows = np.sort(rng.choice(candidates, min(INPUT_IMAGES, len(candidates)), replace=False))
        images = self.ws.images(cell, "evaluation", pipeline)[rows]
        both = torch.cat([images, attack.apply(images, torch.as_tensor(scenario.evaluation.ids[rows]))])
        truth = np.r_[np.zeros(len(rows), bool), np.ones(len(rows), bool)]
        order = rng.permutation(len(both))
        weights, _ = classifier_weights(self.ws, clip, scenario)
        return {"images": both[order], "model": clip, "pipeline": pipeline, "classifier": weights,
                "reference": self.ws.images(cell, "defense", pipeline), "device": self.ws.device}, truth[order]

    def _model_scores_of(self, cell: Cell, name: str, detector_cls: type, config: Any, seed: int) -> list[dict]:
        """The clean model's and the victim's scores (each model scored once per detector config
        and seed: the clean model is shared by the cells of every attack)."""
        from .detectors.base import ModelUnderTest

        clean, _, victim = self._records(cell)
        models = []
        for role, record in (("clean", clean), ("victim", victim)):
            memo = (record.key, name, seed, json.dumps(to_dict(config), sort_keys=True))
            if memo not in self._model_scores:
                clip, pipeline = self._model(record)
                detector = detector_cls(config)
                score = checked_scores(name, detector.score(ModelUnderTest(
                    model=clip, pipeline=pipeline, shadow=self.ws.images(cell, "defense", pipeline), seed=seed,
                    device=self.ws.device)), 1)
                self._model_scores[memo] = {"score": float(score[0]), "details": getattr(detector, "last_run", {})}
            models.append({"role": role, "stage": record.stage, "key": record.key, **self._model_scores[memo]})
        return models

    def run(self, cell: Cell, name: str, detector_cls: type, config: Any, origin: Optional[dict] = None) -> dict:
        """Score ``cell`` with detector ``name`` (data level: the victim split's pairs; input
        level: clean and triggered evaluation images; model level: the clean model and the
        victim) and return its result; ``origin`` is its :func:`provenance`, when the caller has it."""
        from .detection_metrics import detection_metrics, roc_on_grid
        from .detectors.base import InputImages, PairEmbeddings

        started = time.perf_counter()
        seed = seeding.sub_seed(cell.seed, f"detector:{name}")
        result = {
            "schema_version": SCHEMA_VERSION, "kind": "detection", "status": "ok",
            "cell": {"preset": cell.preset.name, "model": cell.preset.model, "attack": cell.request.attack,
                     "detector": name, "level": detector_cls.level, "seed": cell.seed},
            "detector": {"name": name, "config": to_dict(config), "embedding_model": detector_cls.embedding_model,
                         "source": detector_cls.source, "provenance": detector_cls.provenance, "seed": seed},
            "attack_config": to_dict(cell.attack_config),
            "provenance": origin or provenance(cell, detector_cls),
        }
        if detector_cls.level == "model":
            result["models"] = self._model_scores_of(cell, name, detector_cls, config, seed)
            return {**result, "wall_s": round(time.perf_counter() - started, 2)}
        if detector_cls.level == "data":
            images, texts, labels = self._embeddings(cell, detector_cls.embedding_model)
            inputs: Any = PairEmbeddings(images=images, texts=texts, seed=seed)
            positive, counts = "poisoned", {"pairs": int(len(labels)), "poisoned": int(labels.sum())}
        elif detector_cls.level == "input":
            fields, labels = self._input_images(cell, seeding.sub_seed(cell.seed, "detector-inputs"))
            inputs = InputImages(seed=seed, **fields)
            positive, counts = "triggered", {"images": int(len(labels)), "triggered": int(labels.sum())}
        else:
            raise ClipbenchError(f"detector {name} declares an unknown level {detector_cls.level!r}")
        scores = checked_scores(name, detector_cls(config).score(inputs), len(labels))
        quantiles = (0.05, 0.25, 0.5, 0.75, 0.95)
        return {
            **result, **counts,
            "metrics": {k: v.to_dict() for k, v in detection_metrics(scores, labels).items()},
            "roc": {"fpr": ROC_GRID.tolist(), "tpr": np.round(roc_on_grid(scores, labels, ROC_GRID), 5).tolist()},
            "score_quantiles": {group: dict(zip(map(str, quantiles), np.quantile(scores[mask], quantiles).tolist()))
                                for group, mask in ((positive, labels), ("clean", ~labels))},
            "wall_s": round(time.perf_counter() - started, 2),
        }


def detector_configs(names: list[str], overrides: dict[str, str]) -> dict[str, Any]:
    """Each detector's default config with the ``--set detector.KEY=VALUE`` keys it has applied
    (and validated); a key that no selected detector has is an error listing the keys they have."""
    from .config import apply_overrides
    from .registry import DETECTORS

    configs = {}
    for name in names:
        config = DETECTORS.get(name).default_config()
        fields = {f.name for f in dataclasses.fields(config)}
        configs[name] = apply_overrides(config, {k: v for k, v in overrides.items() if k in fields}, "detector")
    have = sorted({f.name for config in configs.values() for f in dataclasses.fields(config)})
    for key in overrides:
        if key not in have:
            raise ClipbenchError(f"--set detector.{key}: no selected detector ({', '.join(names)}) has this key; "
                                 f"their keys: {', '.join(have) or 'none'}")
    return configs


def stored_detection(path: Path) -> Optional[dict]:
    """A finished detection result at ``path``, if any."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(stored, dict) and stored.get("status") == "ok" and stored.get("schema_version") == SCHEMA_VERSION
    return stored if ok else None
