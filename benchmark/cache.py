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
