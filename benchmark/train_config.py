"""Optimisation settings of training stages (import-light: no torch).

:class:`Schedule` is how long and how fast a stage trains; a preset gives one to its clean-model
pretraining, its victim, and (per stage) every post-training and every training-time defense.
:class:`TrainConfig` is a schedule plus the seed of one run of the training loop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from .config import require


@dataclass(frozen=True)
class AdamWSettings:
    """AdamW's moment decays and epsilon, and the gradient-norm clip, of a training run: the
    method's own, not the preset's. The defaults are open_clip's training defaults (betas
    0.9/0.98, eps 1e-6, clipping at norm 1; Radford et al., 2021 use the same betas and eps),
    which clipbench's own pretraining and the ``tiny`` victims use. :data:`CYCLIP_ADAMW` holds the
    settings of the CyCLIP-derived code of CleanCLIP, RoCLIP and SafeCLIP."""

    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    grad_clip: float = 1.0

    def validate(self) -> None:
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        require(self.eps > 0, f"eps must be positive, got {self.eps}")
        require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0: no clipping), got {self.grad_clip}")


#: The optimizer of CleanCLIP's, RoCLIP's and SafeCLIP's released code (all derived from CyCLIP's
#: ``src/train.py``): ``torch.optim.AdamW`` with betas (0.9, 0.999), eps 1e-8, and no gradient
#: clipping (docs/protocol.md, "The official code, read line by line").
CYCLIP_ADAMW = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "grad_clip": 0.0}

#: The fields of :class:`AdamWSettings` (a method's, never replaced by a preset's schedule).
ADAMW_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AdamWSettings))


@dataclass(frozen=True)
class Schedule:
    """How long and how fast a training stage runs.

    Defaults follow the CLIP fine-tuning recipe of CleanCLIP and BadCLIP (AdamW, cosine schedule
    with linear warmup, weight decay 0.1); presets set epochs, batch size and learning rate for
    their scale. The optimizer's other settings are the method's (:class:`AdamWSettings`).
    ``precision="auto"`` is bf16 autocast on GPU and fp32 on CPU: on this project's 2-core CPU
    machines bf16 autocast made the tiny ViT slower (354 vs 418 samples/s, measured).
    """

    epochs: int = 1
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 50
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def validate(self) -> None:
        require(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        require(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, got {self.lr}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if isinstance(self, AdamWSettings):
            AdamWSettings.validate(self)

    def train_config(self, seed: int, **changes: Any) -> "TrainConfig":
        """This schedule (with ``changes``) as the settings of one training run seeded by
        ``seed``, with this config's optimizer settings when it has them (else open_clip's)."""
        names = SCHEDULE_FIELDS + (ADAMW_FIELDS if isinstance(self, AdamWSettings) else ())
        values = {name: getattr(self, name) for name in names}
        return TrainConfig(**{**values, **changes, "seed": seed})


#: The fields every schedule has (what a preset sets for every defense of a stage).
SCHEDULE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Schedule))


def schedule_values(config: Any) -> dict[str, Any]:
    """The schedule fields of ``config`` as a dict."""
    return {name: getattr(config, name) for name in SCHEDULE_FIELDS}


@dataclass(frozen=True)
class TrainConfig(Schedule, AdamWSettings):
    """A :class:`Schedule`, the optimizer's settings, and the seed of one training run (batch
    order, augmentations)."""

    seed: int = 0

    def validate(self) -> None:
        super().validate()
        require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class PoisonConfig:
    """How many victim pairs an attack poisons.

    The ``tiny`` preset's count is calibrated (README, "Calibration"); ABD's Table I poisons
    1,500 of 500K pairs (docs/protocol.md, "The ABD Table I setting"). ``label_consistent``
    poisons only target-class pairs and keeps their captions.
    """

    count: int = 300
    label_consistent: bool = False

    def validate(self) -> None:
        require(self.count >= 0, f"poison.count must be >= 0, got {self.count}")
