"""Lazy image-caption and image-classification sources for real-scale data.

Nothing is decoded or tokenized up front: a source lists its rows once (file paths, tar offsets or
Arrow row numbers, plus captions or labels, which are small) and decodes images only when a batch
is asked for. Readers:

* :class:`CsvPairs` -- the CleanCLIP CSV/TSV format (an image-path column and a caption column);
* :class:`WebDatasetPairs` -- webdataset tar shards (``<key>.jpg`` + ``<key>.txt``), the layout
  of the Hugging Face ``pixparse/cc3m-wds`` mirror;
* :class:`HubPairs` / :class:`HubClasses` -- Hugging Face ``datasets`` (hub name or a
  ``save_to_disk`` folder);
* :class:`ImageFolderClasses` -- an ImageNet-style folder (``root/<class>/*.JPEG``).

:func:`open_pairs` / :func:`open_classes` pick the reader for a spec string;
:class:`clipbench.data.images.LazyImages` wraps a source so that training and evaluation loops
can index it like an image tensor.

Modules: ``base`` (reports, skip limits, image checks and decoding, base classes), ``files``
(CSV/TSV and image folders), ``shards`` (webdataset tar shards), ``hub`` (Hugging Face
``datasets``) and ``factories`` (:func:`open_pairs`,
:func:`open_classes`). Every public name is re-exported here.
"""

from .base import (
    DEFAULT_MAX_SKIPPED,
    MAX_EXAMPLES,
    ImageCaptionSource,
    ImageClassSource,
    ImageSource,
    MaxSkipped,
    Rows,
    SourceReport,
    as_row_indices,
    check_report,
    default_workers,
    skip_limit,
    square_rgb,
    verify_image,
    verify_images,
)
from .factories import CLASSES_SPECS, PAIRS_SPECS, open_classes, open_pairs
from .files import IMAGE_SUFFIXES, CsvPairs, ImageFolderClasses
from .hub import (
    SAVE_TO_DISK_MARKERS,
    HubClasses,
    HubImages,
    HubPairs,
    arrow_column,
    is_saved_dataset,
    load_hub_split,
    pick_column,
)
from .shards import ShardIndex, WebDatasetPairs, expand_braces, index_shard, resolve_shards, split_key

__all__ = [
    # base
    "DEFAULT_MAX_SKIPPED", "MAX_EXAMPLES", "MaxSkipped", "Rows", "SourceReport", "skip_limit", "check_report",
    "default_workers", "square_rgb", "as_row_indices", "verify_image", "verify_images",
    "ImageSource", "ImageCaptionSource", "ImageClassSource",
    # readers
    "IMAGE_SUFFIXES", "CsvPairs", "ImageFolderClasses",
    "ShardIndex", "WebDatasetPairs", "expand_braces", "resolve_shards", "split_key", "index_shard",
    "SAVE_TO_DISK_MARKERS", "HubImages", "HubPairs", "HubClasses", "is_saved_dataset", "load_hub_split",
    "pick_column", "arrow_column",
    # factories
    "PAIRS_SPECS", "CLASSES_SPECS", "open_pairs", "open_classes",
]
