"""The shared training loop: schedule, refusal of impossible batch sizes, divergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipbench.data.pairs import PairSet
from clipbench.errors import ClipbenchError, DivergenceError
from clipbench.image_pipeline import ImagePipeline
from clipbench.models import create_model
from clipbench.train_config import TrainConfig
from clipbench.training import TrainingData, cosine_with_warmup, train_contrastive


def tiny_set(n: int = 16):
    pairs = PairSet(np.zeros((n, 3, 16, 16), np.uint8), np.arange(n) % 10, [f"a photo of item {i}." for i in range(n)], np.arange(n))
    return pairs, torch.randint(0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(0)).to(torch.uint8)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    assert cosine_with_warmup(0, 100, 10) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 100, 10) == pytest.approx(1.0)
    assert cosine_with_warmup(10, 100, 10) == pytest.approx(1.0)
    assert cosine_with_warmup(100, 100, 10) == pytest.approx(0.0)


def test_batch_larger_than_the_data_is_refused():
    clip = create_model("clipbench-micro-vit")
    pairs, images = tiny_set()
    with pytest.raises(ClipbenchError, match="batch_size 64 is larger than the 16 training pairs"):
        train_contrastive(clip, ImagePipeline.from_model(clip.model), TrainingData.clean(images, pairs), TrainConfig(epochs=1, batch_size=64))


def test_non_finite_loss_raises_divergence():
    clip = create_model("clipbench-micro-vit")
    pairs, images = tiny_set()
    with pytest.raises(DivergenceError, match="non-finite loss"):
        train_contrastive(clip, ImagePipeline.from_model(clip.model), TrainingData.clean(images, pairs), TrainConfig(epochs=1, batch_size=8),
                          objective=lambda batch: torch.tensor(float("nan"), requires_grad=True))


def test_a_defense_trains_with_its_papers_optimizer_whatever_the_preset_schedule(tmp_path):
    """CleanCLIP's code (CyCLIP's trainer): AdamW betas 0.9/0.999, eps 1e-8, no clipping; the
    preset sets the schedule (epochs, batch, lr) but never the method's optimizer."""
    from clipbench.cells import CellRequest, resolve_cell
    from clipbench.train_config import CYCLIP_ADAMW

    (tmp_path / "cc3m.csv").write_text("image,caption\n")
    (tmp_path / "val").mkdir()
    data = {"scenario": {"train_data": str(tmp_path / "cc3m.csv"), "eval_data": str(tmp_path / "val")}}  # paper-abd reads user data
    for preset in ("tiny", "paper-abd"):
        for defense in ("finetune", "cleanclip", "abd", "roclip", "safeclip"):
            request = CellRequest(preset=preset, attack="badnet", defense=defense, overrides=data if preset != "tiny" else {})
            config = resolve_cell(request).defense_config
            run = config.train_config(seed=0)
            assert {k: getattr(run, k) for k in CYCLIP_ADAMW} == CYCLIP_ADAMW, (preset, defense)
    tiny = resolve_cell(CellRequest(preset="tiny", attack="badnet", defense="none")).preset
    assert (tiny.victim.beta2, tiny.victim.eps, tiny.victim.grad_clip) == (0.98, 1e-6, 1.0)  # open_clip's, clipbench's own training
    paper = resolve_cell(CellRequest(preset="paper-abd", attack="badnet", defense="none", overrides=data)).preset
    assert {k: getattr(paper.victim, k) for k in CYCLIP_ADAMW} == CYCLIP_ADAMW  # poisoned by CleanCLIP's trainer
    changed = resolve_cell(CellRequest(preset="tiny", attack="badnet", defense="cleanclip",
                                       overrides={"cleanclip": {"grad_clip": "0.5", "beta2": "0.98"}})).defense_config
    assert (changed.grad_clip, changed.beta2) == (0.5, 0.98)


def test_the_loop_builds_adamw_from_the_run_settings():
    from clipbench.models import create_model
    from clipbench.train_config import TrainConfig
    from clipbench.training import _optimizer

    model = create_model("clipbench-micro-vit").model
    optimizer = _optimizer(model, TrainConfig(beta1=0.8, beta2=0.999, eps=1e-8))
    assert all(g["betas"] == (0.8, 0.999) and g["eps"] == 1e-8 for g in optimizer.param_groups)
    with pytest.raises(Exception, match="beta1 and beta2"):
        TrainConfig(beta2=1.0).validate()
