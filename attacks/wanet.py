"""WaNet (Nguyen & Tran, ICLR 2021, arXiv 2102.10369): an imperceptible, fixed warping field.

A ``k x k`` grid of random offsets (from the trigger seed), normalised to mean absolute value 1,
upsampled bicubically to the image, scaled by ``s / S`` and added to the identity sampling grid;
the image is resampled through it (``grid_sample``). Default: the WaNet paper's k = 4, s = 0.5
(BackdoorBench; docs/protocol.md). Variant: CleanCLIP's k = 224, s = 1 (``k=224 s=1``; ``k`` is
capped at the image size).

Noise mode (WaNet's "cross" samples) is optional: with ``cross_ratio > 0``, that many extra rows
per poisoned row are warped by the field plus random noise (drawn once per image id, so the same
in every epoch) and keep their own captions, so
the model learns that only the exact field means the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipbench.config import require
from clipbench.registry import register_attack

from .base import Attack, image_generator


@dataclass(frozen=True)
class WaNetConfig:
    """Control-grid size ``k``, warping strength ``s`` and the share of noise-mode rows."""

    k: int = 4  # WaNet paper / BackdoorBench; CleanCLIP code: 224
    s: float = 0.5  # WaNet paper / BackdoorBench; CleanCLIP code: 1.0
    cross_ratio: float = 0.0  # WaNet paper: 2 (noise mode); off by default here

    def validate(self) -> None:
        require(self.k >= 2, f"attack.k must be >= 2, got {self.k}")
        require(self.s >= 0, f"attack.s must be >= 0, got {self.s}")
        require(self.cross_ratio >= 0, f"attack.cross_ratio must be >= 0, got {self.cross_ratio}")


@register_attack("wanet")
class WaNet(Attack):
    Config = WaNetConfig
    description = "fixed warping field from a k x k random grid (k=4, s=0.5); CleanCLIP's k=224, s=1 as a variant"
    source = "Nguyen & Tran 2021 (arXiv 2102.10369); BackdoorBench defaults; CleanCLIP code for the variant"

    def prepare(self, clean=None, context=None) -> None:
        import torch
        import torch.nn.functional as F

        self.config.validate()
        size, k = self.image_size, min(self.config.k, self.image_size)
        generator = torch.Generator().manual_seed(self.seed)
        offsets = torch.rand((1, 2, k, k), generator=generator) * 2 - 1
        offsets = offsets / offsets.abs().mean()
        field = F.interpolate(offsets, size=(size, size), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        axis = torch.linspace(-1, 1, size)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        identity = torch.stack((xs, ys), dim=2)[None]
        grid = (identity + self.config.s * field / size).clamp(-1, 1)
        self.state = {"grid": grid[0].contiguous()}

    def _warp(self, images, grid):
        import torch.nn.functional as F

        warped = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
        return warped.round().clamp(0, 255).to(images.dtype)

    def apply(self, images, ids):
        grid = self.state["grid"].to(images.device).expand(len(images), -1, -1, -1)
        return self._warp(images, grid)

    def apply_noise_mode(self, images, ids):
        """WaNet's noise mode: the field plus per-image random offsets (for cross rows)."""
        import torch

        size = images.shape[-1]
        noise = torch.stack([
            torch.rand((size, size, 2), generator=image_generator(self.seed + 7, int(i))) * 2 - 1 for i in ids
        ]) / size
        grid = (self.state["grid"].to(images.device)[None] + noise).clamp(-1, 1)
        return self._warp(images, grid)

    def poison(self, pairs, count, target_index, language, rng, label_consistent=False):
        manifest = super().poison(pairs, count, target_index, language, rng, label_consistent)
        cross = int(round(self.config.cross_ratio * count))
        if cross:
            free = np.setdiff1d(np.arange(len(pairs)), manifest.rows)
            require(cross <= len(free), f"attack.cross_ratio asks for {cross} noise-mode rows; only {len(free)} are free")
            manifest.noise_rows = np.sort(rng.choice(free, size=cross, replace=False))
        return manifest
