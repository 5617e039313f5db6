"""Lazy real-scale sources (clipbench.data.sources) on small fixtures built here with PIL."""

from __future__ import annotations

import csv
import io
import json
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipbench.data.images import LazyImages
from clipbench.data.sources import (
    CsvPairs,
    HubClasses,
    HubPairs,
    ImageFolderClasses,
    SourceReport,
    WebDatasetPairs,
    expand_braces,
    open_classes,
    open_pairs,
    square_rgb,
)
from clipbench.errors import ClipbenchError

COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}
NAMES = list(COLORS)
SIZE = 16


def solid(index: int) -> Image.Image:
    """Image ``index`` of the fixtures: 40 x 30, a solid colour; every 6th is grayscale, #10 is RGBA."""
    name = NAMES[index % 4]
    if index % 6 == 5:
        return Image.new("L", (40, 30), 128)
    image = Image.new("RGB", (40, 30), COLORS[name])
    return image.convert("RGBA") if index == 10 else image


def expected_pixel(index: int) -> tuple[int, int, int]:
    return (128, 128, 128) if index % 6 == 5 else COLORS[NAMES[index % 4]]


def caption(index: int) -> str:
    return f"a {NAMES[index % 4]}, plain picture number {index}"


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    """A JPEG whose header is fine (passes PIL verify) but whose data stops half way."""
    noise = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    data = jpeg_bytes(Image.fromarray(noise))
    return data[: len(data) // 2]


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """All fixtures under one folder: images + CSV/TSV, tar shards, an image folder, saved datasets."""
    root = tmp_path_factory.mktemp("sources")
    images = root / "images"
    images.mkdir()
    for i in range(24):
        solid(i).save(images / f"img{i:02d}.png")
    (images / "corrupt.jpg").write_bytes(b"this is not an image" * 10)
    (images / "truncated.jpg").write_bytes(truncated_jpeg())

    # CSV (CleanCLIP layout, paths relative to the CSV's folder): 24 good, corrupt, missing, truncated
    rows = [(f"images/img{i:02d}.png", caption(i), i) for i in range(24)]
    rows[5:5] = [("images/corrupt.jpg", "junk", -1)]
    rows[12:12] = [("images/nope.png", "missing", -1)]
    rows.append(("images/truncated.jpg", "cut short", -1))
    with open(root / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["other", "filepath", "title"])
        writer.writerows([(n, path, text) for path, text, n in rows])
    tsv = root / "tsv" / "pairs.tsv"
    tsv.parent.mkdir()
    tsv.write_text("file\ttext\n" + "".join(f"img{i:02d}.png\t{caption(i)}\n" for i in range(6)))

    # webdataset shards: 6 samples each, s0003 has no caption
    shards = root / "shards"
    shards.mkdir()
    for shard in range(2):
        with tarfile.open(shards / f"cc3m-train-{shard:04d}.tar", "w") as tar:
            for i in range(shard * 6, shard * 6 + 6):
                add_member(tar, f"s{i:04d}.jpg", jpeg_bytes(solid(i)))
                if i != 3:
                    add_member(tar, f"s{i:04d}.txt", caption(i).encode())
                add_member(tar, f"s{i:04d}.json", json.dumps({"key": i}).encode())
    with tarfile.open(root / "no-images.tar", "w") as tar:
        add_member(tar, "s0000.txt", b"a caption without an image")

    # image folder: 3 classes x 4 images, one corrupt file, one non-image file
    folder = root / "folder"
    for label, wnid in enumerate(("n003", "n001", "n002")):
        (folder / wnid).mkdir(parents=True)
        for k in range(4):
            solid(label).save(folder / wnid / f"{wnid}_{k}.JPEG", format="PNG")
    (folder / "n002" / "n002_bad.JPEG").write_bytes(b"junk")
    (folder / "n001" / "notes.txt").write_text("not an image")

    # save_to_disk datasets
    import datasets

    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    pairs = {"image": [solid(i) for i in range(8)], "caption": [caption(i) if i != 2 else None for i in range(8)]}
    datasets.Dataset.from_dict(pairs, features=features).save_to_disk(str(root / "hub-pairs"))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["red", "green", "blue"])})
    classes = {"image": [solid(i) for i in range(6)], "label": [i % 3 for i in range(6)]}
    datasets.Dataset.from_dict(classes, features=features).save_to_disk(str(root / "hub-classes"))
    return root


