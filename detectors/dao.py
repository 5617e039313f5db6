"""DAO, dimensionality-aware outlier detection (Anderberg et al., SDM 2024), as Huang et al. (ICLR
2025, arXiv 2502.01385) use it on CLIP training pairs: the mean over a pair's k nearest
neighbours ``o`` of ``LID(o) * log(k-dist(pair) / k-dist(o))`` (the logarithm of the density ratio
``(k-dist(pair) / k-dist(o)) ** LID(o)``), with LID estimated by maximum likelihood from ``o``'s
own k nearest distances. Defaults as :mod:`.kdistance`.
"""

from __future__ import annotations

from clipbench.registry import register_detector

from .kdistance import NeighbourhoodDetector


@register_detector("dao")
class Dao(NeighbourhoodDetector):
    description = "dimensionality-aware outlier score of a pair's image embedding among images and captions"

    def combine(self, hood):
        ratio = hood.k_distance[:, None].clamp_min(1e-12) / hood.neighbour_k_distance.clamp_min(1e-12)
        # the official code's mapping: an undefined score ranks as most suspicious
        return (hood.neighbour_lid * ratio.log()).mean(dim=1).nan_to_num(nan=1000.0, posinf=1000.0, neginf=0.0)
