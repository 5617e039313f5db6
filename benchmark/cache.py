"""A content-addressed artifact store with verified reuse, atomic builds and a lock per artifact.

An artifact lives in ``<root>/<stage>/<key>/``. It is built in a temporary folder that is renamed
into place when complete; its ``meta.json``, written last, records the sha256 of every file in it
and a digest of itself. Before an artifact is reused its files are checked against those digests:
a mismatch (flipped bytes, a truncated file, a missing one) prints a one-line warning and the
artifact is rebuilt under its lock. A process that finds the artifact being built by another
waits on its lock and then reuses it; a killed build's temporary folder is removed the next time
that key is built.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

from .atomic import temporary_folder, write_json
from .digests import check_folder, check_meta, folder_digests, seal_meta
from .errors import ClipbenchError
from .locks import artifact_lock, default_lock_mode, lock_is_held

META = "meta.json"


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"clipbench: warning: {message}", file=sys.stderr, flush=True)


def ensure_writable(folder: Path, what: str) -> Path:
    """Create ``folder`` if needed and check that files can be written there."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ClipbenchError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ClipbenchError(f"{what} {folder} is not writable: {error.strerror or error}") from None
    return folder


def read_meta(folder: Path) -> Optional[dict]:
    """The artifact's metadata, or ``None`` when absent or not readable JSON."""
    try:
        meta = json.loads((Path(folder) / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def verify_artifact(folder: Path) -> Optional[str]:
    """``None`` when the artifact's files and metadata match their recorded digests, else what is wrong."""
    if not (Path(folder) / META).exists():
        return f"{META} is missing"
    meta = read_meta(folder)
    if meta is None:
        return f"{META} is not readable JSON"
    return check_meta(meta) or check_folder(folder, meta.get("files"), exclude=(META,))


class ArtifactStore:
    """Artifacts keyed by (stage, key) under ``root``; ``lock_mode`` is ``flock`` or ``soft``."""

    def __init__(self, root: Path, lock_mode: Optional[str] = None):
        self.root = ensure_writable(Path(root), "cache directory")
        self.lock_mode = lock_mode or default_lock_mode()

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lock_path(self, stage: str, key: str) -> Path:
        return self.root / "locks" / f"{stage}-{key}.lock"

    def meta(self, stage: str, key: str) -> Optional[dict]:
        """The metadata of a complete artifact, or ``None`` (not verified; see :meth:`get_or_build`)."""
        return read_meta(self.path(stage, key))

    def _remove_leftovers(self, stage: str, key: str) -> None:
        """Temporary folders of killed builds of this key (called under its lock, so none is live)."""
        for pattern in (f".tmp-{key}-*", f".old-{key}-*"):
            for path in (self.root / stage).glob(pattern):
                shutil.rmtree(path, ignore_errors=True)

    def _reusable(self, stage: str, key: str) -> Optional[dict]:
        final = self.path(stage, key)
        if not final.exists():
            return None
        problem = verify_artifact(final)
        if problem is None:
            return read_meta(final)
        warn(f"cached {stage} artifact {key} is damaged ({problem}); rebuilding it")
        return None

    def has_reusable(self, stage: str, key: str) -> bool:
        """Whether (stage, key) is complete and intact (checked under its lock)."""
        with artifact_lock(self.lock_path(stage, key), self.lock_mode):
            return self._reusable(stage, key) is not None

    def get_or_build(self, stage: str, key: str, build: Callable[[Path], dict], force: bool = False) -> tuple[Path, dict, bool]:
        """Return ``(path, meta, built)``; run ``build(tmp_folder) -> meta`` when the artifact is
        missing, damaged or ``force`` is set. The artifact appears only when complete."""
        with artifact_lock(self.lock_path(stage, key), self.lock_mode):
            self._remove_leftovers(stage, key)
            final = self.path(stage, key)
            meta = None if force else self._reusable(stage, key)
            if meta is not None:
                return final, meta, False
            tmp = temporary_folder(final.parent, f".tmp-{key}-")
            try:
                meta = json.loads(json.dumps({**build(tmp), "stage": stage, "key": key}, default=str))
                meta["files"] = folder_digests(tmp, exclude=(META,))
                meta = seal_meta(meta)
                write_json(tmp / META, meta)
                if final.exists():
                    trash = temporary_folder(final.parent, f".old-{key}-")
                    final.replace(trash / "old")
                    shutil.rmtree(trash, ignore_errors=True)
                tmp.replace(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return final, meta, True

    # ------------------------------------------------------------- failures of this run
    def record_failure(self, run_id: str, stage: str, key: str, message: str) -> None:
        """Remember that (stage, key) failed in run ``run_id``, for every process of that run."""
        write_json(self.root / "failures" / run_id / f"{stage}-{key}.json", {"error": message})

    def failure(self, run_id: str, stage: str, key: str) -> Optional[str]:
        """The error of (stage, key) if it already failed in run ``run_id``."""
        path = self.root / "failures" / run_id / f"{stage}-{key}.json"
        try:
            return json.loads(path.read_text())["error"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def build_in_progress(self, stage: str, key: str) -> bool:
        """True while some process holds the lock of artifact (stage, key), i.e. is building it."""
        return lock_is_held(self.lock_path(stage, key), self.lock_mode)


def leftovers(store: ArtifactStore) -> list[Path]:
    """Temporary folders of builds that were killed (not those of builds still running), and the
    failure records of past runs."""
    found = []
    for path in store.root.glob("*/.tmp-*"):
        key = path.name[len(".tmp-"):].rsplit("-", 1)[0]
        if path.is_dir() and not store.build_in_progress(path.parent.name, key):
            found.append(path)
    found += [p for p in store.root.glob("*/.old-*") if p.is_dir()]
    return found + [p for p in (store.root / "failures").glob("*") if p.is_dir()]


def list_artifacts(root: Path) -> list[dict]:
    """Every complete artifact under ``root``: stage, key, size, parents and build cost."""
    rows = []
    for meta_path in sorted(Path(root).glob(f"*/*/{META}")):
        folder = meta_path.parent
        meta = read_meta(folder) or {}
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        rows.append({"stage": folder.parent.name, "key": folder.name, "path": folder, "bytes": size,
                     "parents": meta.get("parents", {}), "build": meta.get("build_stats", {})})
    return rows


def referenced_keys(results_dir: Path) -> set[tuple[str, str]]:
    """(stage, key) pairs named by result JSONs in ``results_dir``."""
    keys: set[tuple[str, str]] = set()
    for path in Path(results_dir).rglob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for stage, info in (data.get("stages") or {}).items():
                if isinstance(info, dict) and info.get("key"):
                    keys.add((stage, info["key"]))
            for stage, key in (data.get("artifacts") or {}).items():
                if isinstance(key, str):
                    keys.add((stage, key))
    return keys
