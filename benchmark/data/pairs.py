"""In-memory image-caption sets handed to training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PairSet:
    """Images (uint8, N x H x W or N x C x H x W), their labels, captions and stable row ids.

    ``ids`` identify each image in its source split, so per-image trigger randomness depends on the
    image and not on the order it is visited in.
    """

    images: np.ndarray
    labels: np.ndarray
    captions: list[str]
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> "PairSet":
        """The rows ``rows`` of this set, in that order."""
        return PairSet(self.images[rows], self.labels[rows], [self.captions[i] for i in rows], self.ids[rows])
