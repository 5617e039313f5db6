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
class Schedule:
    """How long and how fast a training stage runs.

    Defaults follow the CLIP fine-tuning recipe of CleanCLIP and BadCLIP (AdamW, cosine schedule
    with linear warmup, weight decay 0.1, gradient clipping at norm 1); presets set epochs, batch
    size and learning rate for their scale. ``precision="auto"`` is bf16 autocast on GPU and fp32
    on CPU: on this project's 2-core CPU machines bf16 autocast made the tiny ViT slower (354 vs
    418 samples/s, measured).
    """

    epochs: int = 1
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 50
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    grad_clip: float = 1.0

    def validate(self) -> None:
        require(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        require(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, got {self.lr}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        require(self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}")

    def train_config(self, seed: int, **changes: Any) -> "TrainConfig":
        """This schedule (with ``changes``) as the settings of one training run seeded by ``seed``."""
        values = {name: getattr(self, name) for name in SCHEDULE_FIELDS}
        return TrainConfig(**{**values, **changes, "seed": seed})


#: The fields every schedule has (what a preset sets for every defense of a stage).
SCHEDULE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Schedule))


def schedule_values(config: Any) -> dict[str, Any]:
    """The schedule fields of ``config`` as a dict."""
    return {name: getattr(config, name) for name in SCHEDULE_FIELDS}


@dataclass(frozen=True)
class TrainConfig(Schedule):
    """A :class:`Schedule` and the seed of one training run (batch order, augmentations)."""

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
