"""Clean models that ship with clipbench: weights produced by clipbench's own pretraining, so that
a preset whose pretraining takes longer than its quick start does not pay it on every new cache.

A shipped model is a compact safetensors file in ``clipbench/weights`` (:mod:`clipbench.compact_weights`:
the weights less the rows that only weight decay ever touched, rebuilt from the seeded
initialisation) beside a JSON manifest naming the ``clean`` stage key it was trained under
(:func:`clipbench.plan.plan_cell`), the compact file's sha256, the sha256 of the checkpoint it
rebuilds, the command that regenerates it and what it measured. The ``clean`` stage installs it,
checking both digests, only when the cell's ``clean`` key equals the manifest's: any
``--set pretrain.*`` or scenario change gives another key, and that model is pretrained as usual.
``CLIPBENCH_SHIPPED_WEIGHTS=off`` pretrains even where a shipped model matches (to regenerate it).
"""

from __future__ import annotations

import functools
import json
import os
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
    """One manifest: the compact weights file and its sha256, the sha256 of the checkpoint it
    rebuilds (``sha256``), the seed of the initialisation it is rebuilt from, the ``clean`` key it
    stands for, and provenance."""

    name: str
    weights: Path
    file_sha256: str
    sha256: str
    init_seed: int
    clean_key: str
    architecture: str
    command: str
    measured: dict

    def install(self, folder: Path) -> None:
        """Rebuild the checkpoint into ``folder``, checking the compact file's sha256 before and the
        rebuilt checkpoint's after."""
        from safetensors.torch import load_file

        from .compact_weights import expand
        from .models import SIDECAR_FILE, WEIGHTS_FILE, create_model, load_state, save_checkpoint

        if not self.weights.exists():
            raise ClipbenchError(f"shipped weights {self.weights} are missing (reinstall clipbench, or set {ENV_SWITCH}=off)")
        digest = file_sha256(self.weights)
        if digest != self.file_sha256:
            raise ClipbenchError(f"shipped weights {self.weights} have sha256 {digest[:12]}..., "
                                 f"the manifest says {self.file_sha256[:12]}... (a damaged file; reinstall clipbench)")
        clip = create_model(self.architecture, None, seed=self.init_seed)
        try:
            state = expand(load_file(str(self.weights)), clip.model.state_dict())
        except (KeyError, RuntimeError, IndexError) as error:
            raise ClipbenchError(f"shipped weights {self.name} do not fit this open_clip's {self.architecture} "
                                 f"({error}); install the versions in constraints.txt, or set {ENV_SWITCH}=off") from None
        load_state(clip.model, state, str(self.weights))
        save_checkpoint(clip, folder, {"stage": "clean", "shipped": self.name})
        rebuilt = file_sha256(folder / WEIGHTS_FILE)
        if rebuilt != self.sha256:
            for leftover in (folder / WEIGHTS_FILE, folder / SIDECAR_FILE):
                leftover.unlink(missing_ok=True)
            raise ClipbenchError(f"shipped weights {self.name} rebuild to sha256 {rebuilt[:12]}..., not the manifest's "
                                 f"{self.sha256[:12]}...: the seeded initialisation differs under this torch or "
                                 f"open_clip version (install the versions in constraints.txt, or set {ENV_SWITCH}=off)")


def _enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "on").strip().lower() not in ("off", "0", "no", "false")


def load_manifest(path: Path) -> ShippedModel:
    """Read one manifest (``<name>.json`` beside ``<name>.safetensors``)."""
    try:
        data = json.loads(path.read_text())
        return ShippedModel(name=path.stem, weights=path.with_suffix(".safetensors"), file_sha256=data["file_sha256"],
                            sha256=data["sha256"], init_seed=int(data["init_seed"]), clean_key=data["clean_key"],
                            architecture=data["architecture"], command=data["command"], measured=data.get("measured", {}))
    except (OSError, ValueError, KeyError) as error:
        raise ClipbenchError(f"shipped model manifest {path} is unreadable: {error}") from None


def shipped_models(directory: Optional[Path] = None) -> list[ShippedModel]:
    """Every manifest in ``directory`` (default :data:`WEIGHTS_DIR`), by name; read once per
    process (a matrix plan asks for every cell)."""
    return list(_manifests(directory or WEIGHTS_DIR))


@functools.cache
def _manifests(directory: Path) -> tuple[ShippedModel, ...]:
    return tuple(load_manifest(p) for p in sorted(directory.glob("*.json")))


def ship(checkpoint: Path, name: str, clean_key: str, command: str, measured: dict, init_seed: int,
         factors: list[float], directory: Optional[Path] = None) -> ShippedModel:
    """Write a checkpoint folder (:func:`clipbench.models.save_checkpoint`) pretrained from the
    initialisation of ``init_seed`` with AdamW's per-step decay ``factors``
    (:func:`clipbench.compact_weights.decay_factors`) into ``directory`` as a compact
    ``<name>.safetensors`` with its manifest ``<name>.json``, after checking that it rebuilds the
    checkpoint bit for bit."""
    import torch
    from safetensors.torch import load_file

    from .atomic import save_tensors, write_json
    from .compact_weights import compact, expand
    from .models import SIDECAR_FILE, WEIGHTS_FILE, create_model

    directory = directory or WEIGHTS_DIR
    sidecar = json.loads((checkpoint / SIDECAR_FILE).read_text())
    state = load_file(str(checkpoint / WEIGHTS_FILE))
    initial = create_model(sidecar["architecture"], None, seed=init_seed).model.state_dict()
    stored = compact(state, initial, factors)
    rebuilt = expand(stored, initial)
    if rebuilt.keys() != state.keys() or any(not torch.equal(rebuilt[k], state[k]) for k in state):
        raise ClipbenchError(f"{checkpoint} does not rebuild bit for bit from its compact form; nothing was shipped")
    weights = save_tensors(directory / f"{name}.safetensors", stored)
    manifest = {"file_sha256": file_sha256(weights), "sha256": file_sha256(checkpoint / WEIGHTS_FILE),
                "init_seed": init_seed, "clean_key": clean_key, "architecture": sidecar["architecture"],
                "command": command, "measured": measured}
    write_json(directory / f"{name}.json", manifest)
    _manifests.cache_clear()
    return load_manifest(directory / f"{name}.json")


def shipped_for(clean_key: str, directory: Optional[Path] = None) -> Optional[ShippedModel]:
    """The shipped model trained under ``clean_key``, or ``None`` (also when switched off)."""
    if not _enabled():
        return None
    return next((m for m in shipped_models(directory) if m.clean_key == clean_key), None)
