"""clipbench's own architectures: open_clip JSON configs in ``model_configs/``.

Listing them reads file names only; open_clip is imported when a model is built. Any other
open_clip architecture name (``RN50``, ``ViT-B-32``, ...) is accepted by the model layer too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .registry import MODELS

CONFIG_DIR = Path(__file__).parent / "model_configs"

_DESCRIPTIONS = {
    "clipbench-tiny-vit": "ViT, 32 px, patch 8, width 128, 4 layers; text width 128, 2 layers, context 16 (preset tiny)",
    "clipbench-tiny-rn": "ModifiedResNet [1,1,1,1] width 32 mirroring RN50's design at 32 px; same text tower",
    "clipbench-micro-vit": "ViT, 16 px, 1 layer, width 32: for unit tests only",
    "clipbench-small-vit-224": "ViT, 224 px, patch 32, width 128, 4 layers; text width 128, 2 layers, context 32: "
                               "the real-scale input path (224 px decoding) on a CPU",
}


@dataclass(frozen=True)
class ModelSpec:
    """A clipbench architecture: its name, open_clip config file and description."""

    name: str
    config_path: Path
    description: str


for _path in sorted(CONFIG_DIR.glob("*.json")):
    MODELS.register(_path.stem)(ModelSpec(_path.stem, _path, _DESCRIPTIONS.get(_path.stem, "")))


def architecture_digest(name: str) -> "str | None":
    """sha256 of a clipbench architecture's JSON config (``None`` for open_clip's own names).

    Part of the clean model's cache key, so editing a config file never reuses old weights.
    """
    import hashlib

    if name not in MODELS:
        return None
    return hashlib.sha256(MODELS.get(name).config_path.read_bytes()).hexdigest()
