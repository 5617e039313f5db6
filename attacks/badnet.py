"""BadNet (Gu et al., 2017, arXiv 1708.06733): a small patch pasted on the image.

Default: a fixed patch whose pixels are drawn once from the trigger seed, at the bottom-right
corner (BackdoorBench's fixed-patch convention, docs/protocol.md). Named variants:

- ``pattern="cleanclip_noise"``: CleanCLIP's patch, the image's per-channel mean plus N(0, 1)
  noise in [0, 1] space, redrawn for every image (from the trigger seed and the image id);
- ``pattern="checkerboard"``: a black-and-white checkerboard;
- ``location="random"``: a per-image random position (CleanCLIP's choice), or ``"center"``.

Size: 16 px at 224 px in CleanCLIP/BadCLIP, scaled to the model's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clipbench.config import require
from clipbench.registry import register_attack

from .base import Attack, image_generator, scaled


@dataclass(frozen=True)
class BadNetConfig:
    """BadNet trigger settings; ``patch_size`` is in pixels at ``reference_resolution``."""

    patch_size: int = 16  # CleanCLIP / BadCLIP code: 16x16 at 224 px
    reference_resolution: int = 224
    pattern: Literal["fixed_noise", "checkerboard", "cleanclip_noise"] = "fixed_noise"
    location: Literal["bottom_right", "center", "random"] = "bottom_right"

    def validate(self) -> None:
        require(self.patch_size > 0, f"attack.patch_size must be positive, got {self.patch_size}")
        require(self.reference_resolution > 0, "attack.reference_resolution must be positive")
        require(
            self.patch_size <= self.reference_resolution,
            f"attack.patch_size ({self.patch_size}) is larger than the image ({self.reference_resolution} px)",
        )


def patch_offsets(location: str, image_size: int, patch: int, seed: int, ids) -> list[tuple[int, int]]:
    """Top-left corner of the patch for each image id."""
    import torch

    if location == "bottom_right":
        return [(image_size - patch, image_size - patch)] * len(ids)
    if location == "center":
        start = (image_size - patch) // 2
        return [(start, start)] * len(ids)
    offsets = []
    for image_id in ids.tolist():
        generator = image_generator(seed + 1, image_id)
        y, x = torch.randint(0, image_size - patch + 1, (2,), generator=generator).tolist()
        offsets.append((y, x))
    return offsets


def paste_pattern(images, pattern, offsets):
    """Copies of ``images`` with the uint8 ``pattern`` pasted at each image's (y, x) offset."""
    p = pattern.shape[-1]
    out = images.clone()
    for i, (y, x) in enumerate(offsets):
        out[i, :, y : y + p, x : x + p] = pattern
    return out


def square_footprint(offsets, patch: int, image_size: int):
    """Boolean N x 1 x S x S masks of a ``patch``-sized square at each offset."""
    import torch

    mask = torch.zeros((len(offsets), 1, image_size, image_size), dtype=torch.bool)
    for i, (y, x) in enumerate(offsets):
        mask[i, :, y : y + patch, x : x + patch] = True
    return mask


class SquarePatch:
    """Geometry shared by square-patch attacks: size scaled from ``reference_resolution``, the
    offsets of ``config.location`` and the footprint they declare."""

    @property
    def patch(self) -> int:
        return scaled(self.config.patch_size, self.image_size, self.config.reference_resolution)

    def offsets(self, ids, image_size: int) -> list[tuple[int, int]]:
        return patch_offsets(self.config.location, image_size, self.patch, self.seed, ids)

    def footprint(self, ids, image_size):
        return square_footprint(self.offsets(ids, image_size), self.patch, image_size)


@register_attack("badnet")
class BadNet(SquarePatch, Attack):
    Config = BadNetConfig
    description = "small patch on the image; fixed noise patch (default) or CleanCLIP's per-image noise"
    source = "Gu et al. 2017 (arXiv 1708.06733); CleanCLIP/BadCLIP code for the 16 px at 224 px size"

    def prepare(self, clean=None, context=None) -> None:
        import torch

        self.config.validate()
        p = self.patch
        if self.config.pattern == "fixed_noise":
            generator = torch.Generator().manual_seed(self.seed)
            pattern = torch.randint(0, 256, (3, p, p), generator=generator, dtype=torch.int64).to(torch.uint8)
        elif self.config.pattern == "checkerboard":
            grid = (torch.arange(p)[:, None] + torch.arange(p)[None, :]) % 2
            pattern = (grid * 255).to(torch.uint8).expand(3, p, p).contiguous()
        else:
            pattern = torch.zeros(0, dtype=torch.uint8)  # drawn per image
        self.state = {"pattern": pattern}

    def apply(self, images, ids):
        import torch

        p = self.patch
        out = images.clone()
        offsets = self.offsets(ids, images.shape[-1])
        for i, (y, x) in enumerate(offsets):
            if self.config.pattern == "cleanclip_noise":
                mean = images[i].float().mean(dim=(1, 2), keepdim=True) / 255.0
                noise = torch.randn((3, p, p), generator=image_generator(self.seed, int(ids[i])))
                patch = ((mean + noise).clamp(0, 1) * 255).round().to(torch.uint8)
            else:
                patch = self.state["pattern"]
            out[i, :, y : y + p, x : x + p] = patch
        return out

    def visible_trigger(self):
        pattern = self.state.get("pattern")
        return pattern if pattern is not None and pattern.numel() else None
