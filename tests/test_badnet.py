"""BadNet: a deterministic, seeded patch; seeded poisoning; one trigger function for training and evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipbench.attacks.badnet import BadNet, BadNetConfig
from clipbench.cells import CellRequest, resolve_cell
from clipbench.data.captions import fashion_mnist_language
from clipbench.data.pairs import PairSet
from clipbench.errors import ClipbenchError

BAG = fashion_mnist_language("bag")


def make_attack(seed: int = 7, size: int = 32, **config) -> BadNet:
    attack = BadNet(BadNetConfig(**config), seed, size)
    attack.prepare()
    return attack


def images(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.int64).to(torch.uint8)


IDS = torch.tensor([3, 10, 42, 60001])


def test_apply_is_deterministic_for_same_seed_and_ids():
    batch = images()
    first = make_attack(seed=7).apply(batch, IDS)
    second = make_attack(seed=7).apply(batch.clone(), IDS.clone())
    assert torch.equal(first, second)
    assert not torch.equal(first, batch), "the trigger changes the images"


def test_apply_does_not_modify_its_input():
    batch = images()
    before = batch.clone()
    make_attack().apply(batch, IDS)
    assert torch.equal(batch, before)


def test_fixed_noise_pattern_depends_on_trigger_seed():
    batch = images()
    a, b = make_attack(seed=7), make_attack(seed=8)
    assert not torch.equal(a.state["pattern"], b.state["pattern"])
    assert not torch.equal(a.apply(batch, IDS), b.apply(batch, IDS))


def test_fixed_noise_is_the_same_patch_on_every_image():
    attack = make_attack()
    out = attack.apply(images(), IDS)
    p = attack.patch
    for i in range(len(out)):
        assert torch.equal(out[i, :, -p:, -p:], attack.state["pattern"])


@pytest.mark.parametrize("pattern", ["fixed_noise", "checkerboard", "cleanclip_noise"])
@pytest.mark.parametrize("location", ["bottom_right", "center", "random"])
def test_dtype_and_shape_preserved(pattern, location):
    batch = images()
    out = make_attack(pattern=pattern, location=location).apply(batch, IDS)
    assert out.dtype == torch.uint8
    assert out.shape == batch.shape


@pytest.mark.parametrize("size", [32, 224])
def test_bottom_right_changes_only_the_patch_region(size):
    attack = make_attack(size=size, pattern="checkerboard")
    batch = images(n=3, size=size)
    out = attack.apply(batch, IDS[:3])
    p = attack.patch
    outside = torch.ones(size, size, dtype=torch.bool)
    outside[size - p :, size - p :] = False
    assert torch.equal(out[:, :, outside], batch[:, :, outside])
    assert torch.equal(out[:, :, size - p :, size - p :], attack.state["pattern"].expand(3, 3, p, p))


def test_center_location_places_patch_in_the_middle():
    attack = make_attack(size=224, location="center")
    batch = torch.zeros(1, 3, 224, 224, dtype=torch.uint8)
    out = attack.apply(batch, IDS[:1])
    start = (224 - 16) // 2
    assert torch.equal(out[0, :, start : start + 16, start : start + 16], attack.state["pattern"])
    out[0, :, start : start + 16, start : start + 16] = 0
    assert not out.any()


def test_random_location_is_per_image_and_reproducible():
    attack = make_attack(size=224, location="random", pattern="checkerboard")
    batch = torch.full((4, 3, 224, 224), 128, dtype=torch.uint8)
    out = attack.apply(batch, IDS)
    corners = []
    for i in range(4):
        changed = (out[i] != batch[i]).any(dim=0).nonzero()
        corners.append(tuple(changed.min(dim=0).values.tolist()))
    assert len(set(corners)) > 1
    assert torch.equal(out, make_attack(size=224, location="random", pattern="checkerboard").apply(batch, IDS))


def test_cleanclip_noise_differs_per_image_id_but_is_reproducible():
    attack = make_attack(size=224, pattern="cleanclip_noise")
    same = images(n=1, size=224).expand(2, -1, -1, -1).contiguous()
    out = attack.apply(same, torch.tensor([5, 6]))
    p = attack.patch
    assert not torch.equal(out[0, :, -p:, -p:], out[1, :, -p:, -p:])
    again = make_attack(size=224, pattern="cleanclip_noise").apply(same, torch.tensor([5, 6]))
    assert torch.equal(out, again)
    # the same id gives the same patch wherever it is in the batch
    swapped = attack.apply(same, torch.tensor([6, 5]))
    assert torch.equal(swapped[0], out[1]) and torch.equal(swapped[1], out[0])
    # a different trigger seed draws different noise
    other = make_attack(seed=8, size=224, pattern="cleanclip_noise").apply(same, torch.tensor([5, 6]))
    assert not torch.equal(other, out)


def test_patch_size_scales_with_resolution():
    assert make_attack(size=224).patch == 16
    assert make_attack(size=32).patch == round(16 * 32 / 224) == 2
    assert make_attack(size=16).patch == 1
    assert make_attack(size=224, patch_size=28).patch == 28
    assert make_attack(size=32, patch_size=28).patch == 4
    assert make_attack(size=32).state["pattern"].shape == (3, 2, 2)


def test_trigger_state_round_trips_through_load_state():
    attack = make_attack()
    restored = BadNet(attack.config, attack.seed, attack.image_size)
    restored.load_state({k: v.clone() for k, v in attack.state.items()})
    batch = images()
    assert torch.equal(restored.apply(batch, IDS), attack.apply(batch, IDS))


def test_invalid_config_rejected():
    with pytest.raises(ClipbenchError, match="patch_size must be positive"):
        make_attack(patch_size=0)
    with pytest.raises(ClipbenchError, match="larger than the image"):
        make_attack(patch_size=300)


def pairs(n: int = 50) -> PairSet:
    labels = np.arange(n) % 10
    return PairSet(np.zeros((n, 28, 28), np.uint8), labels, [f"caption {i}" for i in range(n)], np.arange(n) + 1000)


def test_poison_picks_distinct_rows_reproducibly_with_target_captions():
    attack = make_attack()
    manifest = attack.poison(pairs(), 12, 8, BAG, np.random.default_rng(5))
    assert len(manifest.rows) == 12 == len(set(manifest.rows.tolist()))
    assert manifest.rows.min() >= 0 and manifest.rows.max() < 50
    assert len(manifest.captions) == 12
    assert all("bag" in caption for caption in manifest.captions)
    again = attack.poison(pairs(), 12, 8, BAG, np.random.default_rng(5))
    assert np.array_equal(again.rows, manifest.rows) and again.captions == manifest.captions
    other = attack.poison(pairs(), 12, 8, BAG, np.random.default_rng(6))
    assert not np.array_equal(other.rows, manifest.rows)


def test_poison_manifest_json_round_trip():
    from clipbench.attacks.base import PoisonManifest

    manifest = make_attack().poison(pairs(), 5, 8, BAG, np.random.default_rng(0))
    restored = PoisonManifest.from_json(manifest.to_json())
    assert np.array_equal(restored.rows, manifest.rows) and restored.captions == manifest.captions


def test_poison_all_rows_and_too_many_rows():
    attack = make_attack()
    assert len(attack.poison(pairs(10), 10, 8, BAG, np.random.default_rng(0)).rows) == 10
    with pytest.raises(ClipbenchError, match=r"poison.count \(11\) is larger than the victim split \(10 pairs\)"):
        attack.poison(pairs(10), 11, 8, BAG, np.random.default_rng(0))


def test_poisoning_and_evaluation_call_the_same_trigger(monkeypatch, fresh_cache_dir, tmp_path):
    """The victim's training and the evaluation both go through ``BadNet.apply``."""
    import clipbench.cell_runner as cell_runner
    from clipbench.matrix import RunnerSettings

    phase = {"name": "other"}
    calls: list[tuple[str, list[int]]] = []
    original_apply = BadNet.apply

    def recording_apply(self, images, ids):
        calls.append((phase["name"], [int(i) for i in ids]))
        return original_apply(self, images, ids)

    def in_phase(name, function):
        def wrapper(*args, **kwargs):
            previous, phase["name"] = phase["name"], name
            try:
                return function(*args, **kwargs)
            finally:
                phase["name"] = previous

        return wrapper

    monkeypatch.setattr(BadNet, "apply", recording_apply)
    monkeypatch.setattr(cell_runner, "victim", in_phase("victim", cell_runner.victim))
    monkeypatch.setattr(cell_runner, "evaluate", in_phase("evaluation", cell_runner.evaluate))

    runner = RunnerSettings(str(fresh_cache_dir), str(tmp_path / "results"), "cpu", False).cell_runner()
    cell = resolve_cell(CellRequest(preset="micro", attack="badnet", defense="none"))
    result = runner.run_cell(cell)
    assert result["status"] == "ok", result.get("error")
    assert result["stages"]["victim"]["cached"] is False

    scenario = runner.ws.scenario(cell)
    victim_calls = [ids for name, ids in calls if name == "victim"]
    eval_calls = [ids for name, ids in calls if name == "evaluation"]
    assert victim_calls, "the victim's training did not call BadNet.apply"
    assert eval_calls, "the evaluation did not call BadNet.apply"

    # training triggers exactly the poisoned rows (by their image ids), evaluation every test image
    import json

    manifest = json.loads((runner.ws.store.path("poison", result["artifacts"]["poison"]) / "manifest.json").read_text())
    poisoned_ids = set(scenario.victim.ids[manifest["rows"]].tolist())
    seen_in_training = {i for ids in victim_calls for i in ids}
    assert seen_in_training <= poisoned_ids
    assert len(seen_in_training) > len(poisoned_ids) // 2
    seen_in_eval = {i for ids in eval_calls for i in ids}
    assert seen_in_eval == set(scenario.evaluation.ids.tolist())
