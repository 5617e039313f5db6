"""Batches fed to the model: decoded ahead of the step by worker processes for real-scale data.

Training and evaluation ask for a list of row batches (the order is decided in the main process,
from the run's seeded generator) and receive each batch's uint8 images at the model's resolution
with a per-batch ``transform`` applied, the trigger (docs/protocol.md, "Trigger space"), in that
order. In-memory images (the ``tiny`` preset) are indexed in the main process, as fast as before;
lazy real-scale images (:class:`clipbench.data.images.LazyImages`) are decoded and triggered by a
``torch.utils.data.DataLoader`` with ``workers`` processes, each batch prefetched ``prefetch``
batches ahead, pinned when the model is on a GPU. Results are identical for any worker count.
:class:`FeedClock` measures how long the step waited for data.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from .images import LazyImages, ModelImages

#: (uint8 images N x 3 x S x S, the batch's rows) -> uint8 images; applied where the batch is decoded.
BatchTransform = Callable[[torch.Tensor, np.ndarray], torch.Tensor]
#: Batches prefetched per worker (torch's ``prefetch_factor``).
DEFAULT_PREFETCH = 4


def default_feed_workers() -> int:
    """Decode processes: ``CLIPBENCH_WORKERS`` if set, else one per CPU core but one, at most 8."""
    value = os.environ.get("CLIPBENCH_WORKERS")
    if value is not None and value.strip().isdigit():
        return int(value)
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class _RowBatches(torch.utils.data.Dataset):
    """Item ``i`` is batch ``i``: its rows decoded at the model's resolution, then transformed."""

    def __init__(self, images: LazyImages, batches: Sequence[np.ndarray], transform: Optional[BatchTransform]):
        self.source, self.size = images.source, images.size
        self.batches, self.transform = batches, transform

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[np.ndarray, torch.Tensor]:
        rows = np.asarray(self.batches[index], dtype=np.int64)
        images = self.source.load_images(rows, self.size)
        return rows, (images if self.transform is None else self.transform(images, rows))


def _keep(item):
    return item


@dataclass
class FeedClock:
    """Time the consumer spent waiting for batches, against the wall time of the whole loop."""

    waited: float = 0.0
    batches: int = 0
    images: int = 0
    started: float = field(default_factory=time.perf_counter)

    def summary(self) -> dict:
        wall = max(time.perf_counter() - self.started, 1e-9)
        return {"data_wait_s": round(self.waited, 3), "wall_s": round(wall, 3),
                "data_wait_fraction": round(self.waited / wall, 4), "images_per_s": round(self.images / wall, 2)}


def feed(images: ModelImages, batches: Sequence[np.ndarray], transform: Optional[BatchTransform] = None,
         device: torch.device = torch.device("cpu"), workers: Optional[int] = None, prefetch: int = DEFAULT_PREFETCH,
         clock: Optional[FeedClock] = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(rows, images)`` for each of ``batches`` in order (see the module docstring)."""
    clock = clock if clock is not None else FeedClock()
    workers = default_feed_workers() if workers is None else workers
    if isinstance(images, LazyImages) and workers > 0 and len(batches):
        loader = torch.utils.data.DataLoader(
            _RowBatches(images, batches, transform), batch_size=None, shuffle=False, num_workers=min(workers, len(batches)),
            prefetch_factor=prefetch, pin_memory=device.type == "cuda", collate_fn=_keep, persistent_workers=False,
            generator=torch.Generator().manual_seed(0))  # leaves the global RNG untouched (resumed runs stay exact)
        iterator = iter(loader)
    else:
        def in_process():
            for rows in batches:
                rows = np.asarray(rows, dtype=np.int64)
                batch = images[rows]
                yield rows, (batch if transform is None else transform(batch, rows))

        iterator = in_process()
    while True:
        start = time.perf_counter()
        try:
            rows, batch = next(iterator)
        except StopIteration:
            return
        clock.waited += time.perf_counter() - start
        clock.batches += 1
        clock.images += len(rows)
        yield rows, batch
