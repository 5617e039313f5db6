"""Image-caption sets handed to training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .images import SplitImages


@dataclass
class PairSet:
    """Images, their labels, captions and stable row ids.

    ``images`` is a uint8 numpy array (``N x H x W`` or ``N x H x W x C``, decoded once: the
    ``tiny`` preset) or a :class:`clipbench.data.images.RowView` of a real-scale source (decoded
    per batch); see :data:`clipbench.data.images.SplitImages`. ``labels`` are class indices (-1
    where the data has captions only). ``ids`` identify each image in its source, so per-image
    trigger randomness depends on the image and not on the order it is visited in.
    """

    images: "SplitImages"
    labels: np.ndarray
    captions: list[str]
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> "PairSet":
        """The rows ``rows`` of this set, in that order."""
        return PairSet(self.images[rows], self.labels[rows], [self.captions[i] for i in rows], self.ids[rows])
