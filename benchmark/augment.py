"""Image augmentation on uint8 batches at the model's resolution, for the unimodal losses of
CleanCLIP, RoCLIP and SafeCLIP.

CleanCLIP uses AutoAugment at 224 px (docs/protocol.md). At the few tens of pixels of the ``tiny``
preset, AutoAugment's shears and posterisation destroy most of a 32 px image, so the default here
is a SimCLR-style view suited to any resolution: a random resized crop (scale 0.6-1), a
horizontal flip and brightness/contrast jitter of ±0.3. ``policy="autoaugment"`` uses
torchvision's ImageNet AutoAugment instead, as CleanCLIP does. ``policy="simclr_strong"`` is the
pipeline of RoCLIP's and SafeCLIP's released code (:func:`strong_view`), ``"noise_erasing"``
PAR's (:func:`noise_erasing_view`), and ``"none"`` the images unchanged.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

Policy = Literal["simclr", "simclr_strong", "autoaugment", "noise_erasing", "none"]

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


def _erase_box(size: int, generator: torch.Generator, scale: tuple[float, float]) -> tuple[int, int, int] | None:
    """(top, left, side) of the square the official code's ``RandomErasing`` picks (ratio 1, ten
    tries, the side below ``size - 4``), or None when every try fails."""
    for _ in range(10):
        area = size * size * float(torch.empty(()).uniform_(scale[0], scale[1], generator=generator))
        side = int(round(math.sqrt(area)))
        if 0 < side < size - 4:
            top = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            left = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            return top, left, side
    return None


def noise_erasing_view(images: torch.Tensor, generator: torch.Generator, mean: Sequence[float], noise_p: float = 0.5,
                       noise_std: float = 0.2, erase_p: float = 0.5,
                       erase_scale: tuple[float, float] = (0.005, 0.01)) -> torch.Tensor:
    """The official code's training view of a uint8 batch ``N x 3 x S x S`` (uint8 out): with
    probability ``noise_p`` each image gets ``clip(N(0, noise_std^2), 0, 1)`` added and is clipped
    to [0, 1]; then with probability ``erase_p`` a square of ``erase_scale`` of its area is set
    to the normalisation ``mean`` (0 after normalisation, the code's erasing value). Every draw
    comes from ``generator`` (PAR's code, ``utils.py``: its ``AddGaussianNoise`` and ``RandomErasing``;
    ``defenses/par.py`` says what it does line by line)."""
    n, _, size, _ = images.shape
    views = images.float().div(255.0)
    noisy = (torch.rand(n, generator=generator) < noise_p).to(images.device)
    noise = (torch.randn(views.shape, generator=generator) * noise_std).clamp(0, 1).to(images.device)
    views = torch.where(noisy[:, None, None, None], (views + noise).clamp(0, 1), views)
    views = views.mul(255.0).round().to(torch.uint8)
    fill = torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8, device=images.device)[:, None, None]
    for row in range(n):
        if float(torch.rand((), generator=generator)) < erase_p:
            box = _erase_box(size, generator, erase_scale)
            if box is not None:
                top, left, side = box
                views[row, :, top:top + side, left:left + side] = fill
    return views


def augment(images: torch.Tensor, generator: torch.Generator, policy: Policy = "simclr",
            mean: Sequence[float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """An augmented view of a uint8 batch ``N x 3 x S x S`` under ``policy`` (``mean``, the
    model's normalisation mean, is the colour ``noise_erasing`` erases with)."""
    if policy == "none":
        return images
    if policy == "noise_erasing":
        return noise_erasing_view(images, generator, mean)
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
