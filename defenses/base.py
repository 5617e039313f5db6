"""The defense contract: a typed config with cited defaults, a stage, and ``run``.

- ``post_training`` defenses get the poisoned victim and the clean defense pairs and return a
  cleaned model;
- ``training_time`` defenses get the clean model and the poisoned training pairs and replace the
  victim's training.

Modules in this package import torch only inside ``run``, so listing defenses stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from clipbench.config import require
from clipbench.train_config import TrainConfig

if TYPE_CHECKING:
    import numpy as np
    import torch

    from clipbench.data.pairs import PairSet
    from clipbench.image_pipeline import ImagePipeline, TriggerFn
    from clipbench.models import ClipModel

Stage = Literal["post_training", "training_time"]


@dataclass
class DefenseContext:
    """What a defense is handed.

    ``model`` is the victim (post-training) or the clean model (training-time); the defense may
    train it in place. ``pairs``/``images`` are the clean defense split (post-training) or the
    victim split (training-time), in which case ``trigger_rows``, ``trigger`` and ``captions``
    describe the poisoning the defense must survive without being told about it.
    """

    model: "ClipModel"
    pipeline: "ImagePipeline"
    pairs: "PairSet"
    images: "torch.Tensor"
    seed: int
    device: "torch.device"
    captions: Optional[list[str]] = None
    trigger_rows: Optional["np.ndarray"] = None
    trigger: Optional["TriggerFn"] = None
    cache_dir: Optional[str] = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FineTuneSettings:
    """Optimisation fields shared by fine-tuning defenses.

    Defaults are CleanCLIP's defense recipe (arXiv 2303.03323; REFERENCE.md): batch 64, lr 1e-5,
    10 epochs, 50 warmup steps. Presets override them for their scale and say so.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-5
    weight_decay: float = 0.1
    warmup_steps: int = 50
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps, precision=self.precision, seed=seed,
        )

    def validate(self) -> None:
        self.train_config(0).validate()


class Defense:
    """Base class of defenses."""

    Config: ClassVar[type]
    stage: ClassVar[Stage] = "post_training"
    description: ClassVar[str] = ""
    source: ClassVar[str] = ""
    provenance: ClassVar[str] = "official method"
    registry_name: ClassVar[str] = ""
    #: Post-training defenses that fine-tune need the scenario's clean defense split.
    needs_clean_pairs: ClassVar[bool] = True

    def __init__(self, config: Any):
        validate = getattr(config, "validate", None)
        if validate is not None:
            validate()
        self.config = config

    @classmethod
    def default_config(cls) -> Any:
        return cls.Config()

    @classmethod
    def check_scenario(cls, config: Any, scenario: Any) -> None:
        """Reject a config that cannot work with the scenario (called before anything runs)."""
        if cls.stage == "post_training" and cls.needs_clean_pairs:
            require(scenario.defense_size > 0,
                    f"defense {cls.registry_name} needs a clean defense split, but scenario.defense_size is 0")

    def run(self, context: DefenseContext) -> Optional["ClipModel"]:
        """Return the defended model, or ``None`` when the input model is returned unchanged."""
        raise NotImplementedError



def require_clean_pairs(context: DefenseContext, name: str) -> None:
    """A post-training defense needs clean pairs; say so when the scenario has none."""
    require(len(context.pairs) > 0, f"defense {name} needs a clean defense split, but the scenario's is empty (scenario.defense_size=0)")
