""":class:`LazyImages` wraps a source so that training and evaluation loops can index it like the
uint8 ``N x 3 x S x S`` image tensor of the in-memory scenario. Images are resized as open_clip's
preprocessing does: shorter side to ``S`` (bicubic, PIL's antialiasing resize), centre crop, then
conversion to RGB (:func:`clipbench.data.sources.base.square_rgb`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np
import torch

from .base import Rows, SourceReport, as_row_indices, default_workers


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
