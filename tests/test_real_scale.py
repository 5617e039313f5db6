"""The real-scale path on synthetic paper-shaped data: poisoned captions in the scenario's words,
source indexes reused across processes, decode workers, and the synthetic-data command."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from clipbench.data.captions import CAPTION_TEMPLATES, fashion_mnist_language
from clipbench.data.synthetic import SyntheticSpec, write_synthetic
from clipbench.errors import ClipbenchError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(out, SyntheticSpec(pairs=240, val_images=40, classes=10, target_share=0.1, shard_size=100, seed=3))
    return out


def pairs_config(synthetic: Path, **changes):
    from clipbench.data.scenario import ScenarioConfig

    values = dict(dataset="pairs", train_data=str(synthetic / "cc3m"), eval_data=str(synthetic / "imagenet-val"),
                  pretrain_size=0, victim_size=160, defense_size=60, eval_size=40, target="banana")
    return ScenarioConfig(**{**values, **changes})


def openai_target_captions() -> set[str]:
    from clipbench.data.real import zero_shot_templates

    return {template.format("banana") for template in zero_shot_templates("openai")}


def test_synthetic_data_has_the_cc3m_and_imagenet_layouts(synthetic):
    shards = sorted((synthetic / "cc3m").glob("*.tar"))
    assert [s.name for s in shards] == ["cc3m-train-0000.tar", "cc3m-train-0001.tar", "cc3m-train-0002.tar"]
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
    assert names[:3] == ["000000000.jpg", "000000000.txt", "000000000.json"]
    folders = sorted(p.name for p in (synthetic / "imagenet-val").iterdir())
    assert len(folders) == 10 and folders[0] == "n01440764"
    assert len(list((synthetic / "imagenet-val").rglob("*.JPEG"))) == 40


def test_synthetic_data_is_the_same_whichever_number_of_processes_writes_it(tmp_path):
    spec = SyntheticSpec(pairs=150, val_images=150, classes=10, target_share=0.1, shard_size=60, seed=3)  # 3 shards, 3 chunks
    write_synthetic(tmp_path / "one", spec, workers=1)
    write_synthetic(tmp_path / "two", spec, workers=2)
    for name in ("cc3m", "imagenet-val"):
        ours = sorted(p.relative_to(tmp_path / "one" / name) for p in (tmp_path / "one" / name).rglob("*") if p.is_file())
        theirs = sorted(p.relative_to(tmp_path / "two" / name) for p in (tmp_path / "two" / name).rglob("*") if p.is_file())
        assert ours == theirs and ours
        assert all((tmp_path / "one" / name / p).read_bytes() == (tmp_path / "two" / name / p).read_bytes() for p in ours)


def test_synthetic_data_refuses_an_existing_folder_and_a_request_larger_than_the_disk(synthetic, tmp_path, monkeypatch):
    with pytest.raises(ClipbenchError, match="already exists"):
        write_synthetic(synthetic, SyntheticSpec(pairs=10, val_images=0))
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 10_000))
    with pytest.raises(ClipbenchError, match="GiB free"):
        write_synthetic(tmp_path / "big", SyntheticSpec(pairs=1000, val_images=0))
    assert not (tmp_path / "big" / "cc3m").exists()


def test_pairs_scenario_poisons_with_openai_templates_and_natural_captions(synthetic, tmp_path):
    from clipbench.attacks.badclip import BadClip, BadClipConfig
    from clipbench.attacks.badnet import BadNet, BadNetConfig
    from clipbench.data.scenario import load_scenario

    scenario = load_scenario(pairs_config(synthetic), tmp_path)
    language = scenario.language
    manifest = BadNet(BadNetConfig(), 0, 32).poison(scenario.victim, 20, scenario.target_index, language, np.random.default_rng(0))
    assert set(manifest.captions) <= openai_target_captions()
    assert not any(caption.startswith(("an item of clothing", "a grayscale")) for caption in manifest.captions)
    natural = BadClip(BadClipConfig(), 0, 32).poison(scenario.victim, 20, scenario.target_index, language, np.random.default_rng(0))
    victim_banana = {c for c in scenario.victim.captions if "banana" in c}
    assert victim_banana and set(natural.captions) <= victim_banana


def test_natural_captions_need_captions_naming_the_target(synthetic, tmp_path):
    from clipbench.data.scenario import load_scenario

    scenario = load_scenario(pairs_config(synthetic, target="zebra"), tmp_path)  # never captioned by this data
    scenario.language.named(None, 3, np.random.default_rng(0))
    with pytest.raises(ClipbenchError, match="no caption of the victim split .* names the target"):
        scenario.language.natural(3, np.random.default_rng(0))


def test_tiny_poisoned_captions_are_fashion_mnist_templates_with_the_target():
    language = fashion_mnist_language("bag")
    named = language.named(None, 50, np.random.default_rng(1))
    assert set(named) <= {t.format("bag") for t in CAPTION_TEMPLATES}
    natural = language.natural(50, np.random.default_rng(1))
    assert set(natural) <= {t.format(w) for t in CAPTION_TEMPLATES for w in ("bag", "handbag", "purse", "tote bag")}
    assert any(word in caption for caption in natural for word in ("handbag", "purse", "tote bag"))


def test_tiny_scenario_manifests_carry_target_captions(fashion_mnist_dir):
    from clipbench.data.scenario import ScenarioConfig, load_scenario

    scenario = load_scenario(ScenarioConfig(pretrain_size=100, victim_size=200, defense_size=50, eval_size=50), fashion_mnist_dir.parent.parent)
    from clipbench.attacks.badnet import BadNet, BadNetConfig

    manifest = BadNet(BadNetConfig(), 0, 28).poison(scenario.victim, 10, scenario.target_index, scenario.language,
                                                    np.random.default_rng(0))
    assert set(manifest.captions) <= {t.format("bag") for t in CAPTION_TEMPLATES}


def test_source_indexes_are_reused_and_rebuilt_when_a_file_changes(synthetic, tmp_path, monkeypatch):
    import shutil

    from clipbench.data.sources import base, open_classes, open_pairs

    folder = tmp_path / "val"
    shutil.copytree(synthetic / "imagenet-val", folder)
    first = open_classes(folder, cache_dir=tmp_path / "cache", max_skipped=5)
    shards = open_pairs(synthetic / "cc3m", cache_dir=tmp_path / "cache")

    def no_verification(*args, **kwargs):
        raise AssertionError("the stored index should have been used")

    monkeypatch.setattr(base, "verify_images", no_verification)
    monkeypatch.setattr("clipbench.data.sources.files.verify_images", no_verification)
    monkeypatch.setattr("clipbench.data.sources.shards.index_shard", no_verification)
    again = open_classes(folder, cache_dir=tmp_path / "cache", max_skipped=5)
    assert again.report.resolved == first.report.resolved == 40 and again.paths == first.paths
    assert open_pairs(synthetic / "cc3m", cache_dir=tmp_path / "cache").captions == shards.captions
    victim = next(folder.rglob("*.JPEG"))
    victim.write_bytes(b"not an image")
    monkeypatch.undo()
    changed = open_classes(folder, cache_dir=tmp_path / "cache", max_skipped=5)
    assert changed.report.resolved == 39 and changed.report.skipped == 1


def test_decode_workers_feed_the_same_batches_as_the_main_process(synthetic):
    from clipbench.data.feed import FeedClock, feed
    from clipbench.data.images import LazyImages
    from clipbench.data.sources import open_pairs

    images = LazyImages(open_pairs(synthetic / "cc3m"), 32, workers=1)
    batches = [np.array([5, 1, 200]), np.array([7, 8]), np.array([0])]
    flip = lambda batch, rows: batch.flip(-1)  # noqa: E731  (a transform runs where the batch is decoded)
    clock = FeedClock()
    fed = list(feed(images, batches, flip, workers=2, clock=clock))
    inline = list(feed(images, batches, flip, workers=0))
    assert [r.tolist() for r, _ in fed] == [b.tolist() for b in batches]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(fed, inline))
    assert clock.batches == 3 and clock.images == 6 and 0 <= clock.summary()["data_wait_fraction"] <= 1


def test_paper_abd_runs_on_synthetic_data_with_openai_template_captions(cli_runner, synthetic, tmp_path):
    import json

    sets = {"scenario.train_data": synthetic / "cc3m", "scenario.eval_data": synthetic / "imagenet-val",
            "scenario.victim_size": 160, "scenario.defense_size": 60, "scenario.eval_size": 40, "poison.count": 12,
            "victim.epochs": 1, "victim.batch_size": 16, "victim.warmup_steps": 1, "badclip.epochs": 1, "badclip.batch_size": 16}
    args = ["run", "--preset", "paper-abd", "--model", "clipbench-micro-vit", "--pretrained", "", "--attack", "badnet,badclip",
            "--defense", "none", "--cache-dir", tmp_path / "cache", "--results-dir", tmp_path / "r"]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    done = cli_runner(args)
    assert done.exit_code == 0, done.output
    results = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("*.json")]
    assert len(results) == 2 and all(r["status"] == "ok" for r in results)
    manifests = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "cache" / "poison").glob("*/manifest.json")}
    assert len(manifests) == 2
    captions = [set(m["captions"]) for m in manifests.values()]
    templated = [c for c in captions if c <= openai_target_captions()]
    natural = [c for c in captions if all("banana" in x and x not in openai_target_captions() for x in c)]
    assert len(templated) == 1 and len(natural) == 1
    assert results[0]["data_sources"]["train_data"]["resolved"] == 240


def test_training_on_lazy_images_gives_the_same_weights_for_any_worker_count(synthetic, monkeypatch):
    import copy

    from clipbench.data.images import LazyImages, RowView
    from clipbench.data.pairs import PairSet
    from clipbench.data.sources import open_pairs
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import create_model
    from clipbench.train_config import TrainConfig
    from clipbench.training import TrainingData, train_contrastive

    source = open_pairs(synthetic / "cc3m")
    rows = np.arange(48)
    pairs = PairSet(RowView(source, rows), np.full(48, -1), [source.captions[i] for i in rows], source.ids[rows])
    torch.manual_seed(0)
    start = create_model("clipbench-micro-vit")
    trigger = lambda images, ids: images.flip(-1)  # noqa: E731
    weights = []
    for workers in ("0", "2"):
        monkeypatch.setenv("CLIPBENCH_WORKERS", workers)
        clip = copy.deepcopy(start)
        data = TrainingData(LazyImages(pairs.images, 16), pairs, list(pairs.captions), np.array([1, 5, 30]), trigger)
        stats = train_contrastive(clip, ImagePipeline.from_model(clip.model), data, TrainConfig(epochs=2, batch_size=16, seed=0))
        assert stats["steps"] == 6 and 0 <= stats["feed"]["data_wait_fraction"] <= 1
        weights.append(clip.model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_badclip_on_data_that_never_names_the_target_is_one_line(cli_subprocess, synthetic, tmp_path):
    done = cli_subprocess(["run", "--preset", "paper-abd", "--model", "clipbench-micro-vit", "--pretrained", "", "--attack", "badclip",
                           "--set", f"scenario.train_data={synthetic / 'cc3m'}", "--set", f"scenario.eval_data={synthetic / 'imagenet-val'}",
                           "--set", "scenario.victim_size=160", "--set", "scenario.defense_size=60", "--set", "scenario.eval_size=40",
                           "--set", "scenario.target=zebra", "--set", "poison.count=12",
                           "--cache-dir", tmp_path / "cache", "--results-dir", tmp_path / "r"])
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    result = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert result["status"] == "failed" and "shows the target 'zebra'" in result["error"], result["error"]
    assert "shows the target 'zebra'" in done.stdout
