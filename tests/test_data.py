"""IDX reading, split carving, and the Fashion-MNIST scenario (real data, micro sizes)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from clipbench.data import captions as caption_lib
from clipbench.data.fashion_mnist import CLASSNAMES, read_idx
from clipbench.data.scenario import ScenarioConfig, load_scenario, split_rows
from clipbench.errors import ClipbenchError
from clipbench.registry import PRESETS


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()


@pytest.fixture
def images() -> np.ndarray:
    # compressible content (like real images), so that a corrupted byte breaks the deflate stream
    return (np.arange(20 * 28 * 28) % 7).astype(np.uint8).reshape(20, 28, 28)


def test_read_idx_round_trips_gz_and_plain(tmp_path, images):
    gz = tmp_path / "images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes(images)))
    loaded = read_idx(gz)
    assert loaded.dtype == np.uint8 and loaded.shape == (20, 28, 28)
    np.testing.assert_array_equal(loaded, images)

    labels = np.arange(20, dtype=np.uint8) % 10
    plain = tmp_path / "labels-idx1-ubyte"
    plain.write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(read_idx(plain), labels)


def test_truncated_data_raises_naming_the_file(tmp_path, images):
    path = tmp_path / "short-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(images)[:-100]))
    with pytest.raises(ClipbenchError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "truncated" in str(info.value)


def test_truncated_gzip_stream_raises_naming_the_file(tmp_path, images):
    whole = gzip.compress(idx_bytes(images))
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ClipbenchError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_header_raises(tmp_path):
    path = tmp_path / "header-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 20))
    with pytest.raises(ClipbenchError, match="truncated"):
        read_idx(path)


def test_corrupt_gzip_raises_clipbench_error(tmp_path, images):
    data = bytearray(gzip.compress(idx_bytes(images)))
    failures = 0
    for position in range(10, len(data) - 8):  # every byte of the deflate stream, flipped
        corrupt = bytearray(data)
        corrupt[position] ^= 0xFF
        path = tmp_path / f"corrupt{position}-idx3-ubyte.gz"
        path.write_bytes(bytes(corrupt))
        with pytest.raises(ClipbenchError) as info:
            read_idx(path)
        assert str(path) in str(info.value)
        failures += 1
    assert failures > 0


@pytest.mark.parametrize("header", [bytes([1, 0, 0x08, 1]), bytes([0, 0, 0x0D, 1]), b"\x00\x00"])
def test_wrong_magic_raises(tmp_path, header):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(header + struct.pack(">I", 3) + b"\x01\x02\x03")
    with pytest.raises(ClipbenchError, match="not an unsigned-byte IDX file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_raises_naming_it(tmp_path):
    path = tmp_path / "absent-idx1-ubyte.gz"
    with pytest.raises(ClipbenchError, match="cannot read") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_split_rows_sizes_disjoint_and_seeded():
    parts = split_rows(100, [30, 20, 10], seed=3)
    assert [len(p) for p in parts] == [30, 20, 10]
    together = np.concatenate(parts)
    assert len(set(together.tolist())) == 60
    assert together.min() >= 0 and together.max() < 100
    for part in parts:
        assert np.all(np.diff(part) > 0), "rows are sorted and unique"
    again = split_rows(100, [30, 20, 10], seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = split_rows(100, [30, 20, 10], seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_split_rows_rejects_oversized_request():
    with pytest.raises(ClipbenchError, match="exceed the 10 rows"):
        split_rows(10, [6, 5], seed=0)


@pytest.fixture(scope="module")
def micro_config() -> ScenarioConfig:
    return PRESETS.get("micro").scenario


@pytest.fixture(scope="module")
def micro_scenario(micro_config, fashion_mnist_dir):
    return load_scenario(micro_config, fashion_mnist_dir.parent.parent)


def test_scenario_splits_have_configured_sizes(micro_scenario, micro_config):
    s = micro_scenario
    assert len(s.pretrain) == micro_config.pretrain_size
    assert len(s.victim) == micro_config.victim_size
    assert len(s.defense) == micro_config.defense_size
    assert len(s.evaluation) == micro_config.eval_size
    for pairs in (s.pretrain, s.victim, s.defense, s.evaluation):
        assert pairs.images.shape[1:] == (28, 28) and pairs.images.dtype == np.uint8
        assert len(pairs.captions) == len(pairs.labels) == len(pairs.ids) == len(pairs.images)


def test_scenario_training_splits_are_pairwise_disjoint(micro_scenario):
    s = micro_scenario
    ids = [set(s.pretrain.ids.tolist()), set(s.victim.ids.tolist()), set(s.defense.ids.tolist())]
    assert not ids[0] & ids[1]
    assert not ids[0] & ids[2]
    assert not ids[1] & ids[2]
    assert all(max(i) < 60000 for i in ids)


def test_scenario_evaluation_comes_from_the_test_split(micro_scenario):
    ids = micro_scenario.evaluation.ids
    assert ids.min() >= 60000 and ids.max() < 70000
    assert len(set(ids.tolist())) == len(ids)


def test_scenario_images_match_their_labels_in_the_dataset(micro_scenario, fashion_mnist_dir):
    import datasets

    raw = datasets.load_from_disk(str(fashion_mnist_dir))
    train, test = raw["train"].with_format("numpy"), raw["test"].with_format("numpy")
    row = int(micro_scenario.victim.ids[5])
    np.testing.assert_array_equal(train[row]["image"], micro_scenario.victim.images[5])
    assert int(train[row]["label"]) == int(micro_scenario.victim.labels[5])
    eval_row = int(micro_scenario.evaluation.ids[3]) - 60000
    np.testing.assert_array_equal(test[eval_row]["image"], micro_scenario.evaluation.images[3])


def test_captions_mention_a_synonym_of_the_label(micro_scenario):
    for pairs in (micro_scenario.pretrain, micro_scenario.victim, micro_scenario.defense):
        for label, caption in zip(pairs.labels, pairs.captions):
            words = caption_lib.SYNONYMS[CLASSNAMES[int(label)]]
            assert any(word in caption for word in words), (label, caption)


def test_zero_shot_task(micro_scenario):
    assert micro_scenario.classnames == caption_lib.ZERO_SHOT_CLASSNAMES
    assert micro_scenario.target_name == "bag"
    assert micro_scenario.target_index == CLASSNAMES.index("Bag")
    assert not set(micro_scenario.templates) & set(caption_lib.CAPTION_TEMPLATES)


def test_same_config_gives_identical_scenario(micro_scenario, micro_config, fashion_mnist_dir):
    again = load_scenario(micro_config, fashion_mnist_dir.parent.parent)
    for name in ("pretrain", "victim", "defense", "evaluation"):
        a, b = getattr(micro_scenario, name), getattr(again, name)
        assert a.captions == b.captions
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_split_seed_changes_the_scenario(micro_scenario, micro_config, fashion_mnist_dir):
    import dataclasses

    other = load_scenario(dataclasses.replace(micro_config, split_seed=1), fashion_mnist_dir.parent.parent)
    assert not np.array_equal(other.victim.ids, micro_scenario.victim.ids)


def test_unknown_target_class_raises(micro_config, tmp_path):
    import dataclasses

    with pytest.raises(ClipbenchError, match="scenario.target 'handbag' is not a class of the scenario; valid: t-shirt"):
        load_scenario(dataclasses.replace(micro_config, target="handbag"), tmp_path)


def test_invalid_sizes_raise(micro_config, tmp_path):
    import dataclasses

    with pytest.raises(ClipbenchError, match="exceed the 60000 training images"):
        load_scenario(dataclasses.replace(micro_config, pretrain_size=59900), tmp_path)
    with pytest.raises(ClipbenchError, match="eval_size"):
        load_scenario(dataclasses.replace(micro_config, eval_size=10001), tmp_path)


def test_attribute_captions_read_tone_size_and_texture_off_the_pixels():
    from clipbench.data.attribute_captions import AttributeBins, attribute_captions, measurements

    rng = np.random.default_rng(0)
    images = np.zeros((300, 28, 28), dtype=np.uint8)
    for i in range(300):  # items of three sizes, three grey levels, flat or striped
        half = (4, 8, 12)[i % 3]
        level = (60, 140, 230)[(i // 3) % 3]
        block = np.full((2 * half, 2 * half), level, dtype=np.uint8)
        if (i // 9) % 2:
            block[::2] = level // 2 + 11
        images[i, 14 - half:14 + half, 14 - half:14 + half] = block
    values = measurements(images[:2])
    assert values[0, 1] == pytest.approx(64 / 784) and values[0, 0] == pytest.approx(60)
    bins = AttributeBins.fit(images)
    words = bins.words(images)
    assert words[0][:2] == ("dark", "small") and words[8][:2] == ("light", "large")
    assert words[0][2] != words[9][2], "a striped item reads as more textured than a flat one"
    labels = rng.integers(0, 10, size=300)
    classnames = tuple(["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"])
    first = attribute_captions(images, labels, classnames, bins, np.random.default_rng(1))
    assert first == attribute_captions(images, labels, classnames, bins, np.random.default_rng(1))
    assert any(w in first[0] for w in words[0]), first[0]


def test_an_unknown_caption_style_is_one_clear_error():
    from clipbench.data.scenario import ScenarioConfig
    from clipbench.errors import ClipbenchError

    with pytest.raises(ClipbenchError, match="scenario.captions"):
        ScenarioConfig(captions="poems").validate()
