"""The defense contract: a typed config with cited defaults, a stage, and ``run``.

- ``post_training`` defenses get the poisoned victim and the clean defense pairs and return a
  cleaned model;
- ``training_time`` defenses get the clean model and the poisoned training pairs (without being
  told which rows are poisoned) and replace the victim's training.

:class:`FineTuneDefense` is the base of every defense that trains: it owns the set-up around
the shared training loop, so a defense supplies an objective (and, if it needs one, an epoch
hook). Modules in this package import torch only inside methods, so listing defenses stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from clipbench.config import require
from clipbench.method import Method
from clipbench.train_config import CYCLIP_ADAMW, AdamWSettings, Schedule

if TYPE_CHECKING:
    import torch

    from clipbench.data.images import ModelImages
    from clipbench.data.pairs import PairSet
    from clipbench.eda import Eda
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import ClipModel
    from clipbench.training import Objective, TrainingData

Stage = Literal["post_training", "training_time"]


@dataclass
class DefenseContext:
    """What a defense is handed.

    ``model`` is the victim (post-training) or the clean model (training-time), a
    :class:`clipbench.models.ClipModel` (``model.model`` is the open_clip module,
    ``model.tokenize(captions)`` its tokenizer); the defense may train it in place. ``data`` is
    the clean defense split (post-training) or the poisoned training split (training-time): uint8
    images ``N x 3 x S x S`` at the model's resolution (``pipeline.size``; ``pipeline.normalize``
    makes model input of them), the pairs, their captions, and, for training-time defenses, the
    trigger the training loop applies to poisoned rows (a defense must not read it to decide
    anything). ``seed`` is the cell's defense sub-seed. ``extras`` is kept in the result.
    ``origin`` is, for a post-training defense that sets ``needs_origin_model``, the clean model
    the victim was fine-tuned from (on the paper setting the public pretrained model), frozen; such
    a defense is refused under the pre-training threat model, where the victim has no such model.
    """

    model: "ClipModel"
    pipeline: "ImagePipeline"
    data: "TrainingData"
    seed: int
    device: "torch.device"
    cache_dir: Optional[str] = None
    extras: dict[str, Any] = field(default_factory=dict)
    #: RNG streams the defense draws from while training, by name; saved and restored with the
    #: model when a stage resumes (:meth:`FineTuneDefense.stream` registers one).
    streams: dict[str, Any] = field(default_factory=dict)
    origin: Optional["ClipModel"] = None

    @property
    def pairs(self) -> "PairSet":
        return self.data.pairs

    @property
    def images(self) -> "ModelImages":
        return self.data.images


class Defense(Method):
    """Base class of defenses: ``Config`` (a dataclass), ``stage`` and ``run``."""

    stage: ClassVar[Stage] = "post_training"
    #: Post-training defenses that fine-tune need the scenario's clean defense split.
    needs_clean_pairs: ClassVar[bool] = True
    #: A post-training defense that compares the victim with the model it was fine-tuned from
    #: (ABD's two encoders) gets that model as ``DefenseContext.origin``.
    needs_origin_model: ClassVar[bool] = False

    @classmethod
    def lacks_origin(cls, scenario: Any) -> bool:
        """Whether the defense needs the model its victim was fine-tuned from and the scenario has
        none (the pre-training threat model: the victim is trained from scratch)."""
        return cls.needs_origin_model and getattr(scenario, "from_scratch", False)

    @classmethod
    def check_scenario(cls, config: Any, scenario: Any) -> None:
        """Reject a config that cannot work with the scenario (called before anything runs)."""
        require(not cls.lacks_origin(scenario),
                f"defense {cls.registry_name} works against the model its victim was fine-tuned from; under "
                "scenario.threat_model=pretrain the victim is trained from scratch and there is none")
        if cls.stage == "post_training" and cls.needs_clean_pairs:
            require(scenario.defense_size > 0,
                    f"defense {cls.registry_name} needs a clean defense split, but scenario.defense_size is 0")

    def run(self, context: DefenseContext) -> Optional["ClipModel"]:
        """Return the defended model, or ``None`` when the input model is returned unchanged."""
        raise NotImplementedError


@dataclass(frozen=True)
class FineTuneConfig(Schedule, AdamWSettings):
    """The schedule of a defense that trains, defaulting to CleanCLIP's defense recipe (arXiv
    2303.03323; docs/protocol.md, "The ABD Table I setting"): batch 64, lr 1e-5, 10 epochs, 50
    warmup steps. A preset replaces these schedule fields with its own for the defense's stage.

    The optimizer is CleanCLIP's code's (:data:`~clipbench.train_config.CYCLIP_ADAMW`: AdamW betas
    0.9/0.999, eps 1e-8, no gradient clipping); a preset never replaces it. One departure stays:
    weight decay skips every parameter with fewer than two dimensions and the logit scale, where
    the code skips parameters whose names contain bn, ln, bias or logit_scale; the two rules differ
    only on a ViT's class embedding (decayed by the code, not here)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-5
    warmup_steps: int = 50
    beta1: float = CYCLIP_ADAMW["beta1"]
    beta2: float = CYCLIP_ADAMW["beta2"]
    eps: float = CYCLIP_ADAMW["eps"]
    grad_clip: float = CYCLIP_ADAMW["grad_clip"]


