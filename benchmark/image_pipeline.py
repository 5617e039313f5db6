"""The path an image takes to the model, and the one place where a trigger enters it.

``decode -> to_model_resolution (the model's own resize + centre crop, uint8) -> trigger (uint8)
-> normalize (float, the model's mean/std)``. Poisoning, CA and ASR all use this path, so a
trigger drawn at the model's input resolution is exactly what the model sees (docs/protocol.md,
"Trigger space"). Triggers work on uint8 tensors of shape ``N x 3 x S x S``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

#: A trigger: (uint8 images N x 3 x S x S, int64 row ids N) -> triggered uint8 images.
TriggerFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ImagePipeline:
    """Resize/crop and normalisation taken from an open_clip model's ``preprocess_cfg``."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> "ImagePipeline":
        cfg = getattr(model.visual, "preprocess_cfg", None) or {}
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        if isinstance(size, (tuple, list)):
            size = size[0]
        return cls(
            size=int(size),
            mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
            std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
            interpolation=cfg.get("interpolation", "bicubic"),
        )

    def to_model_resolution(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Resize the shorter side to ``size``, centre-crop, and return uint8 ``N x 3 x S x S``.

        Accepts ``N x H x W`` (grayscale), ``N x H x W x C`` or ``N x C x H x W`` uint8 arrays.
        """
        tensor = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if tensor.ndim == 3:
            tensor = tensor[:, None]
        elif tensor.ndim == 4 and tensor.shape[-1] in (1, 3) and tensor.shape[1] not in (1, 3):
            tensor = tensor.permute(0, 3, 1, 2)
        if tensor.shape[1] == 1:
            tensor = tensor.expand(-1, 3, -1, -1)
        height, width = tensor.shape[-2:]
        if (height, width) == (self.size, self.size):
            return tensor.to(torch.uint8).contiguous()
        scale = self.size / min(height, width)
        new_h, new_w = max(self.size, round(height * scale)), max(self.size, round(width * scale))
        out = []
        for chunk in tensor.split(4096):
            resized = F.interpolate(chunk.float(), size=(new_h, new_w), mode=self.interpolation, antialias=True, align_corners=False)
            top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
            cropped = resized[:, :, top : top + self.size, left : left + self.size]
            out.append(cropped.round().clamp(0, 255).to(torch.uint8))
        return torch.cat(out).contiguous()

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``N x 3 x S x S`` -> float32, scaled to [0, 1] then standardised."""
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        pixels = images.to(torch.float32, copy=True)  # in place below: equal to (x / 255 - mean) / std bit for bit
        return pixels.div_(255.0).sub_(mean).div_(std)

    def pixels(self, images: torch.Tensor, device: Optional[torch.device] = None) -> torch.Tensor:
        """uint8 images -> the model's float input on ``device`` (default: where the images are):
        the uint8 batch crosses to the device (a quarter of the bytes of floats), is standardised
        there (:meth:`normalize`, the same arithmetic on any device), and goes channels_last on a
        GPU (:func:`clipbench.models.place`)."""
        device = images.device if device is None else torch.device(device)
        pixels = self.normalize(images.to(device, non_blocking=True))
        return pixels.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else pixels

    def model_input(self, images: torch.Tensor, ids: torch.Tensor, trigger: Optional[TriggerFn] = None,
                    device: Optional[torch.device] = None) -> torch.Tensor:
        """The single entry point of triggers: apply ``trigger`` (if any) in uint8 space where the
        images were decoded, then normalise on ``device`` (default: where the images are; :meth:`pixels`)."""
        if trigger is not None:
            images = trigger(images, ids)
        return self.pixels(images, device)
