"""Zero-shot evaluation: the text classifier and image logits, clean and triggered."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.pairs import PairSet
from .image_pipeline import ImagePipeline, TriggerFn
from .metrics import Proportion, backdoor_metrics
from .models import ClipModel
from .torchvision_compat import import_open_clip
from .training import autocast


def zero_shot_classifier(
    clip: ClipModel, classnames: tuple[str, ...], templates: tuple[str, ...], device: torch.device = torch.device("cpu"),
) -> torch.Tensor:
    """``D x C`` class embeddings: per template normalised, averaged, re-normalised (open_clip's
    ``build_zero_shot_classifier``). Cached as an artifact by :mod:`clipbench.stages.evaluation`."""
    open_clip = import_open_clip()
    clip.model.eval()
    with torch.no_grad():
        return open_clip.build_zero_shot_classifier(
            clip.model, clip.tokenizer, classnames, [t.format for t in templates], device=device
        ).float()


@torch.no_grad()
def image_logits(
    clip: ClipModel, pipeline: ImagePipeline, images: torch.Tensor, ids: torch.Tensor, classifier: torch.Tensor,
    trigger: Optional[TriggerFn] = None, batch_size: int = 512, precision: str = "auto",
    device: torch.device = torch.device("cpu"), description: str = "evaluate",
) -> np.ndarray:
    """Logits ``N x C`` of (optionally triggered) uint8 images against the zero-shot classifier."""
    clip.model.eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=description, unit="batch", leave=False):
        batch = images[start : start + batch_size]
        pixel = pipeline.model_input(batch, ids[start : start + batch_size], trigger).to(device)
        with autocast(precision, device):
            features = clip.model.encode_image(pixel, normalize=True).float()
        out.append((100.0 * features @ classifier).cpu())
    return torch.cat(out).numpy()


def evaluate_backdoor(
    clip: ClipModel, pipeline: ImagePipeline, evaluation: PairSet, images: torch.Tensor, classifier: torch.Tensor,
    target: int, trigger: Optional[TriggerFn], precision: str = "auto", device: torch.device = torch.device("cpu"),
) -> dict[str, Proportion]:
    """CA on clean images and ASR/ASR-all/RA on triggered ones (see :mod:`clipbench.metrics`)."""
    ids = torch.as_tensor(evaluation.ids)
    clean = image_logits(clip, pipeline, images, ids, classifier, None, precision=precision, device=device, description="evaluate clean")
    if trigger is None:
        triggered = clean
    else:
        triggered = image_logits(clip, pipeline, images, ids, classifier, trigger, precision=precision, device=device,
                                 description="evaluate triggered")
    return backdoor_metrics(clean, triggered, evaluation.labels, target)
