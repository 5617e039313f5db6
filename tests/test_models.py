"""Safe checkpoints (safetensors + sha256 sidecar), strict state loading, and the image pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clipbench.errors import ClipbenchError
from clipbench.image_pipeline import ImagePipeline
from clipbench.models import (
    SIDECAR_FILE,
    WEIGHTS_FILE,
    check_model_name,
    create_model,
    load_checkpoint,
    load_state,
    save_checkpoint,
)

MICRO = "clipbench-micro-vit"


@pytest.fixture(scope="module")
def micro():
    return create_model(MICRO, seed=3)


@pytest.fixture
def checkpoint(micro, tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(micro, folder, {"stage": "test"})
    return folder


def test_create_model_is_seeded():
    a, b, c = create_model(MICRO, seed=1), create_model(MICRO, seed=1), create_model(MICRO, seed=2)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_checkpoint_round_trip_gives_identical_state(micro, checkpoint):
    sidecar = json.loads((checkpoint / SIDECAR_FILE).read_text())
    assert sidecar["architecture"] == MICRO and sidecar["stage"] == "test" and len(sidecar["sha256"]) == 64
    loaded = load_checkpoint(checkpoint)
    assert loaded.name == MICRO
    original, restored = micro.model.state_dict(), loaded.model.state_dict()
    assert set(original) == set(restored)
    for key in original:
        assert torch.equal(original[key], restored[key]), key


def test_checkpoint_is_not_a_pickle(checkpoint):
    from safetensors.torch import load_file

    assert load_file(str(checkpoint / WEIGHTS_FILE))  # readable as safetensors


def test_tampered_weights_fail_the_sha256_check(checkpoint):
    weights = checkpoint / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ClipbenchError, match="sha256") as info:
        load_checkpoint(checkpoint)
    assert str(weights) in str(info.value)


def test_incomplete_checkpoint_is_rejected(checkpoint):
    (checkpoint / SIDECAR_FILE).unlink()
    with pytest.raises(ClipbenchError, match="incomplete"):
        load_checkpoint(checkpoint)


def test_load_state_from_another_architecture_names_keys(micro):
    other = create_model("clipbench-tiny-rn")
    target = create_model(MICRO, seed=5)
    before = {k: v.clone() for k, v in target.model.state_dict().items()}
    with pytest.raises(ClipbenchError) as info:
        load_state(target.model, other.model.state_dict(), "other.safetensors")
    message = str(info.value)
    assert message.startswith("other.safetensors does not match the architecture")
    assert "missing:" in message and "unexpected:" in message
    own, foreign = set(target.model.state_dict()), set(other.model.state_dict())
    missing, unexpected = sorted(own - foreign), sorted(foreign - own)
    assert f"missing: {missing[0]}" in message and f"({len(missing)})" in message
    assert f"unexpected: {unexpected[0]}" in message and f"({len(unexpected)})" in message
    after = target.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a failed load leaves the model unchanged"


def test_load_state_reports_shape_mismatch(micro):
    state = {k: v.clone() for k, v in micro.model.state_dict().items()}
    state["logit_scale"] = torch.zeros(2)
    with pytest.raises(ClipbenchError, match="shape mismatch: logit_scale"):
        load_state(create_model(MICRO).model, state, "x")


def test_unknown_model_name():
    with pytest.raises(ClipbenchError, match="unknown model 'clipbench-micro-vt'.*Did you mean 'clipbench-micro-vit'"):
        check_model_name("clipbench-micro-vt")
    check_model_name("RN50")  # any open_clip architecture is accepted


def test_pipeline_from_micro_model(micro):
    pipeline = ImagePipeline.from_model(micro.model)
    assert pipeline.size == 16
    assert len(pipeline.mean) == len(pipeline.std) == 3


def test_to_model_resolution_turns_grayscale_into_rgb_at_model_size():
    pipeline = ImagePipeline(size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    gray = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    out = pipeline.to_model_resolution(gray)
    assert out.shape == (5, 3, 16, 16) and out.dtype == torch.uint8
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    constant = pipeline.to_model_resolution(np.full((2, 28, 28), 200, dtype=np.uint8))
    assert (constant == 200).all(), "resizing a constant image keeps its value"


def test_to_model_resolution_accepts_channel_layouts_and_crops_centre():
    pipeline = ImagePipeline(size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    nhwc = np.zeros((2, 8, 12, 3), dtype=np.uint8)
    nhwc[:, :, 2:10] = 100  # centre 8 columns of a wide image
    out = pipeline.to_model_resolution(nhwc)
    assert out.shape == (2, 3, 8, 8)
    assert (out == 100).all()
    same = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(pipeline.to_model_resolution(same), same)


def test_model_input_applies_trigger_before_normalisation():
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    pipeline = ImagePipeline(size=16, mean=mean, std=std)
    images = torch.zeros(3, 3, 16, 16, dtype=torch.uint8)
    ids = torch.tensor([1, 2, 3])
    seen = {}

    def white(batch, batch_ids):
        seen["dtype"], seen["ids"] = batch.dtype, batch_ids
        return torch.full_like(batch, 255)

    out = pipeline.model_input(images, ids, white)
    assert seen["dtype"] == torch.uint8, "the trigger works in uint8 space"
    assert torch.equal(seen["ids"], ids)
    expected = torch.tensor([(1 - m) / s for m, s in zip(mean, std)], dtype=torch.float32).view(1, 3, 1, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected.expand(3, 3, 16, 16))

    clean = pipeline.model_input(images, ids)
    expected_clean = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32).view(1, 3, 1, 1)
    torch.testing.assert_close(clean, expected_clean.expand(3, 3, 16, 16))


def test_token_cache_overflow_keeps_the_batch_consistent(monkeypatch):
    from clipbench import models

    clip = models.create_model("clipbench-micro-vit")
    monkeypatch.setattr(models, "_TOKEN_CACHE_LIMIT", 2)
    first = clip.tokenize(["a bag.", "a boot.", "a coat."])
    mixed = clip.tokenize(["a bag.", "a new dress.", "a shirt.", "a boot."])  # cache overflows in this call
    assert torch.equal(mixed[0], first[0]) and torch.equal(mixed[3], first[1])
    assert torch.equal(mixed, clip.tokenizer(["a bag.", "a new dress.", "a shirt.", "a boot."]))
