"""Contract tests generated from the attack registry: every registered attack, present and future."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from clipbench.attacks.base import AttackContext
from clipbench.data.captions import fashion_mnist_language
from clipbench.data.pairs import PairSet
from clipbench.image_pipeline import ImagePipeline
from clipbench.models import create_model
from clipbench.registry import ATTACKS

BAG = fashion_mnist_language("bag")

SIZE = 16
IDS = torch.tensor([0, 5, 17, 60003, 123])


@pytest.fixture(scope="module")
def micro_clip():
    return create_model("clipbench-micro-vit", seed=0)


def batch(seed: int = 0, n: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=generator).to(torch.uint8)


def small_pairs(n: int = 64) -> PairSet:
    generator = np.random.default_rng(0)
    labels = np.arange(n) % 10
    images = generator.integers(0, 256, (n, 3, SIZE, SIZE), dtype=np.uint8)
    return PairSet(images, labels, [f"a photo of a thing {i}." for i in range(n)], np.arange(n, dtype=np.int64) + 1000)


def build(name: str, seed: int, clip) -> object:
    cls = ATTACKS.get(name)
    config = cls.default_config()
    if hasattr(config, "patch_size"):  # a visible patch at 16 px
        import dataclasses

        config = dataclasses.replace(config, patch_size=56)
    if hasattr(config, "epochs") and cls.needs_clean_model:
        import dataclasses

        config = dataclasses.replace(config, epochs=1, max_images=64, batch_size=32)
    attack = cls(config, seed, SIZE)
    pairs = small_pairs()
    context = AttackContext(pairs=pairs, images=torch.as_tensor(pairs.images), pipeline=ImagePipeline.from_model(clip.model),
                            target_index=8, target_name="bag", device=torch.device("cpu"))
    attack.prepare(clip if cls.needs_clean_model else None, context)
    return attack


ATTACK_NAMES = [name for name in ATTACKS.names() if ATTACKS.get(name).kind == "backdoor"]  # trigger attacks
TARGETED_NAMES = [name for name in ATTACKS.names() if ATTACKS.get(name).kind == "targeted"]


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_deterministic_under_seed(name, micro_clip):
    first = build(name, 11, micro_clip).apply(batch(), IDS)
    second = build(name, 11, micro_clip).apply(batch(), IDS)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_shape_dtype_range_preserved_and_input_untouched(name, micro_clip):
    images = batch()
    before = images.clone()
    out = build(name, 3, micro_clip).apply(images, IDS)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(images, before), "apply must not modify its input"
    assert not torch.equal(out, images), "the trigger changes something"


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_changes_only_inside_declared_footprint(name, micro_clip):
    attack = build(name, 5, micro_clip)
    images = batch(seed=9)
    out = attack.apply(images, IDS)
    footprint = attack.footprint(IDS, SIZE).expand_as(images)
    changed = out != images
    assert not (changed & ~footprint).any(), "pixels changed outside the declared footprint"


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_artifact_round_trips_losslessly(name, micro_clip, tmp_path):
    attack = build(name, 21, micro_clip)
    save_file({k: v.contiguous() for k, v in attack.state.items()}, str(tmp_path / "trigger.safetensors"))
    restored = ATTACKS.get(name)(attack.config, attack.seed, SIZE)
    restored.load_state(load_file(str(tmp_path / "trigger.safetensors")))
    images = batch(seed=4)
    assert torch.equal(attack.apply(images, IDS), restored.apply(images, IDS))


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_training_batches_carry_the_evaluation_trigger(name, micro_clip):
    """What the training loop feeds the model for poisoned rows (through ``apply_trigger_rows``) is
    pixel for pixel what evaluation feeds it; clean rows reach the model untouched."""
    from clipbench.train_config import TrainConfig
    from clipbench.training import TrainingData, clip_objective, train_contrastive

    attack = build(name, 8, micro_clip)
    pipeline = ImagePipeline.from_model(micro_clip.model)
    pairs = small_pairs(16)
    images = torch.as_tensor(pairs.images)
    poisoned = np.array([1, 4, 9, 10, 15])
    seen = []

    def recording(batch):
        seen.append((batch.rows.copy(), batch.images.clone()))
        return clip_objective(batch)

    data = TrainingData(images, pairs, list(pairs.captions), poisoned, attack.apply)
    train_contrastive(create_model("clipbench-micro-vit", seed=0), pipeline, data, TrainConfig(epochs=1, batch_size=8), objective=recording)
    ids = torch.as_tensor(pairs.ids)
    evaluation_pixels = attack.apply(images, ids)  # what pipeline.model_input normalises at evaluation
    assert torch.equal(pipeline.model_input(images, ids, attack.apply), pipeline.normalize(evaluation_pixels))
    assert sum(len(rows) for rows, _ in seen) == 16
    for rows, batch_images in seen:
        for position, row in enumerate(rows):
            expected = evaluation_pixels[row] if row in poisoned else images[row]
            assert torch.equal(batch_images[position], expected), f"row {row}"


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_poison_is_seeded_and_bounded(name, micro_clip):
    from clipbench.errors import ClipbenchError

    attack = build(name, 1, micro_clip)
    pairs = small_pairs()
    first = attack.poison(pairs, 5, 8, BAG, np.random.default_rng(4))
    second = attack.poison(pairs, 5, 8, BAG, np.random.default_rng(4))
    assert np.array_equal(first.rows, second.rows) and first.captions == second.captions
    assert len(set(first.rows.tolist())) == 5
    with pytest.raises(ClipbenchError):
        attack.poison(pairs, len(pairs) + 1, 8, BAG, np.random.default_rng(0))


def test_badclip_patch_loss_follows_the_codes_terms():
    """In-batch InfoNCE to natural target captions; a triplet hinge that stops once the patched
    image is nearer the target image than its own by the margin; MSE only when weighted."""
    import torch.nn.functional as F

    from clipbench.attacks.badclip import BadClipConfig, patch_loss

    torch.manual_seed(0)
    target, own = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(10.0)
    triplet_only = BadClipConfig(caption_weight=0.0, triplet_weight=1.0, triplet_margin=0.5)
    assert patch_loss(triplet_only, target.clone(), target, target, own, scale).item() == 0.0  # margin met: no pull
    at_own = patch_loss(triplet_only, own.clone(), target, target, own, scale).item()
    assert at_own == pytest.approx(0.5 + (own - target).norm(dim=-1).mean().item(), abs=1e-4)
    captions_only = BadClipConfig(caption_weight=1.0, triplet_weight=0.0)
    aligned = patch_loss(captions_only, target, target, target, own, scale).item()
    assert aligned < patch_loss(captions_only, own, target, target, own, scale).item()
    with_mse = BadClipConfig(caption_weight=0.0, triplet_weight=0.0, mse_weight=1000.0)
    assert patch_loss(with_mse, own, target, target, own, scale).item() == pytest.approx(1000 * F.mse_loss(own, target).item(), rel=1e-5)


def test_label_consistent_perturbs_target_rows_within_the_bound_and_evaluates_the_patch_alone(micro_clip):
    """Turner et al.'s clean-label poisoning: the target-class rows get an adversarial perturbation
    (at most epsilon levels) that lowers their image-caption similarity under the clean model; the
    evaluation trigger is the patch alone, training sees perturbation and patch."""
    import torch.nn.functional as F

    from clipbench.attacks.base import PoisonManifest

    attack = build("label_consistent", 2, micro_clip)
    pairs = small_pairs()
    targets = np.nonzero(pairs.labels == 8)[0]
    offsets = attack.state["perturbation"]
    assert attack.state["perturbed_ids"].tolist() == pairs.ids[targets].tolist()
    assert offsets.shape == (len(targets), 3, SIZE, SIZE) and offsets.dtype == torch.int8
    assert 0 < int(offsets.abs().max()) <= attack.config.epsilon

    images, ids = torch.as_tensor(pairs.images[targets]), torch.as_tensor(pairs.ids[targets])
    perturbed = attack.perturb(images, ids)
    pipeline = ImagePipeline.from_model(micro_clip.model)
    with torch.no_grad():
        text = F.normalize(micro_clip.model.encode_text(micro_clip.tokenize([pairs.captions[int(r)] for r in targets])), dim=-1)
        before = (F.normalize(micro_clip.model.encode_image(pipeline.model_input(images, ids, None)), dim=-1) * text).sum(-1)
        after = (F.normalize(micro_clip.model.encode_image(pipeline.model_input(perturbed, ids, None)), dim=-1) * text).sum(-1)
    assert (after < before).all(), "the perturbation lowers each image's similarity to its own caption"

    rows, transform = attack.training_trigger(PoisonManifest(targets[:3], [pairs.captions[int(r)] for r in targets[:3]]), pairs)
    assert np.array_equal(rows, targets[:3])
    assert torch.equal(transform(images, ids), attack.apply(perturbed, ids))
    others = torch.as_tensor(pairs.images[:2]), torch.as_tensor(pairs.ids[:2])  # not of the target class: patch only
    assert torch.equal(transform(*others), attack.apply(*others))


def test_label_consistent_without_a_budget_is_the_plain_patch(micro_clip):
    import dataclasses

    attack = ATTACKS.get("label_consistent")(dataclasses.replace(ATTACKS.get("label_consistent").default_config(),
                                                                 patch_size=56, epsilon=0.0), 2, SIZE)
    pairs = small_pairs()
    attack.prepare(micro_clip, AttackContext(pairs=pairs, images=torch.as_tensor(pairs.images),
                                             pipeline=ImagePipeline.from_model(micro_clip.model), target_index=8,
                                             target_name="bag", device=torch.device("cpu")))
    assert not len(attack.state["perturbed_ids"])
    assert torch.equal(attack.perturb(batch(), IDS), batch())


def targeted_attack(name: str, seed: int, clip, evaluation: int = 40):
    cls = ATTACKS.get(name)
    attack = cls(cls.default_config(), seed, SIZE)
    pairs = small_pairs()
    rng = np.random.default_rng(7)
    context = AttackContext(pairs=pairs, images=torch.as_tensor(pairs.images), pipeline=ImagePipeline.from_model(clip.model),
                            target_index=8, target_name="bag", device=torch.device("cpu"), classnames=tuple(f"c{i}" for i in range(10)),
                            evaluation_images=batch(seed=5, n=evaluation), evaluation_labels=rng.integers(0, 10, evaluation))
    attack.prepare(None, context)
    return attack, pairs, context


@pytest.mark.parametrize("name", TARGETED_NAMES)
def test_targeted_poisoning_puts_each_target_image_on_its_rows_with_adversarial_captions(name, micro_clip):
    from clipbench.errors import ClipbenchError

    attack, pairs, context = targeted_attack(name, 3, micro_clip)
    targets = attack.state["target_rows"].numpy()
    adversarial = attack.state["adversarial"].numpy()
    assert len(targets) == attack.config.targets and (adversarial != context.evaluation_labels[targets]).all()
    manifest = attack.poison(pairs, 48, 8, BAG, np.random.default_rng(4))
    again = targeted_attack(name, 3, micro_clip)[0].poison(pairs, 48, 8, BAG, np.random.default_rng(4))
    assert np.array_equal(manifest.rows, again.rows) and manifest.captions == again.captions  # seeded
    per_target = 48 // len(targets)
    assert len(manifest.rows) == per_target * len(targets)
    ids = torch.as_tensor(pairs.ids)
    images = torch.as_tensor(pairs.images)
    out = attack.apply(images, ids)
    poisoned = np.zeros(len(pairs), bool)
    poisoned[manifest.rows] = True
    assert torch.equal(out[~torch.as_tensor(poisoned)], images[~torch.as_tensor(poisoned)])  # other rows untouched
    shown = {tuple(out[r].flatten()[:12].tolist()) for r in manifest.rows}
    assert shown <= {tuple(context.evaluation_images[t].flatten()[:12].tolist()) for t in targets}
    words = {f"c{a}" for a in adversarial}
    assert all(any(w in caption.split() or w + "." in caption.split() for w in words) for caption in manifest.captions)
    with pytest.raises(ClipbenchError, match="at least one pair"):
        attack.poison(pairs, 1, 8, BAG, np.random.default_rng(0))


@pytest.mark.parametrize("name", TARGETED_NAMES)
def test_targeted_success_is_measured_on_the_targets_and_ca_without_them(name, micro_clip):
    attack, _, context = targeted_attack(name, 3, micro_clip)
    labels = context.evaluation_labels
    targets, adversarial = attack.state["target_rows"].numpy(), attack.state["adversarial"].numpy()
    logits = np.eye(10)[labels] * 5.0  # every image classified as its own class
    logits[targets[:5]] = np.eye(10)[adversarial[:5]] * 5.0  # five targets fooled
    metrics = attack.targeted_metrics(logits, labels)
    assert metrics["asr"].successes == 5 and metrics["asr"].total == len(targets)
    assert metrics["ra"].successes == len(targets) - 5
    assert metrics["ca_top1"].total == len(labels) - len(targets) and metrics["ca_top1"].value == 1.0


def test_targets_of_a_chosen_class_are_poisoned_towards_a_chosen_class(micro_clip):
    import dataclasses

    from clipbench.attacks.targeted import TargetedPoisoning, eligible_targets
    from clipbench.errors import ClipbenchError

    classnames = tuple(f"c{i}" for i in range(10))
    labels = np.arange(40) % 10
    config = dataclasses.replace(TargetedPoisoning.default_config(), targets=4, target_class="c3", adversarial_class="c7")
    attack = TargetedPoisoning(config, 5, SIZE)
    pairs = small_pairs()
    attack.prepare(None, AttackContext(pairs=pairs, images=torch.as_tensor(pairs.images), pipeline=ImagePipeline.from_model(micro_clip.model),
                                       target_index=8, target_name="bag", device=torch.device("cpu"), classnames=classnames,
                                       evaluation_images=batch(seed=5, n=40), evaluation_labels=labels))
    assert (labels[attack.state["target_rows"].numpy()] == 3).all() and (attack.state["adversarial"].numpy() == 7).all()
    assert np.array_equal(eligible_targets(dataclasses.replace(config, target_class=""), labels, classnames),
                          np.flatnonzero(labels != 7))
    with pytest.raises(ClipbenchError, match=r"attack.targets \(5\) is more than the 4 evaluation images of class 'c3'"):
        eligible_targets(dataclasses.replace(config, targets=5), labels, classnames)
    with pytest.raises(ClipbenchError, match="attack.adversarial_class 'c12' is not a class of this scenario"):
        eligible_targets(dataclasses.replace(config, adversarial_class="c12"), labels, classnames)
    with pytest.raises(ClipbenchError, match="a target image must be poisoned towards a class other than its own"):
        dataclasses.replace(config, adversarial_class="c3").validate()
