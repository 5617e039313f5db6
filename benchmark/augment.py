"""Image augmentation on uint8 batches at the model's resolution, for the unimodal losses of
CleanCLIP, RoCLIP and SafeCLIP.

CleanCLIP uses AutoAugment at 224 px (docs/protocol.md). At the few tens of pixels of the ``tiny``
preset, AutoAugment's shears and posterisation destroy most of a 32 px image, so the default here
is a SimCLR-style view suited to any resolution: a random resized crop (scale 0.6-1), a
horizontal flip and brightness/contrast jitter of ±0.3. ``policy="autoaugment"`` uses
torchvision's ImageNet AutoAugment instead, as CleanCLIP does.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Policy = Literal["simclr", "autoaugment"]


def simclr_view(images: torch.Tensor, generator: torch.Generator, min_scale: float = 0.6, jitter: float = 0.3) -> torch.Tensor:
    """A random crop-resize, flip and brightness/contrast change of every image (uint8 in, uint8 out)."""
    n, _, size, _ = images.shape
    scale = torch.empty(n).uniform_(min_scale, 1.0, generator=generator).sqrt()
    centre = (torch.rand((n, 2), generator=generator) * 2 - 1) * (1 - scale[:, None])
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros((n, 2, 3))
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    views = F.grid_sample(images.float(), grid.to(images.device), mode="bilinear", padding_mode="reflection", align_corners=False)
    brightness = torch.empty((n, 1, 1, 1)).uniform_(1 - jitter, 1 + jitter, generator=generator).to(images.device)
    contrast = torch.empty((n, 1, 1, 1)).uniform_(1 - jitter, 1 + jitter, generator=generator).to(images.device)
    mean = views.mean(dim=(1, 2, 3), keepdim=True)
    views = (views - mean) * contrast + mean * brightness
    return views.round().clamp(0, 255).to(torch.uint8)


def augment(images: torch.Tensor, generator: torch.Generator, policy: Policy = "simclr") -> torch.Tensor:
    """An augmented view of a uint8 batch ``N x 3 x S x S`` under ``policy``."""
    if policy == "simclr":
        return simclr_view(images, generator)
    from .torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from torchvision.transforms import AutoAugment, AutoAugmentPolicy

    transform = AutoAugment(AutoAugmentPolicy.IMAGENET)
    state = torch.get_rng_state()
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    try:
        return torch.stack([transform(image) for image in images])
    finally:
        torch.set_rng_state(state)
