"""k-distance (Huang et al., ICLR 2025, arXiv 2502.01385): a pair's score is the distance from its
image embedding to its k-th nearest neighbour among the images and captions of its reference
batch; backdoor pairs sit in sparse neighbourhoods, far from their k-th neighbour.

Defaults: ``k`` 16 and a reference batch of 1,024 pairs, the paper's (its configs train and
score with batch 1,024). Neighbourhoods are built as :mod:`clipbench.detectors.neighbourhood` says.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.config import require
from clipbench.registry import register_detector

from .base import DataDetector, PairEmbeddings


@dataclass(frozen=True)
class NeighbourhoodConfig:
    """The neighbourhood of Huang et al.: ``k`` nearest points in a reference batch of pairs."""

    k: int = 16  # Huang et al.: k = 16
    reference_size: int = 1024  # Huang et al.'s configs: batch 1024, each batch its own reference

    def validate(self) -> None:
        require(self.k >= 1, f"detector.k must be >= 1, got {self.k}")
        require(self.reference_size >= 2, f"detector.reference_size must be >= 2, got {self.reference_size}")


class NeighbourhoodDetector(DataDetector):
    """Shared scoring loop of the neighbourhood detectors: subclasses give :meth:`combine`."""

    Config = NeighbourhoodConfig
    source = "Huang et al. ICLR 2025 (arXiv 2502.01385); defaults from the official code"

    @classmethod
    def check_scenario(cls, config: NeighbourhoodConfig, scenario) -> None:
        from .neighbourhood import check_k

        check_k(config.k, scenario.victim_size, config.reference_size)

    def combine(self, hood):
        raise NotImplementedError

    def score(self, inputs: PairEmbeddings):
        from .neighbourhood import neighbourhoods, scatter

        hoods = neighbourhoods(inputs.images, inputs.texts, self.config.k, self.config.reference_size, inputs.seed)
        return scatter(len(inputs), [(hood.rows, self.combine(hood)) for hood in hoods])


@register_detector("kdistance")
class KDistance(NeighbourhoodDetector):
    description = "distance from a pair's image embedding to its k-th nearest image or caption"

    def combine(self, hood):
        return hood.k_distance
