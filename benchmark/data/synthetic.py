"""Data with the shape of the paper setting's, for runs and benchmarks without the real data.

:func:`write_pairs_shards` writes CC3M-like webdataset shards in the layout of the Hugging Face
``pixparse/cc3m-wds`` mirror (``cc3m-train-0000.tar`` ... holding ``<key>.jpg``, ``<key>.txt``
and ``<key>.json``), and :func:`write_val_folder` an ImageNet-style validation folder
(``<wnid>/ILSVRC2012_val_00000001.JPEG``, one folder per class, WordNet ids in ImageNet's sorted
order, so folder ``i`` is OpenAI's class name ``i``). Both are seeded.

Images are JPEGs of the sizes and aspect ratios of web images (shorter side 256-512 px, aspect
0.6-1.8, quality 75-95), so decoding costs what it costs on CC3M. Each shows a pattern drawn from
its class (a palette, a stripe frequency and a blob position), so a model can learn something
from them; captions are short sentences naming the class in the words of OpenAI's ImageNet class
names, and a fraction ``target_share`` of them name the target class (BadCLIP's natural
captions need some).
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from ..atomic import atomic_folder
from ..errors import ClipbenchError

#: Sentence shapes of the synthetic captions (CC3M captions are short, hypernymised sentences).
CAPTION_SHAPES = (
    "a {} on a sunny day.",
    "close-up of a {} against a wall.",
    "a {} in the garden.",
    "photograph of a {} taken by a traveller.",
    "the {} at the market this morning.",
    "an old {} next to the road.",
    "illustration of a {} for a children's book.",
    "a {} in the city at night.",
)
#: Shards of this many pairs, as the mirror's shards hold a few thousand samples each.
DEFAULT_SHARD_SIZE = 5000
#: Bytes written besides the JPEGs per pair (tar headers, caption, json), for the disk estimate.
PER_PAIR_OVERHEAD = 3 * 512 + 400


@dataclass(frozen=True)
class SyntheticSpec:
    """What to write: ``pairs`` CC3M-like pairs and ``val_images`` validation images over ``classes`` classes."""

    pairs: int = 50000
    val_images: int = 1000
    classes: int = 1000
    target: str = "banana"
    target_share: float = 0.01
    shard_size: int = DEFAULT_SHARD_SIZE
    seed: int = 0

    def validate(self) -> None:
        if self.pairs < 0 or self.val_images < 0:
            raise ClipbenchError("synthetic data: --pairs and --val-images must be >= 0")
        if self.pairs == 0 and self.val_images == 0:
            raise ClipbenchError("synthetic data: nothing to write (--pairs and --val-images are both 0)")
        if not 1 <= self.classes <= 1000:
            raise ClipbenchError(f"synthetic data: --classes must be in [1, 1000], got {self.classes}")
        if not 0 <= self.target_share <= 1:
            raise ClipbenchError(f"synthetic data: --target-share must be in [0, 1], got {self.target_share}")
        if self.shard_size < 1:
            raise ClipbenchError(f"synthetic data: --shard-size must be >= 1, got {self.shard_size}")


def class_names(count: int, also: str = "") -> tuple[list[str], list[str]]:
    """The first ``count`` ImageNet classes (and the class named ``also``, when it is not among
    them): WordNet ids (sorted, as ImageNet's folders) and OpenAI's names."""
    from .real import imagenet_classnames

    names, wnids = list(imagenet_classnames()), wordnet_ids()
    chosen = list(range(count)) + ([names.index(also)] if also in names[count:] else [])
    return [wnids[i] for i in chosen], [names[i] for i in chosen]


def wordnet_ids() -> list[str]:
    """ImageNet-1K's 1,000 WordNet ids in sorted order (timm ships the list), else ``n00000000`` ..."""
    try:
        from importlib.resources import files

        text = (files("timm.data") / "_info" / "imagenet_synsets.txt").read_text()
        ids = [line.strip() for line in text.splitlines() if line.strip()]
        if len(ids) == 1000:
            return ids
    except (ImportError, OSError, ModuleNotFoundError):
        pass
    return [f"n{i:08d}" for i in range(1000)]


def class_image(label: int, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A ``width x height`` RGB image showing class ``label``'s pattern under per-image noise."""
    palette = np.random.default_rng(10_000 + label)
    colours = palette.integers(0, 256, size=(2, 3))
    frequency = 2 + label % 7
    centre = palette.uniform(0.25, 0.75, size=2)
    small = 48
    yy, xx = np.mgrid[:small, :small] / small
    stripes = (np.sin(2 * np.pi * frequency * (xx + (label % 3) * yy)) > 0)[..., None]
    pixels = np.where(stripes, colours[0], colours[1]).astype(np.float32)
    blob = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) < 0.03
    pixels[blob] = 255 - colours[0]
    pixels += rng.normal(0, 18, size=pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)


def web_size(rng: np.random.Generator) -> tuple[int, int]:
    """A (width, height) like a web image's: shorter side 256-512 px, aspect ratio 0.6-1.8."""
    short = int(rng.integers(256, 513))
    aspect = float(rng.uniform(0.6, 1.8))
    return (int(short * aspect), short) if aspect >= 1 else (short, int(short / aspect))


def jpeg_bytes(image: Image.Image, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(75, 96)))
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def pair_labels(spec: SyntheticSpec, names: list[str]) -> np.ndarray:
    """Each pair's class: the target for a ``target_share`` of them, uniform otherwise (seeded)."""
    rng = np.random.default_rng(spec.seed)
    labels = rng.integers(0, spec.classes, size=spec.pairs)
    if spec.target in names:
        labels[rng.random(spec.pairs) < spec.target_share] = names.index(spec.target)
    return labels


