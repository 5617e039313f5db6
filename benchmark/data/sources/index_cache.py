"""A source's index and verification counts, computed once and stored in the artifact cache.

Listing a real-scale source and checking its images (header-level PIL ``verify``, 0.5 ms an
image: minutes for CC3M) is the same work in every process of every run. The listed source
(:class:`CsvPairs`, :class:`WebDatasetPairs`, :class:`ImageFolderClasses`: paths, offsets,
captions, labels and the :class:`SourceReport`) is stored as an artifact of its own,
``<cache>/source-index/<key>/``, verified by sha256 like every artifact and built under its lock
(so parallel workers index once). The key hashes the reader, its options and the identity of
every file it reads, (path, size, mtime): a changed, added or removed file makes a new index.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable, Iterable

INDEX_VERSION = 1
INDEX_FILE = "index.pkl"


def file_identity(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    """(absolute path, size, mtime in ns) of each path; a missing file is (path, -1, -1)."""
    out = []
    for path in paths:
        try:
            stat = os.stat(path)
            out.append((str(Path(path).absolute()), stat.st_size, stat.st_mtime_ns))
        except OSError:
            out.append((str(Path(path).absolute()), -1, -1))
    return out


def cached_source(reader: type, identity: list, options: dict, cache_dir: Path, build: Callable[[], Any]) -> Any:
    """The source ``build()`` makes, reused from the cache when ``identity`` and ``options`` match."""
    from ...cache import ArtifactStore
    from ...config import stable_hash

    key = stable_hash("source-index", INDEX_VERSION, reader.__name__, identity, sorted((k, repr(v)) for k, v in options.items()))
    store = ArtifactStore(Path(cache_dir))
    built: list = []

    def write(folder: Path) -> dict:
        source = build()
        built.append(source)
        with open(folder / INDEX_FILE, "wb") as handle:
            pickle.dump(source, handle, protocol=pickle.HIGHEST_PROTOCOL)
        report = source.report
        return {"reader": reader.__name__, "name": source.name, "listed": report.listed, "resolved": report.resolved,
                "skipped": report.skipped, "inputs": len(identity)}

    path, _, _ = store.get_or_build("source-index", key, write)
    if built:
        return built[0]
    with open(path / INDEX_FILE, "rb") as handle:  # verified against its sha256 by get_or_build
        return pickle.load(handle)


def csv_identity(path: Path, options: dict) -> list:
    """The CSV and every image it names."""
    from .files import _read_table

    delimiter = options.get("delimiter", ",")
    image_key, caption_key = options.get("image_key", "image"), options.get("caption_key", "caption")
    header, rows = _read_table(path, delimiter, (image_key, caption_key))
    column = header.index(image_key)
    base = Path(options["root"]) if options.get("root") is not None else path.parent
    return file_identity([path] + [base / row[column].strip() for row in rows if len(row) > column])


def folder_identity(root: Path) -> list:
    """Every class folder and every file under them."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = sorted(f for folder in folders for f in folder.rglob("*") if f.is_file())
    return [str(f) for f in folders] + file_identity(files)


def shards_identity(spec: Any) -> list:
    """Every tar shard."""
    from .shards import resolve_shards

    return file_identity(resolve_shards(spec))
