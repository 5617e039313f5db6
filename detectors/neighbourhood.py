"""The local neighbourhood of each training pair, as Huang et al. (ICLR 2025, arXiv 2502.01385)
measure it for their k-distance, SLOF and DAO detectors.

Each pair's image embedding is a query; its reference set is the image and text embeddings of a
batch of pairs (the code scores each training batch against itself: batch 1024 in its configs),
less the pair's own image and own text. Distances are Euclidean between the encoders' outputs as
``encode_image`` / ``encode_text`` return them (the code does not normalise). Batches are
consecutive slices of a seeded permutation of the split, ``reference_size`` pairs each, a last
slice under half that size joined to the one before (:func:`reference_batches`), so every pair
is scored once, against the other pairs of its batch.

The k nearest reference points of a query, and those points' own k-distances and local
intrinsic dimensionalities over the whole reference set (less only themselves), are what the
three scores combine. Two departures from the code, both where its indexing is inconsistent:
the code's neighbour indices come from a distance row with the query's own image and text
removed but are used to index the reference set with them still in, which shifts every index
past the query's own position by one; and the code's query k-distance is the (k+1)-th nearest
point while its reference k-distances are the k-th. Here both are the k-th nearest point,
counted without the point itself (and, for a query, without its own caption).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from clipbench.config import require


@dataclass
class Neighbourhoods:
    """For each query of one reference batch: the distances to its ``k`` nearest reference points
    (ascending, ``B x k``), its k-distance (``B``), and for each of those neighbours, their own
    k-distance and LID (``B x k``)."""

    rows: np.ndarray
    nearest: torch.Tensor
    k_distance: torch.Tensor
    neighbour_k_distance: torch.Tensor
    neighbour_lid: torch.Tensor


def lid_mle(sorted_distances: torch.Tensor, k: int) -> torch.Tensor:
    """Local intrinsic dimensionality by maximum likelihood (Levina & Bickel, 2004; Amsaleg et
    al., 2015) from each row's ``k`` nearest distances: ``-k / sum_i log(d_i / d_k)``; the code's
    ``+1e-4`` inside the logarithm keeps a zero distance finite."""
    nearest = sorted_distances[:, :k]
    return -k / torch.log(nearest / nearest[:, -1:].clamp_min(1e-12) + 1e-4).sum(dim=1)


def reference_batches(n: int, reference_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each reference batch of ``n`` pairs: batches of ``reference_size``, a
    last batch under half that size joined to the one before it."""
    size = min(reference_size, n)
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < size // 2:
        starts.pop()
    return [(start, starts[i + 1] if i + 1 < len(starts) else n) for i, start in enumerate(starts)]


def check_k(k: int, n: int, reference_size: int) -> None:
    """Every query needs more than ``k`` reference points: ``2 x batch - 2`` in its smallest batch."""
    require(n >= 2, f"a neighbourhood detector needs at least 2 pairs, got {n}")
    smallest = min(stop - start for start, stop in reference_batches(n, reference_size))
    require(k < 2 * smallest - 2, f"detector.k={k} needs more than {k} reference points per pair, but the smallest "
                                  f"reference batch of {n} pairs holds {smallest} pairs, {2 * smallest - 2} points "
                                  "(lower detector.k or raise detector.reference_size)")


def neighbourhoods(images: torch.Tensor, texts: torch.Tensor, k: int, reference_size: int,
                   seed: int) -> Iterator[Neighbourhoods]:
    """Yield the neighbourhoods of every pair, one reference batch at a time."""
    n = images.shape[0]
    check_k(k, n, reference_size)
    order = np.random.default_rng(seed).permutation(n)
    for start, stop in reference_batches(n, reference_size):
        rows = order[start:stop]
        yield _batch(images[rows].double(), texts[rows].double(), rows, k)


def _batch(images: torch.Tensor, texts: torch.Tensor, rows: np.ndarray, k: int) -> Neighbourhoods:
    b = images.shape[0]
    points = torch.cat([images, texts])  # 2b reference points: images, then texts
    distances = torch.cdist(points, points)
    distances.fill_diagonal_(float("inf"))  # a point is not its own neighbour
    reference_sorted = distances.sort(dim=1).values
    reference_k_distance = reference_sorted[:, k - 1]
    reference_lid = lid_mle(reference_sorted, k)
    query = distances[:b].clone()
    query[torch.arange(b), torch.arange(b) + b] = float("inf")  # nor is a pair's own caption
    nearest, index = query.topk(k, dim=1, largest=False)
    return Neighbourhoods(rows=rows, nearest=nearest, k_distance=nearest[:, -1],
                          neighbour_k_distance=reference_k_distance[index], neighbour_lid=reference_lid[index])


def scatter(n: int, parts: list[tuple[np.ndarray, torch.Tensor]]) -> np.ndarray:
    """Per-batch scores back into the split's order."""
    out = np.full(n, np.nan)
    for rows, values in parts:
        out[rows] = values.numpy()
    return out