def assert_solid(images: torch.Tensor, pixels: list[tuple[int, int, int]], tolerance: int = 0) -> None:
    assert images.dtype == torch.uint8 and images.shape == (len(pixels), 3, SIZE, SIZE)
    want = torch.tensor(pixels, dtype=torch.int16)[:, :, None, None].expand(-1, -1, SIZE, SIZE)
    assert (images.to(torch.int16) - want).abs().max() <= tolerance


# --------------------------------------------------------------------------------------------
# CSV / TSV


def test_csv_counts_captions_and_ids(data):
    source = CsvPairs(data / "pairs.csv", image_key="filepath", caption_key="title", max_skipped=2)
    assert (source.report.listed, source.report.resolved, source.report.skipped) == (27, 25, 2)
    assert source.report.skipped_examples[0].startswith("images/corrupt.jpg (unreadable")
    assert source.report.skipped_examples[1] == "images/nope.png (missing)"
    assert source.captions[:24] == [caption(i) for i in range(24)] and source.captions[24] == "cut short"
    assert source.ids.dtype == np.int64 and list(source.ids[:6]) == [0, 1, 2, 3, 4, 6]
    assert len(source) == 25


def test_csv_skip_limits(data):
    with pytest.raises(ClipbenchError, match=r"2 of 27 images .*images/corrupt.jpg.*images/nope.png"):
        CsvPairs(data / "pairs.csv", image_key="filepath", caption_key="title")  # default 1%
    with pytest.raises(ClipbenchError, match="2 of 27"):
        CsvPairs(data / "pairs.csv", image_key="filepath", caption_key="title", max_skipped=1)
    assert CsvPairs(data / "pairs.csv", image_key="filepath", caption_key="title", max_skipped=0.1).report.skipped == 2
    with pytest.raises(ClipbenchError, match=r"\[0, 1\]"):
        CsvPairs(data / "pairs.csv", image_key="filepath", caption_key="title", max_skipped=1.5)


def test_csv_missing_column_names_file_key_and_columns(data):
    with pytest.raises(ClipbenchError) as error:
        CsvPairs(data / "pairs.csv", caption_key="title")
    message = str(error.value)
    assert "pairs.csv" in message and "'image'" in message
    assert all(f"'{column}'" in message for column in ("other", "filepath", "title"))


def test_tsv_with_root(data):
    source = open_pairs(str(data / "tsv" / "pairs.tsv"), image_key="file", caption_key="text", root=data / "images")
    assert isinstance(source, CsvPairs) and source.report.skipped == 0
    assert source.captions == [caption(i) for i in range(6)]  # commas inside captions stay
    assert_solid(source.load_images(slice(None), SIZE), [expected_pixel(i) for i in range(6)])


def test_nonexistent_paths(data):
    for call in (lambda: CsvPairs(data / "absent.csv"), lambda: open_pairs(str(data / "absent.csv")),
                 lambda: open_pairs(str(data / "absent")), lambda: open_classes(str(data / "absent")),
                 lambda: WebDatasetPairs(str(data / "shards" / "cc3m-train-{0000..0002}.tar"))):
        with pytest.raises(ClipbenchError, match="absent|0002"):
            call()
    with pytest.raises(ClipbenchError, match="no tar shards match"):
        WebDatasetPairs(str(data / "shards" / "*.none"))
    with pytest.raises(ClipbenchError, match="cannot tell"):
        open_pairs(str(data / "images" / "img00.png"))