class FineTuneDefense(Defense):
    """A defense that trains the model it is handed with the shared training loop.

    Override :meth:`objective` (default: CLIP's loss) and, if needed, :meth:`on_epoch_start`;
    or override :meth:`run` and call :meth:`fit` once per phase (SafeCLIP).
    """

    Config = FineTuneConfig

    def objective(self, context: DefenseContext) -> "Objective":
        """The loss of one batch; built once per run (default: CLIP's loss on the batch's pairs)."""
        from clipbench.training import clip_objective

        return clip_objective

    def on_epoch_start(self, context: DefenseContext, epoch: int) -> None:
        """Called before each epoch of :meth:`run`'s training (default: nothing)."""

    def run(self, context: DefenseContext) -> "ClipModel":
        hook = None
        if type(self).on_epoch_start is not FineTuneDefense.on_epoch_start:
            hook = lambda epoch: self.on_epoch_start(context, epoch)  # noqa: E731
        self.fit(context, self.objective(context), on_epoch_start=hook)
        return context.model

    def fit(self, context: DefenseContext, objective: "Objective", data: Optional["TrainingData"] = None,
            phase: str = "", on_epoch_start: Any = None, seed_offset: int = 0, epoch_lr: Any = None, **changes: Any) -> dict:
        """Train ``context.model`` on ``data`` (default: the context's) with this defense's schedule,
        changed by ``changes`` (e.g. ``epochs=1, lr=...``), and ``epoch_lr`` as
        :func:`~clipbench.training.train_contrastive` takes it; the loss statistics go to ``extras``."""
        from clipbench.training import train_contrastive

        self.require_data(context)
        config = self.config.train_config(context.seed + seed_offset, **changes)
        name = f"defense {self.registry_name}" + (f" {phase}" if phase else "")
        stats = train_contrastive(context.model, context.pipeline, data if data is not None else context.data, config,
                                  objective=objective, on_epoch_start=on_epoch_start, description=name, device=context.device,
                                  streams=context.streams, epoch_lr=epoch_lr)
        context.extras.setdefault("training", []).append({"phase": phase or "train", **stats})
        return stats

    def require_data(self, context: DefenseContext) -> None:
        """A defense that trains needs pairs to train on; say so when the split is empty."""
        require(len(context.pairs) > 0, f"defense {self.registry_name} has no pairs to train on "
                                        "(for a post-training defense: scenario.defense_size is 0)")

    def eda(self, context: DefenseContext, rate: Optional[float] = None) -> "Eda":
        """EDA over captions with every operation at ``rate`` (default: the config's ``eda_rate``)."""
        from clipbench.eda import Eda, EdaConfig

        rate = getattr(self.config, "eda_rate", 0.1) if rate is None else rate
        eda = Eda(EdaConfig(rate, rate, rate, rate), seed=context.seed, cache_dir=context.cache_dir)
        self.stream(context, f"eda-{len(context.streams)}", eda.random)
        return eda

    def generator(self, context: DefenseContext) -> "torch.Generator":
        """A torch generator seeded with the defense seed (augmentations, patch positions)."""
        import torch

        return self.stream(context, f"generator-{len(context.streams)}", torch.Generator().manual_seed(context.seed))

    @staticmethod
    def stream(context: DefenseContext, name: str, rng: Any) -> Any:
        """Register ``rng`` (a torch, numpy or python generator) as a stream the training draws
        from, so a resumed stage continues it where it was; returns ``rng``."""
        context.streams[name] = rng
        return rng

