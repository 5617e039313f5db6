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
