"""Hugging Face ``datasets`` (a hub name or a ``save_to_disk`` folder): :class:`HubPairs` for
image-caption pairs and :class:`HubClasses` for labelled images, both reading rows at random from
the memory-mapped Arrow table.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

from ...errors import ClipbenchError
from .base import (
    DEFAULT_MAX_SKIPPED,
    ImageCaptionSource,
    ImageClassSource,
    ImageSource,
    MaxSkipped,
    SourceReport,
    check_report,
)

#: Files that mark a folder written by ``datasets`` ``save_to_disk``.
SAVE_TO_DISK_MARKERS = ("state.json", "dataset_dict.json", "dataset_info.json")


def is_saved_dataset(path: Path) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and any((path / marker).is_file() for marker in SAVE_TO_DISK_MARKERS)


def load_hub_split(name: str, split: str):
    """A ``datasets.Dataset``: ``load_from_disk(name)`` for an existing folder, else ``load_dataset(name, split=split)``.

    Hub datasets load non-streaming (memory-mapped Arrow), so rows can be read at random.
    """
    import datasets

    if Path(name).is_dir():
        try:
            loaded = datasets.load_from_disk(name)
        except Exception as error:
            raise ClipbenchError(f"{name}: not a folder written by save_to_disk ({type(error).__name__}: {error})") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ClipbenchError(f"{name}: no split {split!r}; splits: {', '.join(loaded)}")
            loaded = loaded[split]
        return loaded
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ClipbenchError(f"cannot load {name!r} split {split!r} from the Hugging Face hub: "
                             f"{type(error).__name__}: {first_line}") from None


def pick_column(dataset, name: str, key: Optional[str], defaults: Sequence[str], role: str) -> str:
    """``key`` (or the first of ``defaults`` present); raises naming the wanted and existing columns."""
    columns = list(dataset.column_names)
    wanted = [key] if key is not None else list(defaults)
    found = next((c for c in wanted if c in columns), None)
    if found is None:
        raise ClipbenchError(f"{name}: no {role} column {' or '.join(repr(c) for c in wanted)}; "
                             f"columns: {', '.join(repr(c) for c in columns)}")
    return found


def arrow_column(dataset, key: str):
    """One column as a pyarrow ChunkedArray (zero-copy on a memory-mapped dataset)."""
    return dataset.select_columns([key]).with_format("arrow")[:].column(0)


class HubImages(ImageSource):
    """Images from one column of a Hugging Face ``datasets.Dataset``, decoded by PIL per row.

    ``Image`` columns are read undecoded (``{"bytes", "path"}``); binary columns are read as bytes.
    """

    def _init_images(self, dataset, image_key: str, keep: np.ndarray) -> None:
        import datasets

        if isinstance(dataset.features[image_key], datasets.Image):
            dataset = dataset.cast_column(image_key, datasets.Image(decode=False))
        self._images = dataset.select_columns([image_key])
        self._image_key = image_key
        self.ids = keep.astype(np.int64)

    def _open(self, row: int) -> Image.Image:
        value = self._images[int(self.ids[row])][self._image_key]
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        return Image.open(io.BytesIO(value) if isinstance(value, (bytes, bytearray)) else value)

    def _describe(self, row: int) -> str:
        return f"{self.name} row {self.ids[row]}"


class HubPairs(HubImages, ImageCaptionSource):
    """Image-caption pairs from a Hugging Face dataset (hub name, or a ``save_to_disk`` folder).

    Column defaults follow webdataset-style hub mirrors (``jpg``/``txt``) and plain datasets
    (``image``/``caption``/``text``). Rows with no image or an empty caption are skipped;
    ``ids`` are dataset row numbers. Images are not checked up front (that would read them all).
    """

    def __init__(
        self, name: Union[str, Path], split: str = "train", image_key: Optional[str] = None,
        caption_key: Optional[str] = None, streaming: bool = False, max_skipped: MaxSkipped = DEFAULT_MAX_SKIPPED,
    ) -> None:
        self.name = str(name)
        if streaming:
            raise ClipbenchError(f"{name}: streaming datasets have no random access; load it non-streaming (memory-mapped)")
        dataset = load_hub_split(self.name, split)
        image_key = pick_column(dataset, self.name, image_key, ("jpg", "image", "png", "webp"), "image")
        caption_key = pick_column(dataset, self.name, caption_key, ("txt", "caption", "text"), "caption")
        no_image = arrow_column(dataset, image_key).is_null().to_numpy(zero_copy_only=False)
        captions = arrow_column(dataset, caption_key).to_pylist()
        self.report = SourceReport(listed=len(dataset))
        keep = []
        for row, (missing, caption) in enumerate(zip(no_image, captions)):
            if missing or not (caption or "").strip():
                self.report.skip(f"row {row}", "no image" if missing else "no caption")
            else:
                keep.append(row)
        self.report.resolved = len(keep)
        check_report(self.report, self.name, max_skipped, "rows")
        self.captions = [captions[row] for row in keep]
        self._init_images(dataset, image_key, np.asarray(keep, dtype=np.int64))


class HubClasses(HubImages, ImageClassSource):
    """Labelled images from a Hugging Face dataset (e.g. ``imagenet-1k``), or a ``save_to_disk`` folder.

    ``classnames`` come from the label column's ``ClassLabel`` names (else ``"0"``, ``"1"``, ...).
    Rows with no image or a missing/negative label (unlabelled test splits) are skipped.
    """

    def __init__(
        self, name: Union[str, Path], split: str = "validation", image_key: str = "image",
        label_key: str = "label", max_skipped: MaxSkipped = DEFAULT_MAX_SKIPPED,
    ) -> None:
        import datasets

        self.name = str(name)
        dataset = load_hub_split(self.name, split)
        image_key = pick_column(dataset, self.name, image_key, (), "image")
        label_key = pick_column(dataset, self.name, label_key, (), "label")
        no_image = arrow_column(dataset, image_key).is_null().to_numpy(zero_copy_only=False)
        labels = arrow_column(dataset, label_key).to_pylist()
        self.report = SourceReport(listed=len(dataset))
        keep = []
        for row, (missing, label) in enumerate(zip(no_image, labels)):
            if missing or label is None or label < 0:
                self.report.skip(f"row {row}", "no image" if missing else "no label")
            else:
                keep.append(row)
        self.report.resolved = len(keep)
        check_report(self.report, self.name, max_skipped, "rows")
        self.labels = np.asarray([labels[row] for row in keep], dtype=np.int64)
        feature = dataset.features[label_key]
        count = int(self.labels.max()) + 1
        self.classnames = list(feature.names) if isinstance(feature, datasets.ClassLabel) else [str(i) for i in range(count)]
        self._init_images(dataset, image_key, np.asarray(keep, dtype=np.int64))
