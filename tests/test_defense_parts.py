"""Pieces of the defenses: EDA, the Gaussian mixture, ABD's patch, RoCLIP's and SafeCLIP's wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipbench.errors import ClipbenchError


@pytest.fixture(scope="module")
def eda_factory(tmp_path_factory):
    from clipbench.eda import Eda, EdaConfig

    cache = str(tmp_path_factory.mktemp("eda-cache"))
    return lambda seed=0, rate=0.1: Eda(EdaConfig(rate, rate, rate, rate), seed=seed, cache_dir=cache)


def test_eda_is_seeded_and_changes_captions(eda_factory):
    captions = ["a product shot of a handbag.", "a black and white photo of a sneaker.", "my new winter coat."] * 5
    first, second = eda_factory(seed=3).batch(captions), eda_factory(seed=3).batch(captions)
    assert first == second
    assert sum(a != b.rstrip(".") for a, b in zip(first, captions)) >= 5


def test_eda_synonyms_come_from_wordnet(eda_factory):
    synonyms = eda_factory().synonyms("handbag")
    assert "purse" in synonyms or "bag" in synonyms, synonyms


def test_gmm_recovers_two_modes():
    from clipbench.defenses.gmm import fit_gmm

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.1, 0.02, 900), rng.normal(0.6, 0.05, 100)])
    mixture = fit_gmm(values)
    assert mixture.means[0] == pytest.approx(0.1, abs=0.01) and mixture.means[1] == pytest.approx(0.6, abs=0.02)
    assert mixture.weights[1] == pytest.approx(0.1, abs=0.02)
    posterior = mixture.posterior_high(np.array([0.1, 0.6]))
    assert posterior[0] < 0.01 and posterior[1] > 0.99


def test_gmm_cannot_split_equal_values():
    from clipbench.defenses.gmm import fit_gmm

    with pytest.raises(ClipbenchError, match="all equal"):
        fit_gmm(np.full(50, 0.3))


def test_abd_paste_touches_only_one_square_per_image():
    from clipbench.defenses.abd import paste

    images = torch.zeros((6, 3, 16, 16))
    patch = torch.ones((3, 4, 4))
    out = paste(images, patch, torch.Generator().manual_seed(0))
    assert ((out == 1).sum(dim=(1, 2, 3)) == 3 * 16).all()
    corner = paste(images, patch, None, "lower_right")  # ABD's figure: the lower right corner
    assert (corner[:, :, 12:, 12:] == 1).all() and corner.sum() == 6 * 3 * 16


def test_abd_craft_patch_is_deterministic_and_ablations_reach_it():
    from clipbench.data.pairs import PairSet
    from clipbench.defenses.abd import AbdConfig, craft_patch
    from clipbench.defenses.base import DefenseContext
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import create_model

    clip = create_model("clipbench-micro-vit", seed=0)
    pairs = PairSet(np.zeros((32, 3, 16, 16), np.uint8), np.arange(32) % 10, ["a bag."] * 32, np.arange(32))
    images = torch.randint(0, 256, (32, 3, 16, 16), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    from clipbench.training import TrainingData

    origin = create_model("clipbench-micro-vit", seed=1)
    context = DefenseContext(clip, ImagePipeline.from_model(clip.model), TrainingData.clean(images, pairs), 0,
                             torch.device("cpu"), origin=origin)
    patches = []
    variants = ({}, {}, {"backdoor_loss": False}, {"negatives": "poisoned"})
    for changes in variants:
        config = AbdConfig(craft_steps=3, craft_batch_size=8, **changes)
        patches.append(craft_patch(config, context, torch.Generator().manual_seed(5)))
    assert patches[0].dtype == torch.uint8 and patches[0].shape == (3, 2, 2)
    assert torch.equal(patches[0], patches[1])
    assert not torch.equal(patches[0], patches[2]), "the plain UAP objective gives another patch"
    assert not torch.equal(patches[0], patches[3]), "the single-encoder variant gives another patch"
    assert all(p.requires_grad for p in clip.model.parameters())  # the victim trains next: crafting hands it back trainable
    context.origin = None
    with pytest.raises(ClipbenchError, match="origin"):
        craft_patch(AbdConfig(craft_steps=1, craft_batch_size=8), context, torch.Generator().manual_seed(5))


def test_abd_craft_losses_contrast_the_two_encoders_and_push_away_captions():
    import torch.nn.functional as F

    from clipbench.defenses.abd import AbdConfig, craft_loss

    torch.manual_seed(0)
    collapsed = F.normalize(torch.ones(4, 8) + 0.01 * torch.randn(4, 8), dim=-1)
    spread = F.normalize(torch.randn(4, 8), dim=-1)
    backdoor = AbdConfig()
    # patched images that collapse in the poisoned model, away from where the origin model puts them: low loss
    assert craft_loss(backdoor, collapsed, spread, origin_adv=-collapsed) < craft_loss(backdoor, collapsed, spread, origin_adv=collapsed)
    plain = AbdConfig(backdoor_loss=False, image_weight=0.0, caption_weight=5.0)
    near = craft_loss(plain, spread, collapsed, caption=spread)  # patched images still match their captions
    far = craft_loss(plain, spread, collapsed, caption=-spread)
    assert far < near  # the plain UAP maximises the image-caption InfoNCE loss


def test_training_time_subset_keeps_triggers_and_poisoned_captions():
    from clipbench.data.pairs import PairSet
    from clipbench.training import TrainingData

    pairs = PairSet(np.zeros((10, 3, 4, 4), np.uint8), np.zeros(10, np.int64), [f"c{i}" for i in range(10)], np.arange(10))
    captions = [f"c{i}" if i not in (2, 7) else "a photo of a bag." for i in range(10)]
    data = TrainingData(torch.arange(10).view(10, 1, 1, 1).expand(10, 3, 4, 4).to(torch.uint8), pairs, captions,
                        np.array([2, 7]), lambda x, ids: x)
    picked = data.subset(np.array([1, 2, 5, 7]))
    assert picked.trigger_rows.tolist() == [1, 3]
    assert picked.captions == ["c1", "a photo of a bag.", "c5", "a photo of a bag."]
    assert picked.pairs.ids.tolist() == [1, 2, 5, 7]
    assert picked.images[:, 0, 0, 0].tolist() == [1, 2, 5, 7]
    assert picked.trigger is data.trigger


def test_strong_view_is_seeded_keeps_uint8_and_scales_its_blur():
    from clipbench.augment import strong_view

    images = (torch.rand(6, 3, 32, 32) * 255).to(torch.uint8)
    first = strong_view(images, torch.Generator().manual_seed(4))
    again = strong_view(images, torch.Generator().manual_seed(4))
    other = strong_view(images, torch.Generator().manual_seed(5))
    assert first.dtype == torch.uint8 and first.shape == images.shape
    assert torch.equal(first, again) and not torch.equal(first, other) and not torch.equal(first, images)


def test_nearest_neighbour_bank_is_fifo_and_returns_bank_entries():
    from clipbench.defenses.nn_bank import NearestNeighbourBank, nn_info_nce

    bank = NearestNeighbourBank(size=4, dim=2)
    first = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    assert torch.equal(bank.nearest(first), first)  # empty: the rows themselves
    bank.push(first)
    query = torch.nn.functional.normalize(torch.tensor([[0.9, 0.1], [0.2, 0.8], [1.0, 0.05]]), dim=-1)
    assert torch.equal(bank.nearest(query), first[[0, 1, 0]])
    bank.push(query)  # 5 entries into 4 slots: the oldest is gone
    assert int(bank.filled) == 4 and torch.equal(bank.entries[0], query[2]) and torch.equal(bank.entries[1], first[1])
    restored = NearestNeighbourBank(size=4, dim=2)
    restored.load_state_dict(bank.state_dict())
    assert torch.equal(restored.entries, bank.entries) and int(restored.cursor) == int(bank.cursor)
    view, other = query.clone().requires_grad_(True), query.flip(0).clone().requires_grad_(True)
    loss = nn_info_nce(restored, view, other, torch.tensor(10.0))
    loss.backward()  # the positives are bank entries, detached: the gradient reaches both views through the other term
    assert torch.isfinite(loss) and view.grad is not None and other.grad is not None
    assert torch.equal(restored.entries[int(restored.cursor) - 1], query[-1])  # `view` entered the bank


def test_safeclip_split_counts_its_warmups_and_keeps_its_first_ratio():
    import numpy as np

    from clipbench.defenses.safeclip import SafeClip, SafeClipConfig, SplitState
    from clipbench.errors import ClipbenchError

    with pytest.raises(ClipbenchError, match="counts the warm-ups"):
        SafeClipConfig(epochs=6).validate()
    defense = SafeClip(SafeClipConfig(epochs=8, initial_ratio=0.15, ratio_step=0.1, max_ratio=0.85))

    class Context:  # the parts of a defense context the split reads
        class data:
            trigger_rows = np.array([0, 1])

    rng = np.random.default_rng(0)
    similarity = np.concatenate([rng.normal(0.2, 0.02, 80), rng.normal(0.8, 0.02, 20)])
    state = SplitState()
    safe = defense.split(Context, state, 0, similarity)
    assert state.ratio == pytest.approx(0.2) and safe.sum() == 20 and safe[80:].all()
    later = defense.split(Context, state, 2, np.roll(similarity, 3))  # the ratio grows from the first fit's
    assert later.sum() == 40 and [h["epoch"] for h in state.history] == [1, 3]
    resumed = SplitState()
    resumed.load_state_dict(state.state_dict())
    assert resumed.ratio == state.ratio and resumed.history == state.history
