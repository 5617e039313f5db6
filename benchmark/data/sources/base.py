"""What every source shares: the :class:`SourceReport` and its skip limits, image checks and
decoding (:func:`square_rgb`), row indexing, and the base classes :class:`ImageSource`,
:class:`ImageCaptionSource` and :class:`ImageClassSource`.

A source lists its rows once and decodes images only when a batch is asked for
(:meth:`ImageSource.load_images`).
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ...errors import ClipbenchError

#: Default cap on skipped (missing or unreadable) entries: a fraction of the listed ones.
DEFAULT_MAX_SKIPPED = 0.01
#: How many skipped entries a report names.
MAX_EXAMPLES = 5

Rows = Union[np.ndarray, slice, Sequence[int], int, torch.Tensor]
MaxSkipped = Union[int, float]


def default_workers() -> int:
    """Decoding threads: ``min(8, os.cpu_count())``."""
    return min(8, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# Reports and skip limits


@dataclass
class SourceReport:
    """What a source found: entries listed, resolved (usable), skipped, and up to 5 skipped names.

    ``decode_failures`` counts images that passed the header check but failed to decode when a
    batch was loaded (they are returned black).
    """

    listed: int = 0
    resolved: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    decode_failures: int = 0

    def skip(self, name: str, why: str) -> None:
        """Count one skipped entry, remembering its name and reason among the first few."""
        self.skipped += 1
        if len(self.skipped_examples) < MAX_EXAMPLES:
            self.skipped_examples.append(f"{name} ({why})")


def skip_limit(max_skipped: MaxSkipped, listed: int) -> float:
    """The largest allowed skip count: ``max_skipped`` itself (int) or that fraction of ``listed`` (float)."""
    if isinstance(max_skipped, bool) or not isinstance(max_skipped, (int, float)):
        raise ClipbenchError(f"max_skipped must be an int count or a float fraction in [0, 1], not {max_skipped!r}")
    if isinstance(max_skipped, float):
        if not 0.0 <= max_skipped <= 1.0:
            raise ClipbenchError(f"max_skipped as a fraction must be in [0, 1], not {max_skipped}")
        return max_skipped * listed
    if max_skipped < 0:
        raise ClipbenchError(f"max_skipped must not be negative, not {max_skipped}")
    return float(max_skipped)


def check_report(report: SourceReport, what: str, max_skipped: MaxSkipped, noun: str = "entries") -> None:
    """Raise when more entries were skipped than ``max_skipped`` allows, or none is usable."""
    examples = "; first: " + ", ".join(report.skipped_examples) if report.skipped_examples else ""
    limit = skip_limit(max_skipped, report.listed)
    if report.skipped > limit:
        allowed = f"{max_skipped:.2%}" if isinstance(max_skipped, float) else str(max_skipped)
        raise ClipbenchError(
            f"{what}: {report.skipped} of {report.listed} {noun} are missing, unreadable or incomplete "
            f"(more than max_skipped={allowed}){examples}"
        )
    if report.resolved == 0:
        raise ClipbenchError(f"{what}: no usable {noun} (listed {report.listed}){examples}")


# --------------------------------------------------------------------------------------------
# Decoding


def square_rgb(image: Image.Image, size: int) -> np.ndarray:
    """``size x size x 3`` uint8: open_clip's ``Resize(size, bicubic)``, ``CenterCrop(size)``, RGB.

    The order and rounding follow torchvision on PIL images: the longer side becomes
    ``int(size * long / short)``, the crop offset ``int(round((side - size) / 2))``, and the
    conversion to RGB comes last (as open_clip's ``_convert_to_rgb``).
    """
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short != size:
        new_long = int(size * long / short)
        image = image.resize((size, new_long) if width <= height else (new_long, size), Image.Resampling.BICUBIC)
    width, height = image.size
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def as_row_indices(rows: Rows, length: int) -> np.ndarray:
    """``rows`` (slice, int, int array/list/tensor or boolean mask) as int64 positions in ``[0, length)``."""
    if isinstance(rows, slice):
        return np.arange(length, dtype=np.int64)[rows]
    if isinstance(rows, torch.Tensor):
        rows = rows.cpu().numpy()
    array = np.asarray(rows)
    if array.dtype == bool:
        if array.shape != (length,):
            raise IndexError(f"boolean mask of shape {array.shape} for {length} rows")
        return np.flatnonzero(array).astype(np.int64)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise IndexError(f"rows must be integers, a slice or a boolean mask, not {array.dtype}")
    array = np.atleast_1d(array).astype(np.int64)
    if array.size and (array.min() < -length or array.max() >= length):
        raise IndexError(f"row index out of range for {length} rows")
    return np.where(array < 0, array + length, array)


def verify_image(path: Path) -> Optional[str]:
    """``None`` when ``path`` opens as an image (header-level PIL check), else why not."""
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return f"unreadable: {type(error).__name__}"
    return None


def verify_images(paths: Sequence[Path], workers: Optional[int] = None) -> list[Optional[str]]:
    """:func:`verify_image` for every path, in order, on a few I/O threads."""
    workers = workers or default_workers()
    if workers <= 1 or len(paths) < 64:
        return [verify_image(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clipbench-verify") as pool:
        return list(pool.map(verify_image, paths, chunksize=256))


# --------------------------------------------------------------------------------------------
# Base classes


class ImageSource:
    """Rows of lazily decoded images with stable int64 ``ids`` and a :class:`SourceReport`.

    Subclasses set ``ids``, ``report`` and ``name`` and implement :meth:`_open` (a PIL image for
    one row) and :meth:`_describe` (a row's name for messages).
    """

    ids: np.ndarray
    report: SourceReport
    name: str

    def __len__(self) -> int:
        return len(self.ids)

    def _open(self, row: int) -> Image.Image:
        raise NotImplementedError

    def _describe(self, row: int) -> str:
        return f"row {row}"

    def load_images(self, rows: Rows, size: int) -> torch.Tensor:
        """uint8 ``N x 3 x size x size`` RGB images of ``rows`` (int array or slice) in that order.

        An image that fails to decode is returned black and counted in ``report.decode_failures``
        (with one warning per source), so a long run is not lost to one bad file.
        """
        arrays = [self._decode(int(row), size) for row in as_row_indices(rows, len(self))]
        if not arrays:
            return torch.empty((0, 3, size, size), dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def _decode(self, row: int, size: int) -> np.ndarray:
        try:
            with self._open(row) as image:
                return square_rgb(image, size)
        except Exception as error:  # a bad file must not end a long run: substitute and count
            self._decode_failed(row, error)
            return np.zeros((size, size, 3), dtype=np.uint8)

    def _decode_failed(self, row: int, error: Exception) -> None:
        lock = self.__dict__.setdefault("_failure_lock", threading.Lock())
        with lock:
            self.report.decode_failures += 1
            first = self.report.decode_failures == 1
        if first:
            warnings.warn(
                f"{self.name}: cannot decode {self._describe(row)} ({type(error).__name__}: {error}); "
                "substituting a black image (further failures are counted in report.decode_failures)",
                RuntimeWarning, stacklevel=3,
            )

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_failure_lock", None)
        return state


class ImageCaptionSource(ImageSource):
    """Image-caption pairs: ``captions[i]`` describes the image of row ``i`` (captions stay strings)."""

    captions: list[str]


class ImageClassSource(ImageSource):
    """Labelled images: ``labels[i]`` indexes ``classnames`` for the image of row ``i``."""

    labels: np.ndarray
    classnames: list[str]
