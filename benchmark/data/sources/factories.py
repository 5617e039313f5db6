"""Factories that pick the reader for a spec string: :func:`open_pairs` and :func:`open_classes`."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Optional, Union

from ...errors import ClipbenchError
from .base import ImageCaptionSource, ImageClassSource
from .files import CsvPairs, ImageFolderClasses
from .hub import HubClasses, HubPairs, is_saved_dataset
from .index_cache import cached_source, csv_identity, folder_identity, shards_identity
from .shards import WebDatasetPairs

PAIRS_SPECS = "a .csv/.tsv file, .tar shards (a folder, a glob or a {0000..0009} pattern), a save_to_disk folder or hf:NAME[:SPLIT]"
CLASSES_SPECS = "an image folder (root/<class>/*.JPEG), a save_to_disk folder or hf:NAME[:SPLIT]"


def _hub_spec(spec: str, default_split: str) -> tuple[str, str]:
    name, _, split = spec[len("hf:"):].partition(":")
    if not name:
        raise ClipbenchError(f"{spec!r}: expected hf:NAME[:SPLIT]")
    return name, split or default_split


def open_pairs(spec: Union[str, Path], cache_dir: Optional[Path] = None, **options) -> ImageCaptionSource:
    """The pair reader for ``spec``: ``.csv``/``.tsv`` -> :class:`CsvPairs`, tar shards ->
    :class:`WebDatasetPairs`, ``hf:NAME[:SPLIT]`` or a ``save_to_disk`` folder -> :class:`HubPairs`.

    ``options`` go to the reader's constructor. With ``cache_dir`` a CSV's or shards' index is
    stored there and reused while their files are unchanged (:mod:`.index_cache`).
    """
    text = str(spec)
    path = Path(text)
    if text.startswith("hf:"):
        name, split = _hub_spec(text, "train")
        return HubPairs(name, options.pop("split", split), **options)
    if is_saved_dataset(path):
        return HubPairs(text, **options)
    if path.suffix.lower() in (".csv", ".tsv"):
        options.setdefault("delimiter", "\t" if path.suffix.lower() == ".tsv" else ",")
        if cache_dir is not None:
            return cached_source(CsvPairs, csv_identity(path, options), options, cache_dir, lambda: CsvPairs(path, **options))
        return CsvPairs(path, **options)
    if path.is_dir() or glob.has_magic(text) or re.search(r"\{[^{}]*(\.\.|,)[^{}]*\}", text) or path.suffix.lower() == ".tar":
        if cache_dir is not None:
            return cached_source(WebDatasetPairs, shards_identity(text), options, cache_dir, lambda: WebDatasetPairs(text, **options))
        return WebDatasetPairs(text, **options)
    if not path.exists():
        raise ClipbenchError(f"pairs source {text!r} does not exist (expected {PAIRS_SPECS})")
    raise ClipbenchError(f"cannot tell how to read pairs from {text!r} (expected {PAIRS_SPECS})")


def open_classes(spec: Union[str, Path], cache_dir: Optional[Path] = None, **options) -> ImageClassSource:
    """The labelled-image reader for ``spec``: ``hf:NAME[:SPLIT]`` (default split ``validation``) or a
    ``save_to_disk`` folder -> :class:`HubClasses`, another folder -> :class:`ImageFolderClasses`
    (its index stored in ``cache_dir``, when given, and reused while its files are unchanged).
    """
    text = str(spec)
    path = Path(text)
    if text.startswith("hf:"):
        name, split = _hub_spec(text, "validation")
        return HubClasses(name, options.pop("split", split), **options)
    if is_saved_dataset(path):
        return HubClasses(text, **options)
    if path.is_dir():
        if cache_dir is not None:
            return cached_source(ImageFolderClasses, folder_identity(path), options, cache_dir,
                                 lambda: ImageFolderClasses(path, **options))
        return ImageFolderClasses(path, **options)
    if not path.exists():
        raise ClipbenchError(f"classes source {text!r} does not exist (expected {CLASSES_SPECS})")
    raise ClipbenchError(f"cannot tell how to read labelled images from {text!r} (expected {CLASSES_SPECS})")
