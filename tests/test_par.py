"""PAR (arXiv 2412.00727): the thresholded repulsion term, the config's checks, the official code's
image view, the frozen victim, and a micro cell end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipbench.errors import ClipbenchError


def unit(angles) -> torch.Tensor:
    """Rows (cos a, sin a): unit vectors in the plane."""
    angles = torch.as_tensor(angles, dtype=torch.float64)
    return torch.stack([angles.cos(), angles.sin()], dim=1)


# Two pairs in the plane; the frozen embeddings are the current ones turned by an angle, so the
# squared distance of every row is 2 - 2 cos(angle): 2.0 at 90 degrees (below tau = 2.15),
# 4.0 at 180 degrees (above it).
IMAGES, TEXTS = unit([0.0, math.pi / 2]), unit([0.3, math.pi / 2 + 0.3])
SCALE = torch.tensor(10.0, dtype=torch.float64)


def turned(features: torch.Tensor, angle: float) -> torch.Tensor:
    cos, sin = math.cos(angle), math.sin(angle)
    return features @ torch.tensor([[cos, sin], [-sin, cos]], dtype=torch.float64)


def test_repulsion_is_the_batch_mean_squared_distance_up_to_tau_then_zero():
    from clipbench.defenses.par import repulsion

    assert repulsion(IMAGES, turned(IMAGES, math.pi / 2), 2.15).item() == pytest.approx(2.0)
    assert repulsion(IMAGES, turned(IMAGES, math.pi / 3), 2.15).item() == pytest.approx(1.0)
    assert repulsion(IMAGES, turned(IMAGES, math.pi), 2.15).item() == 0.0  # distance 4 > tau
    assert repulsion(IMAGES, turned(IMAGES, math.pi / 2), 2.0).item() == pytest.approx(2.0)  # at tau: kept (code: > tau)
    # per batch, not per sample: rows at 0 and 4 average to 2, below tau, so both rows count
    mixed = torch.stack([IMAGES[0], -IMAGES[1]])
    assert repulsion(IMAGES, mixed, 2.15).item() == pytest.approx(2.0)


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_par_loss_is_clip_loss_minus_weighted_distance_below_tau_and_clip_loss_above(weight):
    from clipbench.defenses.par import par_loss
    from clipbench.training import clip_loss

    clip = clip_loss(IMAGES, TEXTS, SCALE).item()
    below = par_loss(IMAGES, TEXTS, turned(IMAGES, math.pi / 2), turned(TEXTS, math.pi / 3), SCALE, weight, 2.15)
    assert below.item() == pytest.approx(clip - weight * (2.0 + 1.0))
    one_off = par_loss(IMAGES, TEXTS, turned(IMAGES, math.pi), turned(TEXTS, math.pi / 3), SCALE, weight, 2.15)
    assert one_off.item() == pytest.approx(clip - weight * 1.0)  # image term off, text term on
    above = par_loss(IMAGES, TEXTS, turned(IMAGES, math.pi), turned(TEXTS, math.pi), SCALE, weight, 2.15)
    assert above.item() == pytest.approx(clip)


def test_repulsion_past_tau_carries_no_gradient_and_below_tau_pushes_away():
    from clipbench.defenses.par import par_loss
    from clipbench.training import clip_loss

    def grad(frozen_angle: float, loss_fn) -> torch.Tensor:
        images = IMAGES.clone().requires_grad_(True)
        loss_fn(images, turned(IMAGES, frozen_angle)).backward()
        return images.grad

    plain = grad(0.0, lambda images, frozen: clip_loss(images, TEXTS, SCALE))
    far = grad(math.pi, lambda images, frozen: par_loss(images, TEXTS, frozen, TEXTS, SCALE, 0.5, 2.15))
    assert torch.allclose(far, plain)
    near = grad(math.pi / 2, lambda images, frozen: par_loss(images, TEXTS, frozen, TEXTS, SCALE, 0.5, 2.15))
    frozen = turned(IMAGES, math.pi / 2)
    # d/dx of -0.5 * mean ||x - x0||^2 is -(x - x0) / n per row: away from the frozen embedding
    assert torch.allclose(near - plain, -(IMAGES - frozen) / len(IMAGES))


@pytest.mark.parametrize("key,value,fragment", [
    ("tau", 0.0, "defense.tau must be > 0, got 0.0"),
    ("tau", -1.0, "defense.tau must be > 0, got -1.0"),
    ("repulsion_weight", -0.5, "defense.repulsion_weight must be >= 0, got -0.5"),
])
def test_config_rejects_bad_tau_and_weight(key, value, fragment):
    from clipbench.defenses.par import Par, ParConfig

    with pytest.raises(ClipbenchError, match=fragment):
        Par(ParConfig(**{key: value}))


def test_config_defaults_are_the_official_codes():
    from clipbench.defenses.par import ParConfig

    config = ParConfig()
    config.validate()
    assert (config.repulsion_weight, config.tau, config.lr, config.epochs) == (0.5, 2.15, 3e-6, 2)
    assert (config.beta1, config.beta2, config.eps, config.weight_decay, config.grad_clip) == (0.9, 0.98, 1e-8, 1e-4, 0.0)
    assert config.augmentation == "noise_erasing"


def test_noise_erasing_view_is_seeded_and_erases_with_the_mean_colour():
    from clipbench.augment import noise_erasing_view

    mean = (0.48145466, 0.4578275, 0.40821073)
    images = torch.zeros((64, 3, 32, 32), dtype=torch.uint8)
    first = noise_erasing_view(images, torch.Generator().manual_seed(0), mean)
    again = noise_erasing_view(images, torch.Generator().manual_seed(0), mean)
    assert first.dtype == torch.uint8 and first.shape == images.shape and torch.equal(first, again)
    # noise only brightens (the code's clip(N(0, 0.2^2), 0, 1)); about half the images get it
    noised = (first > 0).flatten(1).float().mean(dim=1) > 0.4
    assert 16 <= int(noised.sum()) <= 48
    fill = torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8)
    erased = (first == fill[:, None, None]).all(dim=1).flatten(1).sum(dim=1)  # pixels of the mean colour
    # a square of 0.5-1% of 1,024 pixels (2-3 px a side) on about half the images
    assert 16 <= int((erased >= 4).sum()) <= 48 and int(erased.max()) <= 9


def test_objective_repels_from_a_frozen_copy_of_the_victim():
    from clipbench.data.pairs import PairSet
    from clipbench.defenses.base import DefenseContext
    from clipbench.defenses.par import Par, ParConfig
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import create_model
    from clipbench.training import Batch, TrainingData, clip_loss

    n, cpu = 16, torch.device("cpu")
    pairs = PairSet(np.zeros((n, 3, 16, 16), np.uint8), np.arange(n) % 10, [f"a photo of item {i}." for i in range(n)], np.arange(n))
    images = torch.randint(0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    data = TrainingData.clean(images, pairs)

    def setup():
        clip = create_model("clipbench-micro-vit", seed=0)
        context = DefenseContext(clip, ImagePipeline.from_model(clip.model), data, 0, cpu)
        batch = Batch(clip, context.pipeline, images[:8], pairs.captions[:8], np.arange(8), torch.arange(8), 0, cpu)
        return clip, context, batch

    clip, context, trained = setup()
    _, victim_context, victim = setup()
    defense = Par(ParConfig(epochs=2, batch_size=8, lr=1e-2, warmup_steps=0, augmentation="none", tau=4.0))
    objective = defense.objective(context)
    with torch.no_grad():  # at the start the model is its frozen copy: distance 0, the loss is CLIP's
        start = clip_loss(victim.encode_images(), victim.encode_texts(), victim.logit_scale)
        assert objective(trained).item() == pytest.approx(start.item(), abs=1e-6)
    assert defense.fit(context, objective)["steps"] == 4
    with torch.no_grad():  # after training, the objective still measures the distance to the victim's embeddings
        now_images, now_texts = trained.encode_images(), trained.encode_texts()
        distances = [(now - then).pow(2).sum(dim=1).mean().item()
                     for now, then in ((now_images, victim.encode_images()), (now_texts, victim.encode_texts()))]
        expected = clip_loss(now_images, now_texts, trained.logit_scale).item() - 0.5 * sum(distances)
        assert objective(trained).item() == pytest.approx(expected, abs=1e-5)
    assert sum(distances) > 0.01, distances


def test_par_runs_a_micro_cell(cache_dir, tmp_path):
    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.matrix import RunnerSettings

    runner = RunnerSettings(str(cache_dir), str(tmp_path), "cpu", False).cell_runner()
    cell = resolve_cell(CellRequest(preset="micro", attack="badnet", defense="par"))
    assert cell.defense_config.lr == 1e-3 and cell.defense_config.tau == 2.15  # micro's schedule, PAR's own knobs
    result = runner.run_cell(cell)
    assert result["status"] == "ok", result.get("error")
    for metric in ("ca_top1", "asr"):
        record = result["metrics"][metric]
        assert record["total"] > 0 and 0.0 <= record["value"] <= 1.0, metric
    assert result["config"]["defense"]["stage"] == "post_training"
    assert "victim" in result["artifacts"] and "defense" in result["artifacts"]
