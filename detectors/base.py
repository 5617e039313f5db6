"""The detector contract: a typed config with cited defaults, a level, and ``score``.

A detector returns scores only, higher meaning more suspicious; the harness alone holds the
ground truth (the poison manifest, the trigger, which models are poisoned) and turns scores into
AUROC, AUPRC and TPR at fixed FPR (:mod:`clipbench.detection_metrics`). Levels:

- ``data``: one score per training pair of the poisoned victim split. The detector gets the
  pairs' image and text embeddings under the model its method names (the victim, or the clean
  model), in the split's order, never which rows are poisoned;
- ``input``: one score per evaluation image, run on clean and on triggered images;
- ``model``: one score per model, run on the clean model and on every victim.

Modules in this package import torch only inside methods, so listing detectors stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from clipbench.method import Method

if TYPE_CHECKING:
    import numpy as np
    import torch

    from clipbench.models import ClipModel

Level = Literal["data", "input", "model"]
#: Which model a data-level detector embeds the pairs with.
EmbeddingModel = Literal["victim", "clean"]


@dataclass
class PairEmbeddings:
    """What a data-level detector is handed: one row per training pair, in the split's order.

    ``images`` and ``texts`` are the encoders' outputs (``N x D``, not normalised: a detector that
    wants cosine geometry normalises them itself); ``seed`` is the cell's detector sub-seed;
    ``model`` is the model that produced them, for a detector that needs more than embeddings.
    """

    images: "torch.Tensor"
    texts: "torch.Tensor"
    seed: int
    model: Optional["ClipModel"] = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class InputImages:
    """What an input-level detector is handed: uint8 images ``N x 3 x S x S`` at the model's
    resolution (clean and triggered evaluation images, shuffled together; which are triggered is
    not said), the model under test with its ``pipeline`` (``pipeline.pixels`` makes model input),
    the zero-shot ``classifier`` (``D x C``, normalised class embeddings), ``reference`` clean
    held-out images (the scenario's defense split; indexing rows gives a uint8 tensor, and
    real-scale data is decoded only for the rows indexed) and the sub-seed."""

    images: "torch.Tensor"
    model: "ClipModel"
    pipeline: Any
    classifier: "torch.Tensor"
    reference: Any
    seed: int
    device: Any = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class ModelUnderTest:
    """What a model-level detector is handed: the model (``model.model`` is the open_clip module),
    its ``pipeline``, ``shadow`` clean images at its resolution (the scenario's defense split,
    indexed like ``InputImages.reference``; DECREE's shadow set), the sub-seed and the device. Not
    whether the model is poisoned."""

    model: "ClipModel"
    pipeline: Any
    shadow: Any
    seed: int
    device: Any = None


def check_embedding_model(detector_cls: Any, scenario: Any) -> None:
    """A detector that embeds with the clean model has none to use under the pre-training threat
    model: the clean reference there is trained on the very pairs being scored, without their
    poison, which no defender holds. One clear error, before anything runs."""
    from clipbench.config import require

    require(not (getattr(scenario, "from_scratch", False) and getattr(detector_cls, "embedding_model", "") == "clean"),
            f"detector {detector_cls.registry_name or detector_cls.__name__} embeds with a clean model, which "
            "scenario.threat_model=pretrain has none of (every model there is trained from scratch on the poisoned pairs)")


class Detector(Method):
    """Base class of detectors: ``Config`` (a dataclass), ``level`` and ``score``."""

    level: ClassVar[Level] = "data"
    #: For data-level detectors: whose embeddings the method uses.
    embedding_model: ClassVar[EmbeddingModel] = "victim"

    def score(self, inputs: Any) -> "np.ndarray":
        """One float per item (pair, image or model), higher = more suspicious."""
        raise NotImplementedError

    @classmethod
    def check_scenario(cls, config: Any, scenario: Any) -> None:
        """Reject a config the scenario's splits cannot serve, before anything runs (default:
        nothing; ``scenario`` is a :class:`clipbench.data.scenario.ScenarioConfig`)."""


class DataDetector(Detector):
    """A detector of poisoned training pairs (:class:`PairEmbeddings` in, one score per pair out)."""

    level: ClassVar[Level] = "data"

    def score(self, inputs: PairEmbeddings) -> "np.ndarray":
        raise NotImplementedError


class InputDetector(Detector):
    """A detector of triggered inputs (:class:`InputImages` in, one score per image out)."""

    level: ClassVar[Level] = "input"

    def score(self, inputs: InputImages) -> "np.ndarray":
        raise NotImplementedError


class ModelDetector(Detector):
    """A detector of backdoored models (:class:`ModelUnderTest` in, one score out)."""

    level: ClassVar[Level] = "model"

    def score(self, inputs: ModelUnderTest) -> "np.ndarray":
        """A one-element array: the model's score."""
        raise NotImplementedError
