"""The typed home of split images: in memory, or lazy views of a real-scale source.

A :class:`clipbench.data.pairs.PairSet` holds its images as :data:`SplitImages`: a uint8 numpy
array (Fashion-MNIST, decoded once) or a :class:`RowView` (rows of a real-scale source, nothing
decoded). At the model's resolution they become :data:`ModelImages`: a uint8 ``N x 3 x S x S``
tensor, or :class:`LazyImages`, which decodes the rows a batch asks for (shorter side to ``S``,
bicubic with antialiasing as open_clip's preprocessing does, centre crop, RGB;
:func:`clipbench.data.sources.base.square_rgb`). :func:`at_model_resolution` and
:func:`select_rows` work on both kinds.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch

from .sources.base import Rows, SourceReport, as_row_indices, default_workers

if TYPE_CHECKING:
    from ..image_pipeline import ImagePipeline


class RowView:
    """Rows ``rows`` of a source, indexable without decoding (indexing gives another view)."""

    def __init__(self, source: Any, rows: np.ndarray):
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> "RowView":
        return RowView(self.source, self.rows[index])

    def load_images(self, rows: Any, size: int) -> torch.Tensor:
        return self.source.load_images(self.rows[rows], size)


class LazyImages:
    """Behaves like the uint8 ``N x 3 x size x size`` image tensor the training/evaluation loops index.

    ``len(x)``, ``x.shape``, ``x[rows]`` (int array, list, slice, boolean mask or int) decode
    those rows and return a ``torch.Tensor`` in that order. ``source`` is anything with
    ``__len__`` and ``load_images(rows, size)``; a batch is split into ``workers`` contiguous
    chunks loaded on a small thread pool (PIL releases the GIL while decoding). Nothing is
    cached. Read-only: assigning rows is not supported.
    """

    dtype = torch.uint8

    def __init__(self, source, size: int, workers: Optional[int] = None) -> None:
        self.source = source
        self.size = int(size)
        self.workers = max(1, workers if workers is not None else default_workers())
        self._pool: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.source)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), 3, self.size, self.size))

    @property
    def report(self) -> Optional[SourceReport]:
        return getattr(self.source, "report", None)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="clipbench-decode")
            return self._pool

    def __getitem__(self, rows: Rows) -> torch.Tensor:
        single = isinstance(rows, (int, np.integer)) or (isinstance(rows, torch.Tensor) and rows.ndim == 0)
        positions = as_row_indices(rows, len(self))
        chunks = min(self.workers, len(positions) // 2)
        if chunks <= 1:
            images = self.source.load_images(positions, self.size)
        else:
            load = lambda part: self.source.load_images(part, self.size)
            images = torch.cat(list(self._executor().map(load, np.array_split(positions, chunks))))
        return images[0] if single else images

    def close(self) -> None:
        """Stop the decoding threads (a later index starts new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> "LazyImages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"source": self.source, "size": self.size, "workers": self.workers}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["source"], state["size"], state["workers"])

    def __repr__(self) -> str:
        name = getattr(self.source, "name", None) or type(self.source).__name__
        return f"LazyImages({name!r}, {len(self)} x 3 x {self.size} x {self.size})"


#: Images of a split as stored: uint8 numpy (N x H x W or N x H x W x C) or a lazy row view.
SplitImages = Union[np.ndarray, RowView]
#: Images at the model's resolution: uint8 ``N x 3 x S x S`` tensor, or a lazy decoder of one.
ModelImages = Union[torch.Tensor, LazyImages]


def at_model_resolution(images: SplitImages, pipeline: "ImagePipeline") -> ModelImages:
    """``images`` at the model's resolution: resized once in memory, or lazily per batch."""
    if isinstance(images, RowView):  # real-scale data: decoded per batch, never all at once
        return LazyImages(images, pipeline.size)
    return pipeline.to_model_resolution(images)


def select_rows(images: ModelImages, rows: np.ndarray) -> ModelImages:
    """``images[rows]`` that stays lazy for real-scale images (a SafeCLIP safe set of 400K rows
    must not be decoded at once); in-memory tensors are indexed as usual."""
    if isinstance(images, LazyImages) and isinstance(images.source, RowView):
        return LazyImages(images.source[rows], images.size, images.workers)
    return images[rows]
