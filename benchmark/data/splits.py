"""The materialised splits of a scenario and the seeded split of rows they come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import ClipbenchError
from .captions import PoisonCaptions
from .pairs import PairSet


@dataclass
class ScenarioData:
    """The materialised splits and the zero-shot task of a scenario."""

    pretrain: PairSet
    victim: PairSet
    defense: PairSet
    evaluation: PairSet
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    target_index: int
    sources: dict = field(default_factory=dict)  # per split: how many listed rows resolved (real data)
    poison_captions: Optional[PoisonCaptions] = None  # how poisoned captions are worded (default: simple template)

    @property
    def target_name(self) -> str:
        return self.classnames[self.target_index]

    @property
    def language(self) -> PoisonCaptions:
        """The wording of poisoned captions: the scenario's, or "a photo of a {target}." when it has none."""
        return self.poison_captions or PoisonCaptions(self.target_name, ("a photo of a {}.",), (self.target_name,))


def split_rows(total: int, sizes: list[int], seed: int) -> list[np.ndarray]:
    """Disjoint random row sets of the given sizes drawn from ``range(total)``."""
    if sum(sizes) > total:
        raise ClipbenchError(f"split sizes {sizes} exceed the {total} rows available")
    order = np.random.default_rng(seed).permutation(total)
    bounds = np.cumsum([0] + sizes)
    return [np.sort(order[bounds[i] : bounds[i + 1]]) for i in range(len(sizes))]
