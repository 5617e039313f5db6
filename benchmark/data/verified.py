"""Data folders in the cache that are not stage artifacts (the converted Fashion-MNIST, the
WordNet files EDA reads) carry the same protection: the sha256 of every file, recorded in
``clipbench-digests.json`` when the folder is written and checked before it is used."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from ..atomic import write_json
from ..digests import check_folder, check_meta, folder_digests, seal_meta

DIGESTS_FILE = "clipbench-digests.json"


def seal_folder(folder: Path) -> None:
    """Record the digests of every file in ``folder`` (call it before the folder is published)."""
    write_json(Path(folder) / DIGESTS_FILE, seal_meta({"files": folder_digests(folder, exclude=(DIGESTS_FILE,))}))


def check_verified_folder(folder: Path) -> Optional[str]:
    """``None`` when ``folder`` matches its recorded digests, else what is wrong."""
    import json

    try:
        record = json.loads((Path(folder) / DIGESTS_FILE).read_text())
    except (OSError, ValueError):
        return f"{DIGESTS_FILE} is missing or not readable JSON"
    if not isinstance(record, dict):
        return f"{DIGESTS_FILE} is not a digest record"
    return check_meta(record) or check_folder(folder, record.get("files"), exclude=(DIGESTS_FILE,))


def usable(folder: Path, what: str) -> bool:
    """True when ``folder`` exists and is intact; a damaged one is removed with a one-line warning."""
    from ..cache import warn

    folder = Path(folder)
    if not folder.exists():
        return False
    problem = check_verified_folder(folder)
    if problem is None:
        return True
    warn(f"{what} in {folder} is damaged ({problem}); rebuilding it")
    if folder.is_symlink():
        folder.unlink()
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return False
