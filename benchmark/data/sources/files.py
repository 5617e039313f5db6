"""Readers of plain files on disk.

* :class:`CsvPairs` -- the CleanCLIP CSV/TSV format (an image-path column and a caption column);
* :class:`ImageFolderClasses` -- an ImageNet-style folder (``root/<class>/*.JPEG``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

from ...errors import ClipbenchError
from .base import (
    DEFAULT_MAX_SKIPPED,
    ImageCaptionSource,
    ImageClassSource,
    MaxSkipped,
    SourceReport,
    check_report,
    verify_images,
)

#: File extensions an image folder lists (compared lower-case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


# --------------------------------------------------------------------------------------------
# CSV / TSV (CleanCLIP)


def _read_table(path: Path, delimiter: str, keys: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a delimited text file; raises naming missing ``keys`` and the existing columns."""
    if not path.is_file():
        raise ClipbenchError(f"CSV file {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None) or []
        missing = [key for key in keys if key not in header]
        if missing:
            raise ClipbenchError(
                f"{path}: no column {', '.join(repr(k) for k in missing)}; columns: "
                f"{', '.join(repr(c) for c in header) or '(none)'} (delimiter {delimiter!r})"
            )
        return header, [row for row in reader if row]


class CsvPairs(ImageCaptionSource):
    """CleanCLIP's pair format: a CSV (or TSV) with an image-path column and a caption column.

    Image paths are relative to the CSV's folder (or ``root``). At construction each image is
    checked at header level (PIL ``open`` + ``verify``); missing or unreadable files and rows
    with an empty caption are skipped and counted. ``ids`` are the rows' positions in the file.
    """

    def __init__(
        self, path: Union[str, Path], image_key: str = "image", caption_key: str = "caption",
        delimiter: str = ",", root: Union[str, Path, None] = None,
        max_skipped: MaxSkipped = DEFAULT_MAX_SKIPPED, workers: Optional[int] = None,
    ) -> None:
        path = Path(path)
        self.name = str(path)
        header, rows = _read_table(path, delimiter, (image_key, caption_key))
        image_col, caption_col = header.index(image_key), header.index(caption_key)
        base = Path(root) if root is not None else path.parent
        self.report = SourceReport(listed=len(rows))
        width = max(image_col, caption_col) + 1
        cells = [(row[image_col].strip(), row[caption_col]) if len(row) >= width else ("", "") for row in rows]
        reasons = verify_images([base / image for image, _ in cells], workers)
        keep = []
        for index, ((image, caption), reason) in enumerate(zip(cells, reasons)):
            if not image:
                reason = "no image path"
            elif reason is None and not caption.strip():
                reason = "empty caption"
            if reason:
                self.report.skip(image or f"data row {index}", reason)
            else:
                keep.append(index)
        self.report.resolved = len(keep)
        check_report(self.report, str(path), max_skipped, "images")
        self.ids = np.asarray(keep, dtype=np.int64)
        self.paths = [base / cells[i][0] for i in keep]
        self.captions = [cells[i][1] for i in keep]

    def _open(self, row: int) -> Image.Image:
        return Image.open(self.paths[row])

    def _describe(self, row: int) -> str:
        return str(self.paths[row])


# --------------------------------------------------------------------------------------------
# Image folders


class ImageFolderClasses(ImageClassSource):
    """An ImageNet-style folder ``root/<class folder>/**/*.JPEG`` (torchvision ``ImageFolder`` layout).

    Classes are the sub-folder names sorted (label = position); files are listed sorted by
    relative path, checked at header level, and missing/unreadable ones are skipped and counted.
    ``ids`` are positions among all listed files.
    """

    def __init__(self, root: Union[str, Path], max_skipped: MaxSkipped = DEFAULT_MAX_SKIPPED, workers: Optional[int] = None) -> None:
        root = Path(root)
        self.name = str(root)
        if not root.is_dir():
            raise ClipbenchError(f"image folder {root} does not exist")
        self.classnames = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classnames:
            raise ClipbenchError(f"image folder {root} has no class sub-folders")
        files, labels = [], []
        for label, classname in enumerate(self.classnames):
            found = sorted(p for p in (root / classname).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            files.extend(found)
            labels.extend([label] * len(found))
        self.report = SourceReport(listed=len(files))
        reasons = verify_images(files, workers)
        keep = [i for i, reason in enumerate(reasons) if reason is None]
        for path, reason in zip(files, reasons):
            if reason is not None:
                self.report.skip(str(path.relative_to(root)), reason)
        self.report.resolved = len(keep)
        check_report(self.report, self.name, max_skipped, "images")
        self.ids = np.asarray(keep, dtype=np.int64)
        self.paths = [files[i] for i in keep]
        self.labels = np.asarray([labels[i] for i in keep], dtype=np.int64)

    def _open(self, row: int) -> Image.Image:
        return Image.open(self.paths[row])

    def _describe(self, row: int) -> str:
        return str(self.paths[row])
