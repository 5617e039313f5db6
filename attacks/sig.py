"""SIG (Barni et al., 2019, arXiv 1902.11237): a horizontal sinusoidal signal on the image.

``v(i, j) = delta * sin(2 pi j f / W)`` in uint8 units. Default: BadCLIP's code, delta 60/255 and
f 6, added to the image (docs/protocol.md). Variants: BackdoorBench's delta 40/255
(``delta=40``), and CleanCLIP's blending at 0.2 (``mode="blend"``:
``x' = 0.8 x + 0.2 v`` with the signed sinusoid ``v``, as CleanCLIP's code computes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clipbench.config import require
from clipbench.registry import register_attack

from .base import Attack


@dataclass(frozen=True)
class SigConfig:
    """Amplitude ``delta`` (uint8 units, out of 255) and frequency ``frequency`` (periods per width)."""

    delta: float = 60.0  # BadCLIP code: 60/255; BackdoorBench: 40/255
    frequency: float = 6.0  # both: f = 6
    mode: Literal["add", "blend"] = "add"
    blend_alpha: float = 0.2  # CleanCLIP code's blend ratio, used by mode=blend

    def validate(self) -> None:
        require(0 <= self.delta <= 255, f"attack.delta must be in [0, 255], got {self.delta}")
        require(self.frequency > 0, f"attack.frequency must be positive, got {self.frequency}")
        require(0.0 <= self.blend_alpha <= 1.0, f"attack.blend_alpha must be in [0, 1], got {self.blend_alpha}")


@register_attack("sig")
class Sig(Attack):
    Config = SigConfig
    description = "additive horizontal sinusoid, delta 60/255 and frequency 6 (BadCLIP); BackdoorBench's 40/255 as a variant"
    source = "Barni et al. 2019 (arXiv 1902.11237); BadCLIP code for delta and f"

    def prepare(self, clean=None, context=None) -> None:
        import math

        import torch

        self.config.validate()
        columns = torch.arange(self.image_size, dtype=torch.float32)
        wave = self.config.delta * torch.sin(2 * math.pi * columns * self.config.frequency / self.image_size)
        self.state = {"signal": wave.expand(self.image_size, -1).contiguous()}

    def apply(self, images, ids):
        signal = self.state["signal"].to(images.device)
        if self.config.mode == "blend":
            alpha = self.config.blend_alpha
            out = (1 - alpha) * images.float() + alpha * signal
        else:
            out = images.float() + signal
        return out.round().clamp(0, 255).to(images.dtype)

    def visible_trigger(self):
        import torch

        signal = self.state.get("signal")
        if signal is None:
            return None
        return (signal + 128).round().clamp(0, 255).to(torch.uint8).expand(3, -1, -1).contiguous()
