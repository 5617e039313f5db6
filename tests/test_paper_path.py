"""The ``paper-abd`` path end to end on fixtures built here: webdataset shards and a CSV of
image-caption pairs, an ImageNet-style image folder, the real loaders, runner and ``reproduce``."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
SHAPES = ("square", "disc")


def picture(colour: str, shape: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:40, :48]
    inside = (np.abs(yy - 20) < 12) & (np.abs(xx - 24) < 12) if shape == "square" else (yy - 20) ** 2 + (xx - 24) ** 2 < 144
    pixels[inside] = COLOURS[colour]
    return Image.fromarray(pixels)


def samples(count: int):
    for i in range(count):
        colour, shape = list(COLOURS)[i % 3], SHAPES[(i // 3) % 2]
        yield i, picture(colour, shape, i), f"a {colour} {shape} on a dark background number {i}"


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paper-fixtures")
    shards = root / "shards"
    shards.mkdir()
    for shard in range(2):
        with tarfile.open(shards / f"cc3m-train-{shard:04d}.tar", "w") as tar:
            for i, image, caption in samples(48):
                if i % 2 != shard:
                    continue
                for name, payload in ((f"{i:06d}.jpg", _jpeg(image)), (f"{i:06d}.txt", caption.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    images = root / "pairs" / "images"
    images.mkdir(parents=True)
    with open(root / "pairs" / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filepath", "title"])
        for i, image, caption in samples(40):
            image.save(images / f"{i}.png")
            writer.writerow([f"images/{i}.png", caption])
        writer.writerow(["images/missing.png", "a row whose image is gone"])
    val = root / "val"
    for colour in COLOURS:
        (val / colour).mkdir(parents=True)
        for j in range(6):
            picture(colour, SHAPES[j % 2], 1000 + j).save(val / colour / f"{j}.JPEG", format="JPEG")
    return {"shards": shards, "csv": root / "pairs" / "train.csv", "val": val}


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def assert_one_error_line(stderr: str, message: str) -> None:
    """The run's plan line may precede it; the error itself is one line, with no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("clipbench: error:")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert "Traceback" not in stderr


def micro_paper_args(train_data, eval_data) -> list[str]:
    """paper-abd with a micro model and schedules that fit a few dozen pairs."""
    sets = {
        "scenario.train_data": train_data, "scenario.eval_data": eval_data, "scenario.classnames": "source",
        "scenario.templates": "simple", "scenario.target": "red", "scenario.pretrain_size": 8,
        "scenario.victim_size": 24, "scenario.defense_size": 8, "scenario.eval_size": 18,
        "poison.count": 4, "pretrain.epochs": 1, "pretrain.batch_size": 8,
        "victim.epochs": 1, "victim.batch_size": 8, "victim.warmup_steps": 1,
        "badclip.epochs": 1, "badclip.batch_size": 8,
        "cleanclip.epochs": 1, "cleanclip.batch_size": 8, "abd.epochs": 1, "abd.batch_size": 8,
        "abd.craft_steps": 2, "abd.craft_batch_size": 8,
        "roclip.epochs": 2, "roclip.batch_size": 8, "roclip.pool_size": 16,
    }
    args = ["--preset", "paper-abd", "--model", "clipbench-micro-vit", "--pretrained", ""]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args


def test_reproduce_table1_on_shards_and_an_image_folder(cli_runner, fixtures, tmp_path):
    done = cli_runner(["reproduce", "abd-table1", *micro_paper_args(fixtures["shards"], fixtures["val"]),
                       "--cache-dir", tmp_path / "cache", "--results-dir", tmp_path / "r", "--out", tmp_path / "t"])
    assert done.exit_code == 0, done.output
    results = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("*.json")]
    assert len(results) == 12 and all(r["status"] == "ok" for r in results)
    sources = results[0]["data_sources"]
    assert sources["train_data"]["listed"] == 48 and sources["train_data"]["resolved"] == 48
    assert sources["eval_data"]["resolved"] == 18
    assert results[0]["evaluation"]["classnames"] == ["blue", "green", "red"]
    assert results[0]["evaluation"]["target_class"] == "red"
    assert (tmp_path / "t" / "table.csv").exists() and "(96.5)" in done.output  # BadNet victim, published


