"""Clean models that ship with clipbench: weights produced by clipbench's own pretraining, so that
a preset whose pretraining takes longer than its quick start does not pay it on every new cache.

A shipped model is a safetensors file in ``clipbench/weights`` beside a JSON manifest naming the
``clean`` stage key it was trained under (:func:`clipbench.plan.plan_cell`), the file's sha256,
the command that regenerates it and what it measured. The ``clean`` stage installs the file,
after checking its sha256, only when the cell's ``clean`` key equals the manifest's: any
``--set pretrain.*`` or scenario change gives another key, and that model is pretrained as usual.
``CLIPBENCH_SHIPPED_WEIGHTS=off`` pretrains even where a shipped model matches (to regenerate it).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .digests import file_sha256
from .errors import ClipbenchError

#: Where the shipped files live (package data of ``clipbench.weights``).
WEIGHTS_DIR = Path(__file__).parent / "weights"
#: Set to ``off`` (or ``0``, ``no``) to pretrain even where a shipped model matches.
ENV_SWITCH = "CLIPBENCH_SHIPPED_WEIGHTS"


@dataclass(frozen=True)
class ShippedModel:
    """One manifest: the weights file, its sha256, the ``clean`` key it stands for, and provenance."""

    name: str
    weights: Path
    sha256: str
    clean_key: str
    architecture: str
    command: str
    measured: dict

    def install(self, folder: Path) -> None:
        """Copy the weights into ``folder`` as a clipbench checkpoint, after checking the sha256."""
        from .models import SIDECAR_FILE, WEIGHTS_FILE

        if not self.weights.exists():
            raise ClipbenchError(f"shipped weights {self.weights} are missing (reinstall clipbench, or set {ENV_SWITCH}=off)")
        digest = file_sha256(self.weights)
        if digest != self.sha256:
            raise ClipbenchError(f"shipped weights {self.weights} have sha256 {digest[:12]}..., "
                                 f"the manifest says {self.sha256[:12]}... (a damaged file; reinstall clipbench)")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.weights, folder / WEIGHTS_FILE)
        sidecar = {"architecture": self.architecture, "sha256": self.sha256, "stage": "clean", "shipped": self.name}
        (folder / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2))


def _enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "on").strip().lower() not in ("off", "0", "no", "false")


def load_manifest(path: Path) -> ShippedModel:
    """Read one manifest (``<name>.json`` beside ``<name>.safetensors``)."""
    try:
        data = json.loads(path.read_text())
        return ShippedModel(name=path.stem, weights=path.with_suffix(".safetensors"), sha256=data["sha256"],
                            clean_key=data["clean_key"], architecture=data["architecture"],
                            command=data["command"], measured=data.get("measured", {}))
    except (OSError, ValueError, KeyError) as error:
        raise ClipbenchError(f"shipped model manifest {path} is unreadable: {error}") from None


def shipped_models(directory: Optional[Path] = None) -> list[ShippedModel]:
    """Every manifest in ``directory`` (default :data:`WEIGHTS_DIR`), by name; read once per
    process (a matrix plan asks for every cell)."""
    return list(_manifests(directory or WEIGHTS_DIR))


@functools.cache
def _manifests(directory: Path) -> tuple[ShippedModel, ...]:
    return tuple(load_manifest(p) for p in sorted(directory.glob("*.json")))


def ship(checkpoint: Path, name: str, clean_key: str, command: str, measured: dict,
         directory: Optional[Path] = None) -> ShippedModel:
    """Copy a checkpoint folder written by :func:`clipbench.models.save_checkpoint` into
    ``directory`` as ``<name>.safetensors`` with its manifest ``<name>.json``."""
    from .atomic import write_json
    from .models import SIDECAR_FILE, WEIGHTS_FILE

    directory = directory or WEIGHTS_DIR
    sidecar = json.loads((checkpoint / SIDECAR_FILE).read_text())
    weights = directory / f"{name}.safetensors"
    shutil.copyfile(checkpoint / WEIGHTS_FILE, weights)
    manifest = {"sha256": file_sha256(weights), "clean_key": clean_key, "architecture": sidecar["architecture"],
                "command": command, "measured": measured}
    write_json(directory / f"{name}.json", manifest)
    _manifests.cache_clear()
    return load_manifest(directory / f"{name}.json")


def shipped_for(clean_key: str, directory: Optional[Path] = None) -> Optional[ShippedModel]:
    """The shipped model trained under ``clean_key``, or ``None`` (also when switched off)."""
    if not _enabled():
        return None
    return next((m for m in shipped_models(directory) if m.clean_key == clean_key), None)
