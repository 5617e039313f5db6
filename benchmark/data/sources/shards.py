"""Webdataset tar shards: :class:`WebDatasetPairs` reads ``<key>.jpg`` + ``<key>.txt`` members,
the layout of the Hugging Face ``pixparse/cc3m-wds`` mirror, plus brace expansion, shard
resolution and the per-shard tar index it builds on.
"""

from __future__ import annotations

import glob
import io
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
from PIL import Image

from ...errors import ClipbenchError
from .base import DEFAULT_MAX_SKIPPED, ImageCaptionSource, MaxSkipped, SourceReport, check_report


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
