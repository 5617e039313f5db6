"""Import training checkpoints saved by the papers' code, and export clipbench checkpoints for it.

The CleanCLIP / BadCLIP / RoCLIP / SafeCLIP / CyCLIP code bases save
``torch.save({"epoch": e, "name": run, "state_dict": ddp_model.state_dict(), "optimizer": ...})``:
every key starts with ``module.`` (DistributedDataParallel) and parameter names are OpenAI CLIP's,
which open_clip's ``CLIP`` class shares. OpenAI state dicts may also hold ``input_resolution``,
``context_length`` and ``vocab_size``, which open_clip does not keep.

Reading a pickle is opt-in (``allow_pickle``) and always goes through ``torch.load(...,
weights_only=True)``; a file that needs more than that is refused, never loaded unrestricted.
Writes are atomic: a half-written output never appears under its final name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import torch

from .atomic import atomic_file, atomic_folder
from .errors import ClipbenchError
from .models import (
    SIDECAR_FILE,
    ClipModel,
    check_model_name,
    create_model,
    file_sha256,
    load_checkpoint,
    load_state,
    save_checkpoint,
)

# Entries of OpenAI CLIP state dicts that are not open_clip parameters or buffers.
OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
# Keys under which training scripts nest the model's state dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
DDP_PREFIX = "module."
EXPORT_FORMATS = ("openai", "safetensors")


def _looks_like_safetensors(path: Path) -> bool:
    """True when the file starts like safetensors: an 8-byte header length, then a JSON object."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= size - 8 and head[8:9] == b"{"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            return {key: handle.get_tensor(key) for key in handle.keys()}, metadata
    except (SafetensorError, OSError, ValueError) as error:
        raise ClipbenchError(f"{path} is not a readable safetensors file ({_first_line(error)})") from None


def _read_pickle(path: Path) -> Any:
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if unsupported:
            raise ClipbenchError(
                f"{path} holds objects other than tensors (e.g. {unsupported.group(1)}); clipbench only loads "
                f"tensors and plain containers from a pickle: re-save its state_dict alone, or as safetensors"
            ) from None
        detail = re.search(r"WeightsUnpickler error: *([^\n]+)", text)
        reason = detail.group(1).strip() if detail else _first_line(error)
        raise ClipbenchError(f"{path} is not a torch checkpoint that can be read safely ({reason})") from None
    except Exception as error:  # truncated, corrupt or not a torch file at all
        raise ClipbenchError(f"{path} is not a readable torch checkpoint ({_first_line(error)})") from None


def _unwrap(obj: Any, path: Path) -> tuple[dict, Optional[str]]:
    """The model state dict inside a loaded checkpoint, and the wrapper key it was found under."""
    if not isinstance(obj, dict):
        raise ClipbenchError(f"{path} holds a {type(obj).__name__}, not a state dict")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner, key
    return obj, None


def _normalise(state: dict, path: Path) -> dict[str, torch.Tensor]:
    """Strip ``module.``, drop OpenAI's metadata entries, and insist on tensors only."""
    out: dict[str, torch.Tensor] = {}
    not_tensors = []
    for key, value in state.items():
        if not isinstance(key, str):
            raise ClipbenchError(f"{path} has a non-string state dict key {key!r}")
        name = key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key
        if name in OPENAI_METADATA_KEYS:
            continue
        if not isinstance(value, torch.Tensor):
            not_tensors.append(key)
            continue
        if name in out:
            raise ClipbenchError(f"{path} holds both {name!r} and {DDP_PREFIX + name!r}")
        out[name] = value
    if not out:
        keys = ", ".join(map(str, list(state)[:8])) or "none"
        raise ClipbenchError(f"{path} holds no tensors (top-level keys: {keys})")
    if not_tensors:
        shown = ", ".join(not_tensors[:5]) + (" ..." if len(not_tensors) > 5 else "")
        raise ClipbenchError(f"{path}: state dict entries that are not tensors: {shown} ({len(not_tensors)})")
    return out


def _read(path: Path, allow_pickle: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a foreign checkpoint: its normalised state dict and what is known about its source."""
    path = Path(path)
    if not path.exists():
        raise ClipbenchError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise ClipbenchError(f"checkpoint {path} is a directory; give the checkpoint file (.pt or .safetensors)")
    info: dict[str, Any] = {}
    try:
        is_safetensors = _looks_like_safetensors(path)
    except OSError as error:
        raise ClipbenchError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    if is_safetensors:
        obj, metadata = _read_safetensors(path)
        info["source_format"] = "safetensors"
        if metadata.get("architecture"):
            info["source_architecture"] = metadata["architecture"]
    elif path.suffix.lower() == ".safetensors":
        raise ClipbenchError(f"{path} is not a valid safetensors file (bad header)")
    elif not allow_pickle:
        raise ClipbenchError(
            f"{path} is a pickle; loading it runs code from the file; pass --allow-pickle if you trust it"
        )
    else:
        obj = _read_pickle(path)
        info["source_format"] = "torch-pickle"
    state, wrapper = _unwrap(obj, path)
    if wrapper is not None:
        info["source_wrapper"] = wrapper
        for field in ("epoch", "name"):
            if isinstance(obj.get(field), (int, str)):
                info[f"source_{field}"] = obj[field]
    tensors = _normalise(state, path)
    info["source_ddp_prefix"] = any(isinstance(k, str) and k.startswith(DDP_PREFIX) for k in state)
    info["source_dtypes"] = sorted({str(v.dtype).removeprefix("torch.") for v in tensors.values()})
    return tensors, info


def read_foreign_state(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read the model state dict of a checkpoint written by the papers' training code.

    ``path`` is a safetensors file (read without opt-in) or a ``torch.save`` pickle (read only
    with ``allow_pickle``, through ``torch.load(..., weights_only=True)``; a file holding other
    objects is refused, never loaded unrestricted). The state dict is taken from the
    ``state_dict`` / ``model_state_dict`` / ``model`` entry when present, else the file is a bare
    state dict. A leading ``module.`` is stripped from every key and OpenAI's
    ``input_resolution`` / ``context_length`` / ``vocab_size`` entries are dropped.

    Raises :class:`ClipbenchError` with one line naming the file for every problem.
    """
    return _read(path, allow_pickle)[0]


def _check_out_folder(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise ClipbenchError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()):
            raise ClipbenchError(f"--out {out} exists and is not empty; remove it or choose another folder")


def import_checkpoint(path: Path, architecture: str, out: Path, allow_pickle: bool = False) -> ClipModel:
    """Load a foreign checkpoint into ``architecture`` and write it as a clipbench checkpoint in ``out``.

    The state dict must match the architecture exactly (a mismatch names the differing keys and
    the file). ``out`` must not exist or be empty; it is built in a temporary sibling folder and
    renamed into place, so it never holds a partial checkpoint. The sidecar records the source
    file, its sha256 and format, and the epoch / run name / dtypes found in it. Returns the loaded
    model (with ``weights_sha256`` of the written file).
    """
    path, out = Path(path), Path(out)
    check_model_name(architecture)
    _check_out_folder(out)
    state, info = _read(path, allow_pickle)
    clip = create_model(architecture)
    load_state(clip.model, state, f"{path} (imported as {architecture})")

    try:
        with atomic_folder(out) as scratch:  # replaces an empty folder atomically; a non-empty one raises
            extra = {"imported_from": str(path), "source_sha256": file_sha256(path), **info}
            save_checkpoint(clip, scratch, extra=extra)
            _check_out_folder(out)  # again: another process may have filled it meanwhile
    except OSError as error:
        raise ClipbenchError(f"cannot write {out}: {error.strerror or error}") from None
    clip.weights_sha256 = json.loads((out / SIDECAR_FILE).read_text())["sha256"]
    return clip


def export_checkpoint(folder: Path, out: Path, fmt: str = "openai") -> Path:
    """Write the clipbench checkpoint in ``folder`` as a file the papers' code can load.

    ``fmt="openai"``: ``torch.save({"state_dict": {"module." + key: tensor}, "epoch": 0, "name":
    ...})``, what their ``--checkpoint`` option reads (it has no ``optimizer`` entry).
    ``fmt="safetensors"``: the OpenAI-named keys without ``module.``, with the architecture in the
    file's metadata. The file is written to a temporary sibling and renamed into place; an
    existing ``out`` is refused. The written file is read back and compared with the model.
    """
    folder, out = Path(folder), Path(out)
    if fmt not in EXPORT_FORMATS:
        raise ClipbenchError(f"unknown export format {fmt!r}; valid: {', '.join(EXPORT_FORMATS)}")
    if not folder.is_dir():
        raise ClipbenchError(f"checkpoint folder {folder} does not exist")
    if out.exists():
        raise ClipbenchError(f"--out {out} already exists; remove it or choose another file name")
    clip = load_checkpoint(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in clip.model.state_dict().items()}
    name = f"clipbench-{clip.name}-{(clip.weights_sha256 or '')[:12]}"

    try:
        with atomic_file(out) as tmp:
            if fmt == "openai":
                torch.save({"epoch": 0, "name": name, "state_dict": {DDP_PREFIX + k: v for k, v in state.items()}}, tmp)
                written, _ = _read(tmp, allow_pickle=True)  # our own file: safe loader, round-trip check
            else:
                from safetensors.torch import save_file

                save_file(state, str(tmp), metadata={"architecture": clip.name, "format": "openai-clip", "name": name})
                written, _ = _read(tmp, allow_pickle=False)
            if set(written) != set(state) or any(not torch.equal(written[k], state[k]) for k in state):
                raise ClipbenchError(f"exporting {folder}: the written file does not read back identical to the model")
            if out.exists():
                raise ClipbenchError(f"--out {out} already exists; remove it or choose another file name")
    except OSError as error:
        raise ClipbenchError(f"cannot write {out}: {error.strerror or error}") from None
    return out