def test_run_on_a_csv_counts_the_unreadable_row(cli_runner, fixtures, tmp_path):
    args = micro_paper_args(fixtures["csv"], fixtures["val"]) + ["--set", "scenario.image_key=filepath",
                                                                  "--set", "scenario.caption_key=title",
                                                                  "--set", "scenario.max_skipped=1"]
    done = cli_runner(["run", "--attack", "badnet", "--defense", "none", *args, "--cache-dir", tmp_path / "cache",
                       "--results-dir", tmp_path / "r"])
    assert done.exit_code == 0, done.output
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("*.json")]
    report = result["data_sources"]["train_data"]
    assert (report["listed"], report["resolved"], report["skipped"]) == (41, 40, 1)
    assert "missing.png" in report["skipped_examples"][0]


@pytest.mark.parametrize("change, message", [
    ({"scenario.caption_key": "caption"}, "caption"),
    ({"scenario.max_skipped": "0"}, "unreadable"),
])
def test_bad_pairs_sources_are_one_line_and_write_nothing(cli_subprocess, fixtures, tmp_path, change, message):
    args = micro_paper_args(fixtures["csv"], fixtures["val"]) + ["--set", "scenario.image_key=filepath",
                                                                  "--set", "scenario.caption_key=title"]
    for key, value in change.items():
        args += ["--set", f"{key}={value}"]
    done = cli_subprocess(["run", "--attack", "badnet", "--defense", "none", *args, "--cache-dir", tmp_path / "cache",
                           "--results-dir", tmp_path / "r"])
    assert done.returncode == 2, done.stderr
    assert_one_error_line(done.stderr, message)
    assert not list((tmp_path / "r").glob("*.json")) and not list((tmp_path / "cache").glob("clean/*"))


def test_shards_without_images_are_refused(cli_subprocess, fixtures, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with tarfile.open(empty / "cc3m-train-0000.tar", "w") as tar:
        info = tarfile.TarInfo("000001.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"text"))
    done = cli_subprocess(["run", *micro_paper_args(empty, fixtures["val"]), "--cache-dir", tmp_path / "cache",
                           "--results-dir", tmp_path / "r"])
    assert done.returncode == 2, done.stderr
    assert_one_error_line(done.stderr, "no images")


def test_reproduce_roclip_on_the_paper_roclip_path_from_scratch(cli_runner, fixtures, tmp_path):
    sets = {
        "scenario.train_data": fixtures["shards"], "scenario.eval_data": fixtures["val"], "scenario.classnames": "source",
        "scenario.templates": "simple", "scenario.target": "red", "scenario.victim_size": 32,
        "scenario.defense_size": 8, "scenario.eval_size": 18, "poison.count": 4, "targeted.targets": 2,
        "pretrain.epochs": 1, "pretrain.batch_size": 8, "victim.epochs": 1, "victim.batch_size": 8,
        "roclip.epochs": 2, "roclip.batch_size": 8, "roclip.pool_size": 16,
        "safeclip.epochs": 3, "safeclip.batch_size": 8, "safeclip.unimodal_epochs": 1, "safeclip.clip_warmup_epochs": 1,
        "safeclip.bank_size": 8,
    }
    args = ["reproduce", "roclip", "--preset", "paper-roclip", "--model", "clipbench-micro-vit",
            "--cache-dir", tmp_path / "cache", "--results-dir", tmp_path / "r", "--out", tmp_path / "t"]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    done = cli_runner(args)
    assert done.exit_code == 0, done.output
    results = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("*.json")]
    assert len(results) == 6 and all(r["status"] == "ok" for r in results)
    assert {r["config"]["scenario"]["threat_model"] for r in results} == {"pretrain"}
    targeted = [r for r in results if r["cell"]["attack"] == "targeted"]
    assert all(r["metrics"]["asr"]["total"] == 2 and r["metrics"]["ca_top1"]["total"] == 16 for r in targeted)
    assert "(93.8)" in done.output and (tmp_path / "t" / "table.md").exists()
