"""Named sub-seeds derived from one root seed, so each random choice is reproducible on its own."""

from __future__ import annotations

import hashlib

import numpy as np


def sub_seed(root: int, name: str) -> int:
    """A 31-bit seed for the stream ``name`` derived from ``root`` (stable across runs and machines)."""
    digest = hashlib.sha256(f"clipbench:{root}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def numpy_rng(root: int, name: str) -> np.random.Generator:
    """A numpy generator for the stream ``name``."""
    return np.random.default_rng(sub_seed(root, name))
