"""Image augmentation on uint8 batches at the model's resolution, for the unimodal losses of
CleanCLIP, RoCLIP and SafeCLIP.

CleanCLIP uses AutoAugment at 224 px (docs/protocol.md). At the few tens of pixels of the ``tiny``
preset, AutoAugment's shears and posterisation destroy most of a 32 px image, so the default here
is a SimCLR-style view suited to any resolution: a random resized crop (scale 0.6-1), a
horizontal flip and brightness/contrast jitter of ±0.3. ``policy="autoaugment"`` uses
torchvision's ImageNet AutoAugment instead, as CleanCLIP does. ``policy="simclr_strong"`` is the
pipeline of RoCLIP's and SafeCLIP's released code (:func:`strong_view`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Policy = Literal["simclr", "simclr_strong", "autoaugment"]

#: The resolution the released pipelines were written for; kernel sizes and blur widths scale from it.
REFERENCE_RESOLUTION = 224


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


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high, generator=generator))


def _crop_box(size: int, generator: torch.Generator, scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop`` box (ten tries, then the whole image), drawn from ``generator``."""
    for _ in range(10):
        area = size * size * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, math.log(ratio[0]), math.log(ratio[1])))
        width, height = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < width <= size and 0 < height <= size:
            top = int(torch.randint(0, size - height + 1, (1,), generator=generator))
            left = int(torch.randint(0, size - width + 1, (1,), generator=generator))
            return top, left, height, width
    return 0, 0, size, size


def strong_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """RoCLIP's and SafeCLIP's image augmentation (their released ``ImageTransform``), image by image:
    ``RandomResizedCrop`` (scale 0.08-1, ratio 3/4-4/3), horizontal flip (p 0.5),
    ``ColorJitter(0.5, 0.5, 0.5, 0.1)`` (p 0.8, the four in random order), grayscale (p 0.2) and
    a Gaussian blur of kernel 21 and sigma 0.1-2 (always). At 224 px these are the code's values;
    at other resolutions the blur's kernel and sigma scale with the image (kernel 3 at 32 px), so
    the view removes the same share of detail. uint8 in, uint8 out; every draw from ``generator``."""
    from .torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from torchvision.transforms.v2 import functional as TF

    size = images.shape[-1]
    factor = size / REFERENCE_RESOLUTION
    kernel = max(3, int(round(21 * factor)) // 2 * 2 + 1)
    jitters = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    views = []
    for image in images:
        top, left, height, width = _crop_box(size, generator, (0.08, 1.0), (3 / 4, 4 / 3))
        view = TF.resized_crop(image, top, left, height, width, [size, size], antialias=True)
        if _uniform(generator, 0, 1) < 0.5:
            view = TF.horizontal_flip(view)
        if _uniform(generator, 0, 1) < 0.8:
            for index in torch.randperm(4, generator=generator).tolist():
                view = (TF.adjust_hue(view, _uniform(generator, -0.1, 0.1)) if index == 3
                        else jitters[index](view, _uniform(generator, 0.5, 1.5)))
        if _uniform(generator, 0, 1) < 0.2:
            view = TF.rgb_to_grayscale(view, num_output_channels=3)
        sigma = _uniform(generator, 0.1, 2.0) * factor
        views.append(TF.gaussian_blur(view, [kernel, kernel], [sigma, sigma]))
    return torch.stack(views)


def augment(images: torch.Tensor, generator: torch.Generator, policy: Policy = "simclr") -> torch.Tensor:
    """An augmented view of a uint8 batch ``N x 3 x S x S`` under ``policy``."""
    if policy == "simclr":
        return simclr_view(images, generator)
    if policy == "simclr_strong":
        return strong_view(images, generator)
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
