"""The attack contract: a typed config, a trigger artifact, a pure ``apply`` and seeded ``poison``.

Modules in this package import torch only inside methods, so listing attacks stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np

from clipbench.config import require

if TYPE_CHECKING:
    import torch

    from clipbench.data.captions import PoisonCaptions
    from clipbench.data.pairs import PairSet
    from clipbench.data.splits import ScenarioData
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import ClipModel


@dataclass
class PoisonManifest:
    """Which victim rows an attack rewrote, and the captions they now carry.

    ``noise_rows`` are extra rows an attack transforms without relabelling (WaNet's noise mode).
    """

    rows: np.ndarray
    captions: list[str]
    noise_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def to_json(self) -> dict:
        return {"rows": [int(r) for r in self.rows], "captions": list(self.captions),
                "noise_rows": [int(r) for r in self.noise_rows]}

    @classmethod
    def from_json(cls, data: dict) -> "PoisonManifest":
        return cls(np.asarray(data["rows"], dtype=np.int64), list(data["captions"]),
                   np.asarray(data.get("noise_rows", []), dtype=np.int64))


@dataclass
class AttackContext:
    """What ``prepare`` may use: the attacker's (victim) pairs at the model's resolution, the
    model's image pipeline, the target class, the device, and the zero-shot class names (for data
    whose pairs carry captions only, such as CC3M); the evaluation images only for attacks that
    target them (targeted poisoning)."""

    pairs: "PairSet"
    images: "torch.Tensor"
    pipeline: "ImagePipeline"
    target_index: int
    target_name: str
    device: "torch.device"
    classnames: tuple = ()
    #: The evaluation split's images (indexing rows gives a uint8 tensor; real-scale data stays
    #: lazy) and labels, for an attack that sets ``needs_evaluation_images``.
    evaluation_images: Optional[Any] = None
    evaluation_labels: Optional[np.ndarray] = None


def image_generator(seed: int, image_id: int):
    """A torch generator for one image, from a trigger seed and the image's stable id."""
    import torch

    return torch.Generator().manual_seed((seed * 1_000_003 + int(image_id)) % (2**63 - 1))


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
    #: Targeted poisoning picks its targets among the evaluation images.
    needs_evaluation_images: ClassVar[bool] = False
    #: ``backdoor`` (a trigger; ASR under it) or ``targeted`` (success on chosen images,
    #: :meth:`targeted_metrics` instead of the backdoor metrics).
    kind: ClassVar[str] = "backdoor"
    registry_name: ClassVar[str] = ""

    def __init__(self, config: Any, seed: int, image_size: int):
        self.config = config
        self.seed = seed
        self.image_size = image_size
        self.state: dict[str, "torch.Tensor"] = {}

    @classmethod
    def default_config(cls) -> Any:
        return cls.Config()

    @classmethod
    def check_data(cls, config: Any, scenario: "ScenarioData") -> None:
        """Check ``config`` against the scenario's data before anything runs (called for attacks
        that set ``needs_evaluation_images``); raise :class:`clipbench.errors.ClipbenchError`."""

    def prepare(self, clean: Optional["ClipModel"] = None, context: Optional[AttackContext] = None) -> None:
        """Build the trigger artifact into ``self.state`` (tensors only)."""

    def load_state(self, state: dict[str, "torch.Tensor"]) -> None:
        self.state = dict(state)

    def apply(self, images: "torch.Tensor", ids: "torch.Tensor") -> "torch.Tensor":
        """Triggered copies of uint8 images ``N x 3 x S x S``; ``ids`` seed per-image randomness."""
        raise NotImplementedError

    def training_trigger(self, manifest: PoisonManifest, pairs: "PairSet") -> tuple[np.ndarray, Any]:
        """Rows the victim's training transforms and the function it applies to them.

        Poisoned rows get :meth:`apply` (the evaluation trigger, unchanged); an attack with
        ``noise_rows`` routes those rows to its ``apply_noise_mode``.
        """
        if not len(manifest.noise_rows):
            return manifest.rows, self.apply
        import torch

        noise_ids = torch.as_tensor(pairs.ids[manifest.noise_rows])

        def transform(images: "torch.Tensor", ids: "torch.Tensor") -> "torch.Tensor":
            noisy = torch.isin(ids, noise_ids)
            out = images.clone()
            if (~noisy).any():
                out[~noisy] = self.apply(images[~noisy], ids[~noisy])
            if noisy.any():
                out[noisy] = self.apply_noise_mode(images[noisy], ids[noisy])
            return out

        return np.union1d(manifest.rows, manifest.noise_rows), transform

    def footprint(self, ids: "torch.Tensor", image_size: int) -> "torch.Tensor":
        """Boolean ``N x 1 x S x S``: where the trigger may change pixels (default: everywhere)."""
        import torch

        return torch.ones((len(ids), 1, image_size, image_size), dtype=torch.bool)

    def visible_trigger(self) -> Optional["torch.Tensor"]:
        """The trigger pattern itself as a uint8 image ``3 x h x w``, when it has one."""
        return None

    def poison(self, pairs: "PairSet", count: int, target_index: int, language: "PoisonCaptions", rng: np.random.Generator,
               label_consistent: bool = False) -> PoisonManifest:
        """Pick ``count`` rows (seeded) and give them captions naming the target, worded in the
        scenario's ``language`` (its templates, the target's name and synonyms).

        CleanCLIP and BadCLIP poison uniformly drawn rows and caption them with a template filled
        with the target class name (docs/protocol.md, "Poisoned captions"). ``label_consistent``
        draws only rows of the target class and keeps their own captions (the label-consistent
        variant in docs/protocol.md, "Trigger parameters").
        """
        require(count <= len(pairs), f"poison.count ({count}) is larger than the victim split ({len(pairs)} pairs)")
        if label_consistent:
            candidates = np.nonzero(np.asarray(pairs.labels) == target_index)[0]
            require(count <= len(candidates), f"poison.count ({count}) is larger than the {len(candidates)} "
                                              "target-class pairs a label-consistent attack can use")
            rows = np.sort(rng.choice(candidates, size=count, replace=False))
            return PoisonManifest(rows, [pairs.captions[int(r)] for r in rows])
        rows = np.sort(rng.choice(len(pairs), size=count, replace=False))
        return PoisonManifest(rows, self.poisoned_captions(language, count, rng))

    def poisoned_captions(self, language: "PoisonCaptions", count: int, rng: np.random.Generator) -> list[str]:
        """Captions of poisoned rows: a random template of the scenario filled with the target's class name."""
        return language.named(None, count, rng)

