"""Zero-shot evaluation: the text classifier and image logits, clean and triggered."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .data.feed import feed
from .data.images import ModelImages
from .data.pairs import PairSet
from .image_pipeline import ImagePipeline, TriggerFn
from .metrics import Proportion, backdoor_metrics
from .models import ClipModel, place
from .progress import progress
from .torchvision_compat import import_open_clip
from .training import autocast


def zero_shot_classifier(
    clip: ClipModel, classnames: tuple[str, ...], templates: tuple[str, ...], device: torch.device = torch.device("cpu"),
) -> torch.Tensor:
    """``D x C`` class embeddings: per template normalised, averaged, re-normalised (open_clip's
    ``build_zero_shot_classifier``). Cached as an artifact by :mod:`clipbench.stages.evaluation`."""
    open_clip = import_open_clip()
    place(clip, device).model.eval()
    with torch.no_grad():
        return open_clip.build_zero_shot_classifier(
            clip.model, clip.tokenizer, classnames, [t.format for t in templates], device=device
        ).float()


@torch.no_grad()
def image_logits(
    clip: ClipModel, pipeline: ImagePipeline, images: ModelImages, ids: torch.Tensor, classifier: torch.Tensor,
    triggers: Sequence[Optional[TriggerFn]] = (None,), batch_size: int = 512, precision: str = "auto",
    device: torch.device = torch.device("cpu"), description: str = "evaluate",
) -> list[np.ndarray]:
    """Logits ``N x C`` against the zero-shot classifier, one array per entry of ``triggers``
    (``None``: the clean images). Each batch is decoded once (ahead, by worker processes, for
    real-scale data; :func:`clipbench.data.feed.feed`) and scored clean and under every trigger."""
    place(clip, device).model.eval()
    batches = [np.arange(start, min(start + batch_size, len(images))) for start in range(0, len(images), batch_size)]
    out: list[list[torch.Tensor]] = [[] for _ in triggers]
    for rows, batch in progress(feed(images, batches, device=device), total=len(batches), desc=description, unit="batch", leave=False):
        for scores, trigger in zip(out, triggers):
            pixel = pipeline.model_input(batch, ids[rows], trigger, device)
            with autocast(precision, device):
                features = clip.model.encode_image(pixel, normalize=True).float()
            scores.append((100.0 * features @ classifier).cpu())
    return [torch.cat(scores).numpy() for scores in out]


@torch.no_grad()
def image_features(clip: ClipModel, pipeline: ImagePipeline, images: ModelImages, batch_size: int = 512,
                   precision: str = "auto", device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Frozen ``encode_image`` features ``N x D`` (not normalised) of clean ``images``, in order:
    what a linear probe is fitted on."""
    place(clip, device).model.eval()
    batches = [np.arange(start, min(start + batch_size, len(images))) for start in range(0, len(images), batch_size)]
    out = []
    for _, batch in progress(feed(images, batches, device=device), total=len(batches), desc="probe features",
                             unit="batch", leave=False):
        with autocast(precision, device):
            out.append(clip.model.encode_image(pipeline.pixels(batch, device)).float().cpu())
    return torch.cat(out).numpy()


def evaluate_backdoor(
    clip: ClipModel, pipeline: ImagePipeline, evaluation: PairSet, images: ModelImages, classifier: torch.Tensor,
    target: int, trigger: Optional[TriggerFn], precision: str = "auto", device: torch.device = torch.device("cpu"),
) -> dict[str, Proportion]:
    """CA on clean images and ASR/ASR-all/RA on triggered ones (see :mod:`clipbench.metrics`)."""
    ids = torch.as_tensor(evaluation.ids)
    triggers = (None,) if trigger is None else (None, trigger)
    logits = image_logits(clip, pipeline, images, ids, classifier, triggers, precision=precision, device=device)
    return backdoor_metrics(logits[0], logits[-1], evaluation.labels, target)
