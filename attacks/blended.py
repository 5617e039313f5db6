"""Blended (Chen et al., 2017, arXiv 1712.05526): a full-image pattern blended in at ratio alpha.

``x' = (1 - alpha) * x + alpha * pattern`` in uint8 space, rounded.

Default: a fixed uniform-noise pattern drawn once from the trigger seed, alpha 0.2
(BackdoorBench's alpha; docs/protocol.md). Named variants:

- ``pattern="cleanclip_noise"``: CleanCLIP's fresh U(0, 1) noise for every image (seeded by the
  trigger seed and the image id), alpha 0.2;
- ``pattern="image"``: an image file (``pattern_file``), resized to the model's resolution, as
  BackdoorBench's Hello Kitty pattern and BadCLIP's fixed-image variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clipbench.config import require
from clipbench.errors import ClipbenchError
from clipbench.registry import register_attack

from .base import Attack, image_generator


@dataclass(frozen=True)
class BlendedConfig:
    """Blend ratio and pattern source."""

    alpha: float = 0.2  # BackdoorBench and CleanCLIP: 0.2
    pattern: Literal["fixed_noise", "cleanclip_noise", "image"] = "fixed_noise"
    pattern_file: str = ""

    def validate(self) -> None:
        require(0.0 <= self.alpha <= 1.0, f"attack.alpha must be in [0, 1], got {self.alpha}")
        require(self.pattern != "image" or bool(self.pattern_file), "attack.pattern=image needs attack.pattern_file")
        if self.pattern == "image":
            load_pattern_image(self.pattern_file, 8)  # fails early, with the file's name, if unreadable


def load_pattern_image(path: str, size: int):
    """A uint8 ``3 x size x size`` tensor from an image file; a bad file is a one-line error."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.BICUBIC)
    except FileNotFoundError:
        raise ClipbenchError(f"attack.pattern_file {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ClipbenchError(f"attack.pattern_file {path} is not a readable image: {error}") from None
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


@register_attack("blended")
class Blended(Attack):
    Config = BlendedConfig
    description = "full-image pattern blended at alpha 0.2; fixed noise (default), per-image noise, or an image file"
    source = "Chen et al. 2017 (arXiv 1712.05526); alpha 0.2 from BackdoorBench and CleanCLIP"

    def prepare(self, clean=None, context=None) -> None:
        import torch

        self.config.validate()
        size = self.image_size
        if self.config.pattern == "fixed_noise":
            generator = torch.Generator().manual_seed(self.seed)
            pattern = torch.randint(0, 256, (3, size, size), generator=generator).to(torch.uint8)
        elif self.config.pattern == "image":
            pattern = load_pattern_image(self.config.pattern_file, size)
        else:
            pattern = torch.zeros(0, dtype=torch.uint8)
        self.state = {"pattern": pattern}

    def _patterns(self, images, ids):
        import torch

        if self.config.pattern != "cleanclip_noise":
            return self.state["pattern"].float().expand_as(images)
        return torch.stack([
            torch.rand(images.shape[1:], generator=image_generator(self.seed, int(i))) * 255 for i in ids
        ])

    def apply(self, images, ids):
        alpha = self.config.alpha
        blended = (1 - alpha) * images.float() + alpha * self._patterns(images, ids)
        return blended.round().clamp(0, 255).to(images.dtype)

    def visible_trigger(self):
        pattern = self.state.get("pattern")
        return pattern if pattern is not None and pattern.numel() else None
