"""A thin layer over open_clip: build models, tokenizers, and safe checkpoints.

Checkpoints are safetensors files with a JSON sidecar holding the architecture name and the file's
sha256 (docs/design.md, "Reliability and security"); loading verifies both and never unpickles.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import torch

from .digests import file_sha256
from .errors import ClipbenchError
from .model_zoo import CONFIG_DIR
from .registry import MODELS
from .torchvision_compat import import_open_clip

WEIGHTS_FILE = "model.safetensors"
SIDECAR_FILE = "model.json"


@lru_cache(maxsize=1)
def _open_clip():
    open_clip = import_open_clip()
    open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def check_model_name(name: str) -> None:
    """Raise a one-line error unless ``name`` is a clipbench or open_clip architecture."""
    if name in MODELS.names():
        return
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        import difflib

        valid = MODELS.names() + open_clip.list_models()
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ClipbenchError(
            f"unknown model {name!r}; valid: {', '.join(MODELS.names())} or any open_clip architecture.{hint}"
        )


def check_pretrained(name: str, pretrained: str) -> None:
    """Raise a one-line error unless ``pretrained`` is a clipbench checkpoint folder, a weights
    file, or an open_clip tag of architecture ``name`` (checked before anything is computed)."""
    path = Path(pretrained).expanduser()
    if (path / SIDECAR_FILE).exists() or path.is_file() or pretrained.startswith("hf-hub:"):
        return
    if path.is_dir():
        raise ClipbenchError(f"--pretrained {pretrained}: the folder holds no clipbench checkpoint ({SIDECAR_FILE} missing)")
    tags = [] if name in MODELS.names() else list(_open_clip().list_pretrained_tags_by_model(name))
    if pretrained in tags:
        return
    known = f"open_clip tags of {name}: {', '.join(tags)}" if tags else f"{name} has no open_clip pretrained tags"
    raise ClipbenchError(f"--pretrained {pretrained}: no such checkpoint folder or file, and not a tag ({known})")


@dataclass
class ClipModel:
    """An open_clip model with its tokenizer and architecture name."""

    model: torch.nn.Module
    tokenizer: Any
    name: str
    weights_sha256: Optional[str] = None  # set when loaded from a checkpoint

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        return _tokenize_cached(self.tokenizer, tuple(captions))


_TOKEN_CACHE: dict[tuple[int, str], torch.Tensor] = {}
_TOKEN_CACHE_LIMIT = 200_000


def _tokenize_cached(tokenizer: Any, captions: tuple[str, ...]) -> torch.Tensor:
    """Tokenize captions, caching each distinct caption (templated captions repeat a lot)."""
    key = id(tokenizer)
    if len(_TOKEN_CACHE) > _TOKEN_CACHE_LIMIT:  # augmented captions are mostly unique: bound the cache
        _TOKEN_CACHE.clear()
    missing = [c for c in dict.fromkeys(captions) if (key, c) not in _TOKEN_CACHE]
    if missing:
        tokens = tokenizer(missing)
        for caption, row in zip(missing, tokens):
            _TOKEN_CACHE[(key, caption)] = row
    return torch.stack([_TOKEN_CACHE[(key, c)] for c in captions])


def create_model(name: str, pretrained: Optional[str] = None, seed: int = 0) -> ClipModel:
    """Build architecture ``name`` (randomly initialised from ``seed`` unless ``pretrained``).

    ``pretrained`` is an open_clip tag (``openai``), or a clipbench checkpoint folder, e.g. one
    written by ``clipbench checkpoint import`` from the papers' code.
    """
    check_model_name(name)
    if pretrained and (Path(pretrained).expanduser() / SIDECAR_FILE).exists():
        clip = load_checkpoint(Path(pretrained).expanduser())
        if clip.name != name:
            raise ClipbenchError(f"checkpoint {pretrained} holds a {clip.name} model, not {name}")
        return clip
    open_clip = _open_clip()
    torch.manual_seed(seed)
    root_logger = logging.getLogger()
    level = root_logger.level
    if pretrained is None:  # open_clip warns that no weights were loaded: that is the intent here
        root_logger.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(name, pretrained=pretrained)
    except Exception as error:  # download, file or format problems of pretrained weights
        if pretrained is None:
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ClipbenchError(f"cannot load pretrained weights {pretrained!r} for {name}: {first_line}") from None
    finally:
        root_logger.setLevel(level)
    return ClipModel(model=model, tokenizer=open_clip.get_tokenizer(name), name=name)


def place(clip: ClipModel, device: torch.device) -> ClipModel:
    """Move ``clip`` to ``device``; on a GPU its 4-D weights go channels_last, the layout cuDNN's
    convolutions run fastest in under bf16 (for a ViT only the patch embedding is convolutional)."""
    clip.model.to(device)
    if device.type == "cuda":
        clip.model.to(memory_format=torch.channels_last)
    return clip


def save_checkpoint(clip: ClipModel, folder: Path, extra: Optional[dict] = None) -> None:
    """Write ``model.safetensors`` and its ``model.json`` sidecar into ``folder``."""
    from .atomic import save_tensors

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in clip.model.state_dict().items()}
    save_tensors(folder / WEIGHTS_FILE, state)
    sidecar = {"architecture": clip.name, "sha256": file_sha256(folder / WEIGHTS_FILE), **(extra or {})}
    (folder / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2))


def load_checkpoint(folder: Path) -> ClipModel:
    """Load a checkpoint written by :func:`save_checkpoint`, verifying sha256 and architecture."""
    from safetensors.torch import load_file

    sidecar_path, weights = folder / SIDECAR_FILE, folder / WEIGHTS_FILE
    if not sidecar_path.exists() or not weights.exists():
        raise ClipbenchError(f"checkpoint {folder} is incomplete: needs {WEIGHTS_FILE} and {SIDECAR_FILE}")
    sidecar = json.loads(sidecar_path.read_text())
    if file_sha256(weights) != sidecar.get("sha256"):
        raise ClipbenchError(f"checkpoint {weights} does not match the sha256 in its sidecar")
    clip = create_model(sidecar["architecture"])
    load_state(clip.model, load_file(str(weights)), str(weights))
    clip.weights_sha256 = sidecar["sha256"]
    return clip


def checkpoint_logit_scale(folder: Path) -> Optional[float]:
    """The temperature (``exp(logit_scale)``) stored in a checkpoint written by
    :func:`save_checkpoint`, read without building the model; ``None`` if it has none."""
    from safetensors import safe_open

    try:
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as weights:
            return float(weights.get_tensor("logit_scale").exp()) if "logit_scale" in weights.keys() else None
    except (OSError, ValueError, RuntimeError):  # safetensors raises its own errors as these
        return None


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly; on mismatch, say which keys or shapes differ."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''} ({len(keys)})")
        raise ClipbenchError(f"{source} does not match the architecture: {'; '.join(parts)}")
    model.load_state_dict(state)
