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

:class:`LazyImages` wraps a source so that training and evaluation loops can index it like the
uint8 ``N x 3 x S x S`` image tensor of the in-memory scenario. Images are resized as open_clip's
preprocessing does: shorter side to ``S`` (bicubic, PIL's antialiasing resize), centre crop, then
conversion to RGB.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re
import tarfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..errors import ClipbenchError

#: Default cap on skipped (missing or unreadable) entries: a fraction of the listed ones.
DEFAULT_MAX_SKIPPED = 0.01
#: How many skipped entries a report names.
MAX_EXAMPLES = 5
#: File extensions an image folder lists (compared lower-case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: Files that mark a folder written by ``datasets`` ``save_to_disk``.
SAVE_TO_DISK_MARKERS = ("state.json", "dataset_dict.json", "dataset_info.json")

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
# Webdataset tar shards


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion: ``{0000..0003}`` (zero-padded ranges) and ``{a,b}`` lists."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail, body = pattern[: match.start()], pattern[match.end():], match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        first, last = numeric.groups()
        step = 1 if int(last) >= int(first) else -1
        width = len(first) if first.startswith("0") else 0
        choices = [str(n).zfill(width) for n in range(int(first), int(last) + step, step)]
    elif "," in body:
        choices = body.split(",")
    else:
        return [head + "{" + body + "}" + rest for rest in expand_braces(tail)]
    return [head + choice + rest for choice in choices for rest in expand_braces(tail)]


def resolve_shards(shards: Union[str, Path, Iterable[Union[str, Path]]]) -> list[Path]:
    """Tar shard paths from a list, a directory (its ``*.tar``, sorted), a glob or a brace pattern.

    Globs are sorted; brace ranges and explicit lists keep their order. A named shard that does
    not exist, or a pattern matching nothing, raises.
    """
    if not isinstance(shards, (str, Path)):
        paths = [Path(s) for s in shards]
    elif Path(shards).is_dir():
        paths = sorted(Path(shards).glob("*.tar"))
        if not paths:
            raise ClipbenchError(f"no .tar shards in directory {shards}")
    else:
        paths = []
        for pattern in expand_braces(str(shards)):
            if glob.has_magic(pattern):
                paths.extend(Path(p) for p in sorted(glob.glob(pattern)))
            else:
                paths.append(Path(pattern))
    if not paths:
        raise ClipbenchError(f"no tar shards match {shards}")
    for path in paths:
        if not path.is_file():
            raise ClipbenchError(f"tar shard {path} does not exist")
    return paths


def split_key(name: str) -> tuple[str, str]:
    """Webdataset's (key, extension) of a member name: the key ends at the first dot of the basename."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return "", ""
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


@dataclass
class ShardIndex:
    """The complete samples of one tar shard: position among its samples, image offset/size, caption."""

    positions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


def index_shard(path: Path, image_ext: Sequence[str], caption_ext: Sequence[str], report: SourceReport) -> ShardIndex:
    """Index the complete samples of one tar shard, in tar order.

    Scans member headers with ``tarfile`` (images are not read); captions are read from their
    small text members. Samples lacking an image or a caption are counted in ``report``.
    """
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    index = ShardIndex()
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                key, ext = split_key(member.name)
                if member.isfile() and key:
                    samples.setdefault(key, {})[ext] = member
            if not any(e in members for members in samples.values() for e in image_ext):
                raise ClipbenchError(f"tar shard {path} holds no images (extensions {', '.join(image_ext)})")
            for position, (key, members) in enumerate(samples.items()):
                image = next((members[e] for e in image_ext if e in members), None)
                text = next((members[e] for e in caption_ext if e in members), None)
                caption = tar.extractfile(text).read().decode("utf-8", "replace").strip() if text is not None else ""
                if image is None or not caption:
                    report.skip(f"{path.name}:{key}", "no image" if image is None else "no caption")
                    continue
                index.positions.append(position)
                index.offsets.append(image.offset_data)
                index.sizes.append(image.size)
                index.captions.append(caption)
    except (tarfile.TarError, OSError) as error:
        raise ClipbenchError(f"cannot read tar shard {path}: {error}") from None
    report.listed += len(samples)
    return index


class WebDatasetPairs(ImageCaptionSource):
    """Webdataset tar shards (e.g. Hugging Face ``pixparse/cc3m-wds``): members ``<key>.jpg``, ``<key>.txt``, ...

    The index is built once from tar headers (``offset_data`` and ``size`` of each image member);
    loading a row seeks into its shard and reads only those bytes. ``ids`` number all samples
    (complete or not) across the shards in order, so they do not shift when one is skipped.
    Webdataset field names are extensions: ``image_key``/``caption_key``, when given, are tried
    before ``image_ext``/``caption_ext`` (so the CSV defaults ``image``/``caption`` are harmless).
    """

    def __init__(
        self, shards: Union[str, Path, Iterable[Union[str, Path]]],
        image_ext: Sequence[str] = ("jpg", "jpeg", "png", "webp"), caption_ext: Sequence[str] = ("txt",),
        max_skipped: MaxSkipped = DEFAULT_MAX_SKIPPED, image_key: Optional[str] = None, caption_key: Optional[str] = None,
    ) -> None:
        self.shards = resolve_shards(shards)
        self.name = str(shards) if isinstance(shards, (str, Path)) else f"{len(self.shards)} tar shards"
        self.report = SourceReport()
        image_ext = tuple(dict.fromkeys(e.lower() for e in ([image_key] if image_key else []) + list(image_ext)))
        caption_ext = tuple(dict.fromkeys(e.lower() for e in ([caption_key] if caption_key else []) + list(caption_ext)))
        ids, shard_of, offsets, sizes, self.captions = [], [], [], [], []
        for number, path in enumerate(self.shards):
            start = self.report.listed
            index = index_shard(path, image_ext, caption_ext, self.report)
            ids.extend(start + p for p in index.positions)
            shard_of.extend([number] * len(index.positions))
            offsets.extend(index.offsets)
            sizes.extend(index.sizes)
            self.captions.extend(index.captions)
        self.report.resolved = len(offsets)
        check_report(self.report, self.name, max_skipped, "samples")
        self.ids = np.asarray(ids, dtype=np.int64)
        self._shard = np.asarray(shard_of, dtype=np.int32)
        self._offset = np.asarray(offsets, dtype=np.int64)
        self._size = np.asarray(sizes, dtype=np.int64)

    def read_bytes(self, row: int) -> bytes:
        """The encoded image bytes of ``row``, read by seeking into its shard."""
        with open(self.shards[self._shard[row]], "rb") as handle:
            handle.seek(int(self._offset[row]))
            return handle.read(int(self._size[row]))

    def _open(self, row: int) -> Image.Image:
        return Image.open(io.BytesIO(self.read_bytes(row)))

    def _describe(self, row: int) -> str:
        return f"{self.shards[self._shard[row]]} at byte {self._offset[row]}"


# --------------------------------------------------------------------------------------------
# Hugging Face datasets


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
        raise ClipbenchError(f"cannot load {name!r} split {split!r} from the Hugging Face hub: {type(error).__name__}: {first_line}") from None


def pick_column(dataset, name: str, key: Optional[str], defaults: Sequence[str], role: str) -> str:
    """``key`` (or the first of ``defaults`` present); raises naming the wanted and existing columns."""
    columns = list(dataset.column_names)
    wanted = [key] if key is not None else list(defaults)
    found = next((c for c in wanted if c in columns), None)
    if found is None:
        raise ClipbenchError(f"{name}: no {role} column {' or '.join(repr(c) for c in wanted)}; columns: {', '.join(repr(c) for c in columns)}")
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


# --------------------------------------------------------------------------------------------
# The tensor-like view used by training and evaluation


class LazyImages:
    """Behaves like the uint8 ``N x 3 x size x size`` image tensor the training/evaluation loops index.

    ``len(x)``, ``x.shape``, ``x[rows]`` (int array, list, slice, boolean mask or int) decode
    those rows and return a ``torch.Tensor`` in that order. ``source`` is anything with
    ``__len__`` and ``load_images(rows, size)``; a batch is split into ``workers`` contiguous
    chunks loaded on a small thread pool (PIL releases the GIL while decoding). Nothing is
    cached. Read-only: assigning rows is not supported.
    """

    dtype = torch.uint8

    def __init__(self, source, size: int, workers: Optional[int] = None) -> None:
        self.source = source
        self.size = int(size)
        self.workers = max(1, workers if workers is not None else default_workers())
        self._pool: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.source)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), 3, self.size, self.size))

    @property
    def report(self) -> Optional[SourceReport]:
        return getattr(self.source, "report", None)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="clipbench-decode")
            return self._pool

    def __getitem__(self, rows: Rows) -> torch.Tensor:
        single = isinstance(rows, (int, np.integer)) or (isinstance(rows, torch.Tensor) and rows.ndim == 0)
        positions = as_row_indices(rows, len(self))
        chunks = min(self.workers, len(positions) // 2)
        if chunks <= 1:
            images = self.source.load_images(positions, self.size)
        else:
            load = lambda part: self.source.load_images(part, self.size)
            images = torch.cat(list(self._executor().map(load, np.array_split(positions, chunks))))
        return images[0] if single else images

    def close(self) -> None:
        """Stop the decoding threads (a later index starts new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> "LazyImages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"source": self.source, "size": self.size, "workers": self.workers}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["source"], state["size"], state["workers"])

    def __repr__(self) -> str:
        name = getattr(self.source, "name", None) or type(self.source).__name__
        return f"LazyImages({name!r}, {len(self)} x 3 x {self.size} x {self.size})"


# --------------------------------------------------------------------------------------------
# Factories

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
