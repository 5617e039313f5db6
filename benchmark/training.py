"""The shared contrastive training loop (CLIP loss, AdamW, cosine schedule with warmup, seeded).

Every stage that trains (pretraining, victim poisoning, every fine-tuning defense) goes through
:func:`train_contrastive`. A defense with another loss passes an ``objective`` that maps a
:class:`Batch` to a loss; the default is CLIP's symmetric InfoNCE on the batch's pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .data.feed import FeedClock, feed
from .data.images import ModelImages, select_rows
from .data.pairs import PairSet
from .distributed import average_gradients, gather, is_main, shard
from .errors import ClipbenchError, DivergenceError
from .image_pipeline import ImagePipeline, TriggerFn
from .models import ClipModel, place
from .progress import progress as progress_bar
from .train_config import TrainConfig


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warmup to 1, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def schedule_multipliers(config: TrainConfig, n_pairs: int) -> list[float]:
    """The learning-rate multiplier of every step of :func:`train_contrastive` under ``config`` on
    ``n_pairs`` pairs (without per-epoch rates)."""
    steps_per_epoch = n_pairs // config.batch_size
    total = steps_per_epoch * config.epochs
    return [cosine_with_warmup(step, total, config.warmup_steps) for step in range(total)]


def autocast(precision: str, device: torch.device):
    """bf16 autocast when asked for (``auto``: on GPU only), else a no-op context."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al., 2021), as open_clip's ``ClipLoss``: under
    several ranks over the global batch, every rank's features gathered with their gradients
    (:func:`clipbench.distributed.gather`)."""
    image_features, text_features = gather(image_features), gather(text_features)
    logits = logit_scale * image_features @ text_features.t()
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


@dataclass
class TrainingData:
    """What a training run reads.

    ``images`` are uint8 at the model's resolution (a tensor, or lazy for real-scale data),
    aligned with ``pairs``; ``captions`` are the captions trained on (poisoned ones in place);
    the rows in ``trigger_rows`` get ``trigger`` applied each time they are drawn, by the same
    function evaluation uses.
    """

    images: ModelImages
    pairs: PairSet
    captions: list[str]
    trigger_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    trigger: Optional[TriggerFn] = None

    @classmethod
    def clean(cls, images: ModelImages, pairs: PairSet) -> "TrainingData":
        """Clean pairs with their own captions and no trigger."""
        return cls(images, pairs, list(pairs.captions))

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, rows: np.ndarray) -> "TrainingData":
        """The rows ``rows``; poisoned rows among them keep their trigger and their captions, so a
        defense that selects data never learns which rows were poisoned."""
        rows = np.asarray(rows, dtype=np.int64)
        poisoned = np.zeros(len(self), dtype=bool)
        poisoned[self.trigger_rows] = True
        return TrainingData(select_rows(self.images, rows), self.pairs.subset(rows), [self.captions[int(r)] for r in rows],
                            np.nonzero(poisoned[rows])[0], self.trigger)


@dataclass
class Batch:
    """One training batch: uint8 images (triggers already applied), captions, and where they came from."""

    clip: ClipModel
    pipeline: ImagePipeline
    images: torch.Tensor
    captions: list[str]
    rows: np.ndarray
    ids: torch.Tensor
    epoch: int
    device: torch.device

    def encode_images(self, images: Optional[torch.Tensor] = None) -> torch.Tensor:
        """L2-normalised image embeddings of ``images`` (default: the batch's)."""
        pixel = self.pipeline.pixels(self.images if images is None else images, self.device)
        return F.normalize(self.clip.model.encode_image(pixel).float(), dim=-1)

    def encode_texts(self, captions: Optional[list[str]] = None) -> torch.Tensor:
        """L2-normalised text embeddings of ``captions`` (default: the batch's)."""
        tokens = self.clip.tokenize(self.captions if captions is None else captions).to(self.device, non_blocking=True)
        return F.normalize(self.clip.model.encode_text(tokens).float(), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.model.logit_scale.exp().float()


def apply_trigger_rows(images: torch.Tensor, hit: np.ndarray, trigger: Optional[TriggerFn], ids: torch.Tensor) -> torch.Tensor:
    """``images`` with ``trigger`` applied to the rows where ``hit`` is true (a copy when any is)."""
    if trigger is None or not hit.any():
        return images
    images = images.clone()
    rows = torch.as_tensor(np.nonzero(hit)[0])
    images[rows] = trigger(images[rows], ids[rows])
    return images


#: A training objective: batch -> scalar loss.
Objective = Callable[[Batch], torch.Tensor]


def clip_objective(batch: Batch) -> torch.Tensor:
    """CLIP's loss on the batch's own pairs."""
    return clip_loss(batch.encode_images(), batch.encode_texts(), batch.logit_scale)


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "logit_scale" in name else decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
    )


class TriggerRows:
    """The batch transform of a training run: ``trigger`` on the batch's rows listed in
    ``trigger_rows`` (:func:`apply_trigger_rows`), wherever the batch is decoded."""

    def __init__(self, size: int, trigger_rows: np.ndarray, trigger: Optional[TriggerFn], ids: torch.Tensor):
        self.mask = np.zeros(size, dtype=bool)
        self.mask[trigger_rows] = True
        self.trigger, self.ids = trigger, ids

    def __call__(self, images: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return apply_trigger_rows(images, self.mask[rows], self.trigger, self.ids[rows])


@dataclass
class _Progress:
    """Where a training run stands: the step, the current epoch's row order, and the losses."""

    step: int = 0
    order: Optional[np.ndarray] = None
    losses: list = field(default_factory=list)


def _snapshot(model, optimizer, scheduler, generator, progress: _Progress, streams: dict, complete: bool) -> dict:
    from .resume import capture, global_rng_state

    state = {"model": model.state_dict(), "step": progress.step, "losses": list(progress.losses), "complete": complete,
             "generator": generator.bit_generator.state, "rng": global_rng_state(),
             "streams": {name: capture(stream) for name, stream in streams.items()}}
    if not complete:
        state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                     order=torch.as_tensor(progress.order if progress.order is not None else np.zeros(0, dtype=np.int64)))
    return state


def _restore(state: dict, model, optimizer, scheduler, generator, streams: dict) -> _Progress:
    from .resume import restore, set_global_rng_state

    model.load_state_dict(state["model"])
    generator.bit_generator.state = state["generator"]
    set_global_rng_state(state["rng"])
    for name, stream in streams.items():
        if name in state["streams"]:
            restore(stream, state["streams"][name])
    if state["complete"]:
        return _Progress(state["step"], None, list(state["losses"]))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return _Progress(state["step"], state["order"].numpy(), list(state["losses"]))


def _stats(losses: list, clock: FeedClock) -> dict:
    return {"steps": len(losses), "first_loss": losses[0] if losses else None,
            "final_loss": float(np.mean(losses[-20:])) if losses else None, "feed": clock.summary()}


def train_contrastive(
    clip: ClipModel,
    pipeline: ImagePipeline,
    data: TrainingData,
    config: TrainConfig,
    objective: Objective = clip_objective,
    on_epoch_start: Optional[Callable[[int], None]] = None,
    description: str = "train",
    device: torch.device = torch.device("cpu"),
    streams: Optional[dict[str, Any]] = None,
    epoch_lr: Optional[Callable[[int], Optional[float]]] = None,
) -> dict:
    """Train ``clip`` in place on ``data`` with ``objective``.

    Batches come from :func:`clipbench.data.feed.feed` (decoded ahead by worker processes for
    real-scale data), each with the trigger on its rows in ``data.trigger_rows``
    (:class:`TriggerRows`). Inside a stage build the run is resumable (:mod:`clipbench.resume`):
    ``streams`` are the RNG streams the objective draws from, saved and restored with the model.
    ``epoch_lr(epoch)``, when given, fixes the learning rate of the epochs for which it returns a
    number (SafeCLIP's CLIP warm-up epoch); the others follow the cosine schedule. A non-finite
    loss raises :class:`DivergenceError`. Returns loss and data-feed statistics.
    """
    from .resume import current_slot

    config.validate()
    model = place(clip, device).model
    model.train()
    captions, n = data.captions, len(data.pairs)
    steps_per_epoch = n // config.batch_size
    total = steps_per_epoch * config.epochs
    if config.epochs > 0 and steps_per_epoch == 0:
        raise ClipbenchError(f"{description}: batch_size {config.batch_size} is larger than the {n} training pairs")
    clock = FeedClock()
    if total == 0:
        return {"steps": 0, "final_loss": None}
    streams = dict(streams or {})
    optimizer = _optimizer(model, config)
    def multiplier(step: int) -> float:
        fixed = epoch_lr(step // steps_per_epoch) if epoch_lr is not None else None
        return fixed / config.lr if fixed is not None else cosine_with_warmup(step, total, config.warmup_steps)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    ids = torch.as_tensor(data.pairs.ids)
    transform = TriggerRows(n, data.trigger_rows, data.trigger, ids)
    generator = np.random.default_rng(config.seed)
    slot = current_slot(description, config, n)
    saved = slot.load() if slot is not None else None
    progress = _restore(saved, model, optimizer, scheduler, generator, streams) if saved else _Progress()
    if saved and saved["complete"]:
        model.eval()
        return {**_stats(progress.losses, clock), "resumed_at_step": progress.step}
    resumed_at = progress.step
    bar = progress_bar(total=total, initial=progress.step, desc=description, unit="step", leave=False, mininterval=1.0,
                       disable=not is_main())
    while progress.step < total:
        epoch, offset = divmod(progress.step, steps_per_epoch)
        if offset == 0:
            if on_epoch_start is not None:
                on_epoch_start(epoch)
                model.train()
            progress.order = generator.permutation(n)
        batches = [shard(progress.order[i * config.batch_size : (i + 1) * config.batch_size], config.batch_size)
                   for i in range(offset, steps_per_epoch)]  # under several ranks, this rank's share
        for rows, batch_images in feed(data.images, batches, transform, device, clock=clock):
            batch = Batch(clip, pipeline, batch_images, [captions[i] for i in rows], rows, ids[rows], epoch, device)
            with autocast(config.precision, device):
                loss = objective(batch)
            if not torch.isfinite(loss):
                bar.close()
                raise DivergenceError(f"{description}: non-finite loss ({loss.item()}) at step {progress.step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(model)
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():  # CLIP clamps the temperature at 100 (Radford et al., 2021)
                model.logit_scale.clamp_(0, math.log(100))
            progress.losses.append(loss.item())
            progress.step += 1
            bar.update(1)
            if len(progress.losses) % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(progress.losses[-20:]):.3f}")
            at_epoch_end = progress.step % steps_per_epoch == 0
            if (slot is not None and is_main() and progress.step < total and (on_epoch_start is None or at_epoch_end)
                    and slot.due(progress.step)):
                slot.save(_snapshot(model, optimizer, scheduler, generator, progress, streams, complete=False))
    bar.close()
    if slot is not None and is_main():
        slot.save(_snapshot(model, optimizer, scheduler, generator, progress, streams, complete=True))
    model.eval()
    stats = _stats(progress.losses, clock)
    return {**stats, "resumed_at_step": resumed_at} if resumed_at else stats
