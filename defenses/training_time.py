"""Helpers for training-time defenses: slicing the poisoned training set while keeping its trigger."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clipbench.data.real import select_rows

if TYPE_CHECKING:
    from .base import DefenseContext


def subset(context: "DefenseContext", rows: np.ndarray) -> dict:
    """Keyword arguments for ``train_contrastive`` restricted to ``rows`` of the training set.

    Poisoned rows inside ``rows`` keep their trigger and their poisoned captions, so a defense
    that selects data never sees which rows were poisoned.
    """
    rows = np.asarray(rows, dtype=np.int64)
    captions = context.captions if context.captions is not None else context.pairs.captions
    poisoned = np.zeros(len(context.pairs), dtype=bool)
    if context.trigger_rows is not None:
        poisoned[context.trigger_rows] = True
    return {
        "images": select_rows(context.images, rows),
        "pairs": context.pairs.subset(rows),
        "captions": [captions[int(r)] for r in rows],
        "trigger_rows": np.nonzero(poisoned[rows])[0],
        "trigger": context.trigger,
    }


def whole(context: "DefenseContext") -> dict:
    """Keyword arguments for ``train_contrastive`` over the whole poisoned training set."""
    return subset(context, np.arange(len(context.pairs)))