# --------------------------------------------------------------------------------------------
# LazyImages


def test_lazy_images_values_slices_and_fancy_indexing(data):
    source = CsvPairs(data / "pairs.csv", image_key="filepath", caption_key="title", max_skipped=2)
    images = LazyImages(source, SIZE, workers=3)
    assert len(images) == 25 and images.shape == (25, 3, SIZE, SIZE) and images.dtype == torch.uint8
    assert_solid(images[np.arange(24)], [expected_pixel(i) for i in range(24)])
    rows = np.array([7, 0, 3, 3, 23])
    picked = images[rows]
    assert torch.equal(picked, torch.stack([images[int(r)] for r in rows]))
    assert torch.equal(images[2:9:3], images[np.array([2, 5, 8])])
    assert torch.equal(images[[-2]], images[np.array([23])])
    assert images[np.array([], dtype=np.int64)].shape == (0, 3, SIZE, SIZE)
    serial = LazyImages(CsvPairs(data / "pairs.csv", image_key="filepath", caption_key="title", max_skipped=2), SIZE, workers=1)
    assert torch.equal(serial[rows], picked)  # deterministic across instances and worker counts
    assert torch.equal(pickle.loads(pickle.dumps(images))[rows], picked)
    with pytest.raises(IndexError):
        images[np.array([25])]
    images.close()


def test_lazy_images_over_a_row_view(data):
    """Any object with ``__len__`` and ``load_images(rows, size)`` can back LazyImages (e.g. a split's view)."""

    class View:
        def __init__(self, source, rows):
            self.source, self.rows = source, np.asarray(rows)

        def __len__(self):
            return len(self.rows)

        def load_images(self, rows, size):
            return self.source.load_images(self.rows[rows], size)

    source = CsvPairs(data / "pairs.csv", image_key="filepath", caption_key="title", max_skipped=2)
    view = LazyImages(View(source, [20, 1, 2, 3, 9, 11]), SIZE, workers=2)
    assert_solid(view[:], [expected_pixel(i) for i in (20, 1, 2, 3, 9, 11)])
    assert torch.equal(view[np.array([5, 0])], LazyImages(source, SIZE)[np.array([11, 20])])


def test_decode_failure_is_substituted_counted_and_warned_once(data):
    source = CsvPairs(data / "pairs.csv", image_key="filepath", caption_key="title", max_skipped=2)
    images = LazyImages(source, SIZE, workers=2)
    with pytest.warns(RuntimeWarning, match="truncated.jpg"):
        batch = images[np.array([0, 24])]
    assert_solid(batch, [expected_pixel(0), (0, 0, 0)])
    assert source.report.decode_failures == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images[np.array([24])]
    assert source.report.decode_failures == 2


def test_square_rgb_resizes_shorter_side_and_centre_crops():
    image = Image.new("RGB", (40, 20))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red left quarter is cropped away
    image.paste((0, 0, 255), (10, 0, 30, 20))
    out = square_rgb(image, 10)
    assert out.shape == (10, 10, 3) and (out[2:-2, 2:-2] == (0, 0, 255)).all()
    assert square_rgb(Image.new("P", (8, 12)), 4).shape == (4, 4, 3)


# --------------------------------------------------------------------------------------------
# webdataset shards


