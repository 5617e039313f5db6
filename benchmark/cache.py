"""A content-addressed artifact store with atomic writes and a lock per artifact.

An artifact lives in ``<root>/<stage>/<key>/``; it is complete when its ``meta.json`` exists,
which is written last inside a temporary folder that is then renamed into place. A process that
finds the artifact being built by another waits on its lock and then reuses it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from .errors import ClipbenchError

META = "meta.json"


def ensure_writable(folder: Path, what: str) -> Path:
    """Create ``folder`` if needed and check that files can be written there."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ClipbenchError(f"{what} {folder} is not writable: {error.strerror or error}") from None
    return folder


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Artifacts keyed by (stage, key) under ``root``."""

    def __init__(self, root: Path):
        self.root = ensure_writable(Path(root), "cache directory")

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def meta(self, stage: str, key: str) -> Optional[dict]:
        """The artifact's metadata, or ``None`` when it is absent or incomplete."""
        path = self.path(stage, key) / META
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    @contextmanager
    def _lock(self, stage: str, key: str) -> Iterator[None]:
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{stage}-{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get_or_build(self, stage: str, key: str, build: Callable[[Path], dict], force: bool = False) -> tuple[Path, dict, bool]:
        """Return ``(path, meta, built)``; run ``build(tmp_folder) -> meta`` when the artifact is missing.

        The build writes into a temporary folder that becomes the artifact only when complete,
        so a killed build leaves nothing that is mistaken for a finished artifact.
        """
        with self._lock(stage, key):
            final = self.path(stage, key)
            meta = self.meta(stage, key)
            if meta is not None and not force:
                return final, meta, False
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=final.parent))
            try:
                meta = dict(build(tmp))
                meta.update({"stage": stage, "key": key})
                write_json_atomic(tmp / META, meta)
                if final.exists():
                    trash = Path(tempfile.mkdtemp(prefix=f".old-{key}-", dir=final.parent))
                    os.replace(final, trash / "old")
                    shutil.rmtree(trash, ignore_errors=True)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return final, meta, True


def build_in_progress(root: Path, stage: str, key: str) -> bool:
    """True while some process holds the lock of artifact (stage, key), i.e. is building it."""
    lock = Path(root) / "locks" / f"{stage}-{key}.lock"
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def leftovers(root: Path) -> list[Path]:
    """Temporary folders of builds that were killed (not those of builds still running)."""
    found = []
    for path in Path(root).glob("*/.tmp-*"):
        key = path.name[len(".tmp-"):].rsplit("-", 1)[0]
        if path.is_dir() and not build_in_progress(root, path.parent.name, key):
            found.append(path)
    return found + [p for p in Path(root).glob("*/.old-*") if p.is_dir()]


def list_artifacts(root: Path) -> list[dict]:
    """Every complete artifact under ``root``: stage, key, size, parents and build cost."""
    rows = []
    for meta_path in sorted(Path(root).glob(f"*/*/{META}")):
        folder = meta_path.parent
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        rows.append({"stage": folder.parent.name, "key": folder.name, "path": folder, "bytes": size,
                     "parents": meta.get("parents", {}), "build": meta.get("build_stats", {})})
    return rows


def verify_artifact(folder: Path) -> Optional[str]:
    """``None`` when the artifact's checkpoint matches its sha256 (or it has none), else what is wrong."""
    from .models import SIDECAR_FILE, WEIGHTS_FILE, file_sha256

    sidecar = folder / SIDECAR_FILE
    if not sidecar.exists():
        return None
    try:
        expected = json.loads(sidecar.read_text()).get("sha256")
    except (OSError, ValueError):
        return f"{sidecar} is not readable JSON"
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        return f"{weights} is missing"
    if file_sha256(weights) != expected:
        return f"{weights} does not match its sha256"
    return None


def referenced_keys(results_dir: Path) -> set[tuple[str, str]]:
    """(stage, key) pairs named by result JSONs in ``results_dir``, with their ancestors' keys."""
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
    return keys
