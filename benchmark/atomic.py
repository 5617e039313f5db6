"""Atomic writes: every file and folder clipbench writes appears whole or not at all.

A write goes to a uniquely named temporary sibling (so concurrent writers under ``--workers``
never share a temporary name), is flushed to disk, and is renamed onto its final name. Files and
folders get the permissions the user's umask gives (a lab-shared cache stays readable).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    except OSError:  # some file systems refuse fsync on read-only handles; the rename still orders writes
        pass


@contextmanager
def atomic_file(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends normally it becomes ``path``.

    The temporary name keeps ``path``'s suffix (``.x.png.<random>.tmp.png``), so writers that pick
    a format by suffix (matplotlib, safetensors) behave as for the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: Path | str, data: Any, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (non-JSON values as strings)."""
    return write_text(path, json.dumps(data, indent=indent, default=str))


def save_tensors(path: Path | str, tensors: dict, metadata: dict | None = None) -> Path:
    """Write ``tensors`` as safetensors to ``path`` atomically, with umask permissions (safetensors
    alone creates its files readable by their owner only)."""
    from safetensors.torch import save_file

    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def temporary_folder(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent`` with umask permissions (for a folder built in place)."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, 0o777 & ~_umask())
    return folder


@contextmanager
def atomic_folder(target: Path | str, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target`` that is renamed onto it when the block succeeds.

    With ``replace`` an existing ``target`` is swapped out and removed; without it, an existing
    non-empty ``target`` raises ``OSError`` and the temporary folder is discarded.
    """
    target = Path(target)
    tmp = temporary_folder(target.parent, f".tmp-{target.name}-")
    try:
        yield tmp
        if replace and target.exists():
            trash = temporary_folder(target.parent, f".old-{target.name}-")
            os.replace(target, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
