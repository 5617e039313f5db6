"""SLOF, the simplified local outlier factor (Schubert et al., 2014), as Huang et al. (ICLR 2025,
arXiv 2502.01385) use it on CLIP training pairs: a pair's k-distance divided by the k-distance of
each of its k nearest neighbours, averaged. Near 1 inside a cluster of even density; large for a
point in a sparser neighbourhood than its neighbours'. Defaults as :mod:`.kdistance`.
"""

from __future__ import annotations

from clipbench.registry import register_detector

from .kdistance import NeighbourhoodDetector


@register_detector("slof")
class Slof(NeighbourhoodDetector):
    description = "simplified local outlier factor of a pair's image embedding among images and captions"

    def combine(self, hood):
        return (hood.k_distance[:, None] / hood.neighbour_k_distance.clamp_min(1e-12)).mean(dim=1)
