"""The attack contract: a typed config, a trigger artifact, a pure ``apply`` and seeded ``poison``.

Modules in this package import torch only inside methods, so listing attacks stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np

from clipbench.config import require
from clipbench.data import captions as caption_lib

if TYPE_CHECKING:
    import torch

    from clipbench.data.pairs import PairSet
    from clipbench.models import ClipModel


@dataclass
class PoisonManifest:
    """Which victim rows an attack rewrote, and the captions they now carry."""

    rows: np.ndarray
    captions: list[str]

    def to_json(self) -> dict:
        return {"rows": [int(r) for r in self.rows], "captions": list(self.captions)}

    @classmethod
    def from_json(cls, data: dict) -> "PoisonManifest":
        return cls(np.asarray(data["rows"], dtype=np.int64), list(data["captions"]))


def scaled(pixels_at_reference: float, image_size: int, reference_resolution: int) -> int:
    """Scale a length given at the papers' resolution (224 px) to ``image_size``, at least 1 px."""
    return max(1, int(round(pixels_at_reference * image_size / reference_resolution)))


class Attack:
    """Base class of attacks.

    ``prepare`` builds the trigger artifact once (``state``); ``apply`` is pure and deterministic
    given the trigger seed and the row ids, and is the same function for poisoning and for
    evaluation; ``poison`` picks rows (seeded) and rewrites their captions, and the victim's
    training applies ``apply`` to those rows' images.
    """

    Config: ClassVar[type]
    description: ClassVar[str] = ""
    source: ClassVar[str] = ""
    needs_clean_model: ClassVar[bool] = False
    registry_name: ClassVar[str] = ""

    def __init__(self, config: Any, seed: int, image_size: int):
        self.config = config
        self.seed = seed
        self.image_size = image_size
        self.state: dict[str, "torch.Tensor"] = {}

    @classmethod
    def default_config(cls) -> Any:
        return cls.Config()

    def prepare(self, clean: Optional["ClipModel"] = None, context: Optional[Any] = None) -> None:
        """Build the trigger artifact into ``self.state`` (tensors only)."""

    def load_state(self, state: dict[str, "torch.Tensor"]) -> None:
        self.state = dict(state)

    def apply(self, images: "torch.Tensor", ids: "torch.Tensor") -> "torch.Tensor":
        """Triggered copies of uint8 images ``N x 3 x S x S``; ``ids`` seed per-image randomness."""
        raise NotImplementedError

    def poison(self, pairs: "PairSet", count: int, target_index: int, target_name: str, rng: np.random.Generator) -> PoisonManifest:
        """Pick ``count`` rows uniformly (seeded) and give them captions naming the target.

        CleanCLIP and BadCLIP poison uniformly drawn rows and caption them with a template filled
        with the target class name (REFERENCE.md, "Poisoned captions").
        """
        require(count <= len(pairs), f"poison.count ({count}) is larger than the victim split ({len(pairs)} pairs)")
        rows = np.sort(rng.choice(len(pairs), size=count, replace=False))
        return PoisonManifest(rows, caption_lib.target_captions(target_name, count, rng))

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)