def test_webdataset_index_counts_captions_and_values(data):
    source = WebDatasetPairs(str(data / "shards" / "cc3m-train-{0000..0001}.tar"), max_skipped=1)
    assert (source.report.listed, source.report.resolved, source.report.skipped) == (12, 11, 1)
    assert source.report.skipped_examples == ["cc3m-train-0000.tar:s0003 (no caption)"]
    kept = [i for i in range(12) if i != 3]
    assert source.captions == [caption(i) for i in kept] and list(source.ids) == kept
    assert_solid(LazyImages(source, SIZE)[:], [expected_pixel(i) for i in kept], tolerance=4)  # JPEG
    for spec in (data / "shards", str(data / "shards" / "*.tar"), sorted((data / "shards").glob("*.tar"))):
        other = WebDatasetPairs(spec, max_skipped=1) if not isinstance(spec, Path) else open_pairs(spec, max_skipped=1)
        assert other.captions == source.captions and list(other.ids) == kept
    assert torch.equal(source.load_images(np.array([9, 1]), SIZE), other.load_images(np.array([9, 1]), SIZE))
    keyed = open_pairs(str(data / "shards" / "*.tar"), image_key="image", caption_key="json", max_skipped=0)
    assert keyed.captions[3] == '{"key": 3}' and keyed.report.skipped == 0  # keys are preferred extensions


def test_webdataset_errors(data):
    with pytest.raises(ClipbenchError, match="no-images.tar holds no images"):
        WebDatasetPairs([data / "shards" / "cc3m-train-0000.tar", data / "no-images.tar"])
    with pytest.raises(ClipbenchError, match="1 of 6 samples"):
        WebDatasetPairs(str(data / "shards" / "cc3m-train-0000.tar"), max_skipped=0)


def test_expand_braces():
    assert expand_braces("a-{0008..0011}.tar") == ["a-0008.tar", "a-0009.tar", "a-0010.tar", "a-0011.tar"]
    assert expand_braces("{x,y}{1..2}") == ["x1", "x2", "y1", "y2"]


# --------------------------------------------------------------------------------------------
# image folders and Hugging Face datasets


def test_image_folder_classes(data):
    source = open_classes(str(data / "folder"), max_skipped=1)
    assert isinstance(source, ImageFolderClasses) and source.classnames == ["n001", "n002", "n003"]
    assert (source.report.listed, source.report.resolved, source.report.skipped) == (13, 12, 1)
    assert source.report.skipped_examples == ["n002/n002_bad.JPEG (unreadable: UnidentifiedImageError)"]
    assert list(source.labels) == [0] * 4 + [1] * 4 + [2] * 4
    colors = {"n003": (255, 0, 0), "n001": (0, 255, 0), "n002": (0, 0, 255)}
    assert_solid(LazyImages(source, SIZE)[:], [colors[source.classnames[label]] for label in source.labels])
    with pytest.raises(ClipbenchError, match="1 of 13"):
        ImageFolderClasses(data / "folder", max_skipped=0)


def test_hub_pairs_from_save_to_disk(data):
    source = open_pairs(str(data / "hub-pairs"), max_skipped=1)
    assert isinstance(source, HubPairs) and (source.report.listed, source.report.resolved, source.report.skipped) == (8, 7, 1)
    kept = [0, 1, 3, 4, 5, 6, 7]
    assert source.captions == [caption(i) for i in kept] and list(source.ids) == kept
    assert_solid(LazyImages(source, SIZE)[np.array([6, 0])], [expected_pixel(7), expected_pixel(0)])
    with pytest.raises(ClipbenchError, match=r"no caption column 'title'; columns: 'image', 'caption'"):
        HubPairs(str(data / "hub-pairs"), caption_key="title", max_skipped=1)


def test_hub_classes_from_save_to_disk(data):
    source = open_classes(str(data / "hub-classes"))
    assert isinstance(source, HubClasses) and source.classnames == ["red", "green", "blue"]
    assert list(source.labels) == [0, 1, 2, 0, 1, 2] and source.report.resolved == 6
    assert_solid(source.load_images([1, 4], SIZE), [expected_pixel(1), expected_pixel(4)])
    with pytest.raises(ClipbenchError, match="no label column 'fine_label'"):
        HubClasses(str(data / "hub-classes"), label_key="fine_label")


def test_report_keeps_at_most_five_examples():
    report = SourceReport()
    for i in range(8):
        report.skip(f"f{i}", "missing")
    assert report.skipped == 8 and len(report.skipped_examples) == 5
