"""Fashion-MNIST (Xiao et al., 2017) as Hugging Face ``datasets`` objects with image and label.

Sources, tried in order (docs/design.md, "Presets"):

1. the local cache (``<cache>/data/fashion-mnist``, written by the first successful load, its
   files' digests checked before each use: a damaged copy is converted again);
2. the IDX files of the Debian package ``dataset-fashion-mnist`` under
   ``/usr/share/datasets/fashion-mnist/`` (or a folder named by ``CLIPBENCH_FASHION_MNIST_DIR``);
3. the Hugging Face hub (``zalando-datasets/fashion_mnist``);
4. the original download (the IDX files from the authors' mirror).
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from ..atomic import atomic_folder
from ..errors import ClipbenchError
from .verified import seal_folder, usable

CLASSNAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HUB_NAME = "zalando-datasets/fashion_mnist"
ORIGINAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
EXPECTED_SIZES = {"train": 60000, "test": 10000}
HOW_TO_GET = (
    "Fashion-MNIST not found: install the Debian package 'dataset-fashion-mnist' "
    "(apt-get install dataset-fashion-mnist), or put the four IDX .gz files in a folder named by "
    "CLIPBENCH_FASHION_MNIST_DIR, or allow access to the Hugging Face hub"
)


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file into a numpy array; a malformed file raises naming the file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:  # zlib.error: corrupt deflate stream
        raise ClipbenchError(f"cannot read {path}: {error}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ClipbenchError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ClipbenchError(f"{path} is truncated (header)")
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    count = int(np.prod(shape))
    if len(data) - header != count:
        raise ClipbenchError(f"{path} is truncated or corrupt: expected {count} bytes of data, found {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _from_idx_folder(folder: Path):
    """Build the two splits from a folder holding the four IDX files."""
    import datasets

    splits = {}
    for split, (images_name, labels_name) in FILES.items():
        images = read_idx(folder / images_name)
        labels = read_idx(folder / labels_name)
        if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
            raise ClipbenchError(f"{folder / images_name}: unexpected shape {images.shape} for {labels.shape[0]} labels")
        splits[split] = _to_dataset(images, labels)
    return datasets.DatasetDict(splits)


def _to_dataset(images: np.ndarray, labels: np.ndarray):
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Array2D(shape=(28, 28), dtype="uint8"),
            "label": datasets.ClassLabel(names=list(CLASSNAMES)),
        }
    )
    return datasets.Dataset.from_dict({"image": images, "label": labels.astype(np.int64)}, features=features)


def _from_hub():
    import datasets

    raw = datasets.load_dataset(HUB_NAME)
    splits = {}
    for split in ("train", "test"):
        table = raw[split]
        images = np.stack([np.asarray(image, dtype=np.uint8) for image in table["image"]])
        splits[split] = _to_dataset(images, np.asarray(table["label"]))
    return datasets.DatasetDict(splits)


def _from_original_download():
    with tempfile.TemporaryDirectory() as folder:
        for names in FILES.values():
            for name in names:
                urllib.request.urlretrieve(ORIGINAL_URL + name, os.path.join(folder, name))
        return _from_idx_folder(Path(folder))


def _valid(dataset_dict) -> bool:
    return all(dataset_dict[split].num_rows == size for split, size in EXPECTED_SIZES.items())


def load_fashion_mnist(cache_dir: Path):
    """Fashion-MNIST as a ``DatasetDict`` with ``train`` (60K) and ``test`` (10K) splits.

    Columns: ``image`` (28x28 uint8) and ``label`` (``ClassLabel`` with :data:`CLASSNAMES`).
    """
    import datasets

    cache = dataset_folder(cache_dir)
    if usable(cache, "the converted Fashion-MNIST"):
        try:
            loaded = datasets.load_from_disk(str(cache))
            if _valid(loaded):
                return loaded
        except Exception:  # a damaged cache is rebuilt from the next source
            pass
    if cache.is_symlink():
        cache.unlink()
    shutil.rmtree(cache, ignore_errors=True)

    folders = [Path(p) for p in [os.environ.get("CLIPBENCH_FASHION_MNIST_DIR")] if p] + [DEBIAN_DIR]
    loaded = None
    for folder in folders:
        if all((folder / name).exists() for names in FILES.values() for name in names):
            loaded = _from_idx_folder(folder)  # corrupt files raise with the file's name
            break
        if folder != DEBIAN_DIR:
            raise ClipbenchError(f"CLIPBENCH_FASHION_MNIST_DIR={folder} lacks the four Fashion-MNIST IDX .gz files")
    if loaded is None:
        for source in (_from_hub, _from_original_download):
            try:
                loaded = source()
                break
            except Exception:
                continue
    if loaded is None:
        raise ClipbenchError(HOW_TO_GET)
    if not _valid(loaded):
        raise ClipbenchError("Fashion-MNIST source has unexpected split sizes; expected 60000 train and 10000 test rows")
    _save_atomically(loaded, cache)
    return datasets.load_from_disk(str(cache))


def dataset_folder(cache_dir: Path) -> Path:
    """Where the converted dataset lives in the cache."""
    return Path(cache_dir) / "data" / "fashion-mnist"


def dataset_folders(cache_dir: Path) -> list[Path]:
    """The converted datasets present in the cache (for ``clipbench cache verify``)."""
    folder = dataset_folder(cache_dir)
    return [folder] if folder.exists() else []


def _save_atomically(dataset_dict, target: Path) -> None:
    import datasets

    datasets.disable_progress_bars()
    try:
        with atomic_folder(target) as tmp:
            dataset_dict.save_to_disk(str(tmp))
            seal_folder(tmp)
    except OSError:  # another process published it first
        if not target.exists():
            raise
