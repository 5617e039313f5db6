"""Factories that pick the reader for a spec string: :func:`open_pairs` and :func:`open_classes`."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Union

from ...errors import ClipbenchError
from .base import ImageCaptionSource, ImageClassSource
from .files import CsvPairs, ImageFolderClasses
from .hub import HubClasses, HubPairs, is_saved_dataset
from .shards import WebDatasetPairs

PAIRS_SPECS = "a .csv/.tsv file, .tar shards (a folder, a glob or a {0000..0009} pattern), a save_to_disk folder or hf:NAME[:SPLIT]"
CLASSES_SPECS = "an image folder (root/<class>/*.JPEG), a save_to_disk folder or hf:NAME[:SPLIT]"


def _hub_spec(spec: str, default_split: str) -> tuple[str, str]:
    name, _, split = spec[len("hf:"):].partition(":")
    if not name:
        raise ClipbenchError(f"{spec!r}: expected hf:NAME[:SPLIT]")
    return name, split or default_split


def open_pairs(spec: Union[str, Path], **options) -> ImageCaptionSource:
    """The pair reader for ``spec``: ``.csv``/``.tsv`` -> :class:`CsvPairs`, tar shards ->
    :class:`WebDatasetPairs`, ``hf:NAME[:SPLIT]`` or a ``save_to_disk`` folder -> :class:`HubPairs`.

    ``options`` go to the reader's constructor.
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
        return CsvPairs(path, **options)
    if path.is_dir() or glob.has_magic(text) or re.search(r"\{[^{}]*(\.\.|,)[^{}]*\}", text) or path.suffix.lower() == ".tar":
        return WebDatasetPairs(text, **options)
    if not path.exists():
        raise ClipbenchError(f"pairs source {text!r} does not exist (expected {PAIRS_SPECS})")
    raise ClipbenchError(f"cannot tell how to read pairs from {text!r} (expected {PAIRS_SPECS})")


def open_classes(spec: Union[str, Path], **options) -> ImageClassSource:
    """The labelled-image reader for ``spec``: ``hf:NAME[:SPLIT]`` (default split ``validation``) or a
    ``save_to_disk`` folder -> :class:`HubClasses`, another folder -> :class:`ImageFolderClasses`.
    """
    text = str(spec)
    path = Path(text)
    if text.startswith("hf:"):
        name, split = _hub_spec(text, "validation")
        return HubClasses(name, options.pop("split", split), **options)
    if is_saved_dataset(path):
        return HubClasses(text, **options)
    if path.is_dir():
        return ImageFolderClasses(path, **options)
    if not path.exists():
        raise ClipbenchError(f"classes source {text!r} does not exist (expected {CLASSES_SPECS})")
    raise ClipbenchError(f"cannot tell how to read labelled images from {text!r} (expected {CLASSES_SPECS})")
