"""Per-artifact locks of the cache, through the ``filelock`` package.

Two modes:

- ``flock`` (default): an operating-system lock on a lock file; released by the kernel when its
  holder dies, so a ``kill -9`` never leaves a stale lock. Reliable on a local file system.
- ``soft``: a lease on a marker file that its holder refreshes every few seconds
  (:class:`filelock.SoftFileLease`); a contender takes it over once it has seen no refresh for
  :data:`LEASE_SECONDS`. For caches on NFS or Lustre shared by SLURM jobs on several machines,
  where ``flock`` is unreliable or unsupported. Select it with ``--lock soft`` or
  ``CLIPBENCH_LOCK=soft``; every process sharing a cache must use the same mode.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ClipbenchError

LOCK_MODES = ("flock", "soft")
#: A soft lock whose holder has not refreshed it for this long is taken over (its holder died).
LEASE_SECONDS = 120.0
HEARTBEAT_SECONDS = 15.0


def default_lock_mode() -> str:
    """``$CLIPBENCH_LOCK`` when set, else ``flock``."""
    return check_lock_mode(os.environ.get("CLIPBENCH_LOCK") or "flock")


def check_lock_mode(mode: str) -> str:
    if mode not in LOCK_MODES:
        raise ClipbenchError(f"lock mode {mode!r} is unknown; valid: {', '.join(LOCK_MODES)}")
    return mode


def artifact_lock(path: Path, mode: str):
    """A ``filelock`` lock object on ``path`` in ``mode`` (use it as a context manager)."""
    import filelock

    path.parent.mkdir(parents=True, exist_ok=True)
    if check_lock_mode(mode) == "soft":
        return filelock.SoftFileLease(str(path), lease_duration=LEASE_SECONDS, heartbeat_interval=HEARTBEAT_SECONDS)
    return filelock.FileLock(str(path))


def lock_is_held(path: Path, mode: str) -> bool:
    """True while another process holds the lock on ``path`` (a build is running)."""
    import filelock

    if not path.exists():
        return False
    lock = artifact_lock(path, mode)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False
