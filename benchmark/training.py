"""The shared contrastive training loop (CLIP loss, AdamW, cosine schedule with warmup, seeded).

Every stage that trains (pretraining, victim poisoning, fine-tuning defenses) goes through
:func:`train_contrastive`; defenses with extra terms pass ``extra_loss``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.pairs import PairSet
from .errors import DivergenceError
from .image_pipeline import ImagePipeline, TriggerFn
from .models import ClipModel
from .train_config import TrainConfig


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warmup to 1, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def autocast(precision: str, device: torch.device):
    """bf16 autocast when asked for (``auto``: on GPU only), else a no-op context."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


#: Extra loss hook: (clip model, batch images float, batch tokens, batch rows) -> loss tensor.
ExtraLoss = Callable[[ClipModel, torch.Tensor, torch.Tensor, np.ndarray], torch.Tensor]


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al., 2021), as open_clip's ``ClipLoss`` on one device."""
    logits = logit_scale * image_features @ text_features.t()
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.t(), labels))


def train_contrastive(
    clip: ClipModel,
    pipeline: ImagePipeline,
    images: torch.Tensor,
    pairs: PairSet,
    config: TrainConfig,
    trigger_rows: Optional[np.ndarray] = None,
    trigger: Optional[TriggerFn] = None,
    captions: Optional[list[str]] = None,
    extra_loss: Optional[ExtraLoss] = None,
    description: str = "train",
    device: torch.device = torch.device("cpu"),
) -> dict:
    """Fine-tune ``clip`` in place on (``images``, captions) with the CLIP loss.

    ``images`` are uint8 at the model resolution, aligned with ``pairs``. Rows in ``trigger_rows``
    get ``trigger`` applied (through :meth:`ImagePipeline.model_input`) each time they are drawn;
    ``captions`` replaces ``pairs.captions`` when given. Returns loss statistics.
    """
    config.validate()
    model = clip.model.to(device)
    model.train()
    captions = captions if captions is not None else pairs.captions
    n = len(pairs)
    steps_per_epoch = n // config.batch_size
    total = steps_per_epoch * config.epochs
    if total == 0:
        return {"steps": 0, "final_loss": None}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "logit_scale" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_with_warmup(step, total, config.warmup_steps)
    )
    poisoned_mask = np.zeros(n, dtype=bool)
    if trigger_rows is not None:
        poisoned_mask[trigger_rows] = True
    ids = torch.as_tensor(pairs.ids)
    generator = np.random.default_rng(config.seed)
    losses = []
    progress = tqdm(total=total, desc=description, unit="step", leave=False, mininterval=1.0)
    for _epoch in range(config.epochs):
        order = generator.permutation(n)
        for step in range(steps_per_epoch):
            rows = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = images[rows]
            hit = poisoned_mask[rows]
            if trigger is not None and hit.any():
                batch = batch.clone()
                hit_rows = torch.as_tensor(np.nonzero(hit)[0])
                batch[hit_rows] = trigger(batch[hit_rows], ids[rows[hit]])
            pixel = pipeline.normalize(batch).to(device, non_blocking=True)
            tokens = clip.tokenize([captions[i] for i in rows]).to(device, non_blocking=True)
            with autocast(config.precision, device):
                image_features, text_features, logit_scale = _forward(model, pixel, tokens)
                loss = clip_loss(image_features.float(), text_features.float(), logit_scale.float())
                if extra_loss is not None:
                    loss = loss + extra_loss(clip, pixel, tokens, rows)
            if not torch.isfinite(loss):
                progress.close()
                raise DivergenceError(f"{description}: non-finite loss ({loss.item()}) at step {len(losses)}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():  # CLIP clamps the temperature at 100 (Radford et al., 2021)
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            progress.update(1)
            if len(losses) % 20 == 0:
                progress.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    progress.close()
    model.eval()
    return {"steps": len(losses), "first_loss": losses[0], "final_loss": float(np.mean(losses[-20:]))}


def _forward(model: torch.nn.Module, pixel: torch.Tensor, tokens: torch.Tensor):
    output = model(pixel, tokens)
    if isinstance(output, dict):
        return output["image_features"], output["text_features"], output["logit_scale"]
    return output[0], output[1], output[2]