def estimate_bytes(spec: SyntheticSpec, samples: int = 24) -> int:
    """Bytes the request will take, from encoding a few images of its kind."""
    rng = np.random.default_rng(spec.seed + 7)
    sizes = [len(jpeg_bytes(class_image(i % spec.classes, rng, *web_size(rng)), rng)) for i in range(samples)]
    return int((np.mean(sizes) + PER_PAIR_OVERHEAD) * (spec.pairs + spec.val_images) * 1.1)


def check_disk(out: Path, needed: int) -> None:
    """Refuse before writing anything when the disk under ``out`` has less free space than ``needed``."""
    probe = out
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise ClipbenchError(f"synthetic data needs about {needed / 2**30:.2f} GiB but {probe} has "
                             f"{free / 2**30:.2f} GiB free; ask for fewer --pairs/--val-images")


def _write_shard(path: Path, spec: SyntheticSpec, shard: int, labels: np.ndarray, wnids: list[str], names: list[str]) -> int:
    """Write shard ``shard`` (pairs ``shard * shard_size`` ..., whose classes are ``labels``) to
    ``path``; its images and caption shapes are drawn from a generator of its own, so a shard is
    the same whoever writes it."""
    rng = np.random.default_rng([spec.seed, 1, shard])
    start = shard * spec.shard_size
    stop = min(spec.pairs, start + spec.shard_size)
    with tarfile.open(path, "w") as tar:
        for index in range(start, stop):
            label = int(labels[index - start])
            width, height = web_size(rng)
            caption = CAPTION_SHAPES[int(rng.integers(len(CAPTION_SHAPES)))].format(names[label])
            key = f"{index:09d}"
            _add(tar, f"{key}.jpg", jpeg_bytes(class_image(label, rng, width, height), rng))
            _add(tar, f"{key}.txt", caption.encode())
            _add(tar, f"{key}.json", json.dumps({"key": key, "caption": caption, "width": width, "height": height,
                                                 "status": "success", "wnid": wnids[label]}).encode())
    return stop - start


def _write_val_chunk(folder: Path, spec: SyntheticSpec, chunk: int, wnids: list[str]) -> int:
    """Write validation images ``chunk * shard_size`` ... from a generator of the chunk's own."""
    rng = np.random.default_rng([spec.seed, 2, chunk])
    start = chunk * spec.shard_size
    stop = min(spec.val_images, start + spec.shard_size)
    for index in range(start, stop):
        label = index % spec.classes
        image = class_image(label, rng, *web_size(rng))
        (folder / wnids[label] / f"ILSVRC2012_val_{index + 1:08d}.JPEG").write_bytes(jpeg_bytes(image, rng))
    return stop - start


def _run_jobs(write: Callable[..., int], jobs: list[tuple], workers: int,
              progress: Optional[Callable[[int], None]]) -> None:
    """Run ``write(*job)`` for every job, in ``workers`` spawned processes when more than one."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            count = write(*job)
            if progress is not None:
                progress(count)
        return
    import multiprocessing
    from functools import partial

    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        for count in pool.imap_unordered(partial(_star, write), jobs):
            if progress is not None:
                progress(count)


def _star(write: Callable[..., int], job: tuple) -> int:
    return write(*job)


def write_pairs_shards(folder: Path, spec: SyntheticSpec, progress: Optional[Callable[[int], None]] = None,
                       workers: int = 1) -> int:
    """Write ``spec.pairs`` CC3M-like pairs as tar shards into ``folder``, ``workers`` shards at a
    time (the shards are identical for any ``workers``); returns the shard count."""
    wnids, names = class_names(spec.classes, also=spec.target)
    labels = pair_labels(spec, names)
    count = -(-spec.pairs // spec.shard_size)
    size = spec.shard_size
    jobs = [(folder / f"cc3m-train-{shard:04d}.tar", spec, shard, labels[shard * size : (shard + 1) * size], wnids, names)
            for shard in range(count)]
    _run_jobs(_write_shard, jobs, workers, progress)
    return count


def write_val_folder(folder: Path, spec: SyntheticSpec, progress: Optional[Callable[[int], None]] = None,
                     workers: int = 1) -> None:
    """Write ``spec.val_images`` images over ``spec.classes`` WordNet-id folders (classes in turn),
    in chunks of ``spec.shard_size`` images, ``workers`` chunks at a time (same images for any ``workers``)."""
    wnids, _ = class_names(spec.classes)
    for wnid in wnids:
        (folder / wnid).mkdir()
    jobs = [(folder, spec, chunk, wnids) for chunk in range(-(-spec.val_images // spec.shard_size))]
    _run_jobs(_write_val_chunk, jobs, workers, progress)


def write_synthetic(out: Path, spec: SyntheticSpec, progress: Optional[Callable[[int], None]] = None,
                    workers: int = 1) -> dict:
    """Write ``out/cc3m`` (shards, ``workers`` processes) and ``out/imagenet-val`` (folder), each
    complete or not at all. Refuses an ``out`` that already holds either, and a request larger
    than the free disk.
    """
    spec.validate()
    out = Path(out).expanduser()
    parts = [("cc3m", spec.pairs, write_pairs_shards), ("imagenet-val", spec.val_images, write_val_folder)]
    for name, count, _ in parts:
        if count and (out / name).exists():
            raise ClipbenchError(f"{out / name} already exists; choose another --out or remove it")
    check_disk(out, estimate_bytes(spec))
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, count, write in parts:
        if count:
            with atomic_folder(out / name) as tmp:
                write(tmp, spec, progress, workers)
            written[name] = str(out / name)
    return written
