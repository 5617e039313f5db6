"""sha256 digests of files and folders, recorded when an artifact is built and checked before use.

A folder's record maps each file's relative path to its sha256. Checking a folder compares every
recorded file (a missing, changed or extra file is a mismatch). Digests are memoised per process
by (path, size, mtime), so an artifact used by many cells is hashed once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The sha256 of ``path``'s bytes (memoised while its size and mtime are unchanged)."""
    path = Path(path)
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    _MEMO[memo_key] = digest.hexdigest()
    return _MEMO[memo_key]


def json_sha256(data: object) -> str:
    """The sha256 of a JSON value in canonical form (sorted keys, no spaces)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def folder_digests(folder: Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` except the names in ``exclude``."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in exclude
    }


def check_folder(folder: Path, recorded: object, exclude: tuple[str, ...] = ()) -> Optional[str]:
    """``None`` when ``folder`` holds exactly the ``recorded`` files with their digests, else what differs."""
    if not isinstance(recorded, dict):
        return "it has no recorded digests"
    folder = Path(folder)
    for relative, expected in recorded.items():
        path = folder / relative
        if not path.is_file():
            return f"{relative} is missing"
        if file_sha256(path) != expected:
            return f"{relative} does not match its recorded sha256"
    extra = sorted(set(folder_digests(folder, exclude)) - set(recorded))
    if extra:
        return f"{extra[0]} was not part of the artifact"
    return None


def seal_meta(meta: dict) -> dict:
    """``meta`` with ``meta_sha256``, the digest of everything else in it."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return {**body, "meta_sha256": json_sha256(body)}


def check_meta(meta: dict) -> Optional[str]:
    """``None`` when ``meta``'s own digest matches its content, else what is wrong."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    if meta.get("meta_sha256") != json_sha256(body):
        return "meta.json does not match its recorded sha256"
    return None
