"""Every registered detector against the contract, and the neighbourhood scores against a
brute-force reading of their definitions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from clipbench.detection_metrics import auroc
from clipbench.detectors.base import DataDetector, PairEmbeddings
from clipbench.errors import ClipbenchError
from clipbench.registry import DETECTORS


def _planted(n: int = 300, poisoned: int = 15, dim: int = 16, seed: int = 0):
    """Clean pairs in five tight clusters with captions beside their images; poisoned pairs
    scattered far apart, each with an unrelated caption (sparse neighbourhoods, low similarity)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, dim, generator=g) * 3
    labels = torch.zeros(n, dtype=torch.bool)
    labels[torch.randperm(n, generator=g)[:poisoned]] = True
    cluster = torch.randint(0, 5, (n,), generator=g)
    images = centres[cluster] + 0.3 * torch.randn(n, dim, generator=g)
    texts = images + 0.1 * torch.randn(n, dim, generator=g)
    images[labels] = 6 * torch.randn(poisoned, dim, generator=g)
    texts[labels] = centres[torch.randint(0, 5, (poisoned,), generator=g)] + 0.1 * torch.randn(poisoned, dim, generator=g)
    return PairEmbeddings(images=images, texts=texts, seed=seed), labels.numpy()


@pytest.mark.parametrize("name", DETECTORS.names())
def test_every_detector_declares_its_level_and_source(name):
    cls = DETECTORS.get(name)
    assert cls.description and cls.source and cls.level in ("data", "input", "model") and cls.registry_name == name
    cls(cls.default_config())  # the defaults validate


@pytest.mark.parametrize("name", [n for n in DETECTORS.names() if DETECTORS.get(n).level == "data"])
def test_every_data_detector_scores_every_pair_finitely_and_finds_planted_poison(name):
    cls = DETECTORS.get(name)
    detector = cls(dataclasses.replace(cls.default_config(), **({"reference_size": 128} if "reference_size" in
                                                                 {f.name for f in dataclasses.fields(cls.Config)} else {})))
    inputs, labels = _planted()
    scores = np.asarray(detector.score(inputs))
    assert scores.shape == (len(inputs),) and np.isfinite(scores).all()
    assert auroc(scores, labels) > 0.9


def test_a_data_detector_is_never_handed_the_poison_manifest():
    assert {f.name for f in dataclasses.fields(PairEmbeddings)} == {"images", "texts", "seed", "model"}
    assert issubclass(DETECTORS.get("kdistance"), DataDetector)


def _brute_force(images: np.ndarray, texts: np.ndarray, k: int):
    """k-distance, SLOF and DAO of each pair with the whole set as one reference batch, by loops."""
    n = len(images)
    points = np.concatenate([images, texts])

    def kth(distances):
        return np.sort(distances)[k - 1]

    def lid(distances):
        nearest = np.sort(distances)[:k]
        return -k / np.sum(np.log(nearest / nearest[-1] + 1e-4))

    ref_dist = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(ref_dist, np.inf)
    out = {"kdistance": [], "slof": [], "dao": []}
    for i in range(n):
        d = ref_dist[i].copy()
        d[n + i] = np.inf  # the pair's own caption
        neighbours = np.argsort(d)[:k]
        own = kth(d)
        out["kdistance"].append(own)
        out["slof"].append(np.mean([own / kth(ref_dist[j]) for j in neighbours]))
        out["dao"].append(np.mean([lid(ref_dist[j]) * np.log(own / kth(ref_dist[j])) for j in neighbours]))
    return {name: np.array(values) for name, values in out.items()}


@pytest.mark.parametrize("name", ["kdistance", "slof", "dao"])
def test_neighbourhood_scores_match_their_definitions(name):
    rng = np.random.default_rng(1)
    images, texts = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    cls = DETECTORS.get(name)
    scores = cls(cls.Config(k=4, reference_size=40)).score(
        PairEmbeddings(images=torch.tensor(images, dtype=torch.float32), texts=torch.tensor(texts, dtype=torch.float32), seed=0))
    expected = _brute_force(images.astype(np.float32).astype(np.float64), texts.astype(np.float32).astype(np.float64), 4)
    np.testing.assert_allclose(scores, expected[name], rtol=1e-6)


def test_reference_batches_cover_every_pair_once_and_short_tails_join():
    from clipbench.detectors.neighbourhood import neighbourhoods

    images = torch.randn(250, 4)
    rows = np.concatenate([h.rows for h in neighbourhoods(images, images + 0.1, k=3, reference_size=100, seed=0)])
    assert sorted(rows.tolist()) == list(range(250))
    sizes = [len(h.rows) for h in neighbourhoods(images, images, k=3, reference_size=100, seed=0)]
    assert sizes == [100, 100, 50]
    sizes = [len(h.rows) for h in neighbourhoods(images[:240], images[:240], k=3, reference_size=100, seed=0)]
    assert sizes == [100, 140]  # a tail under half a batch joins the one before it


def test_k_larger_than_the_reference_batch_is_one_clear_error():
    cls = DETECTORS.get("kdistance")
    inputs, _ = _planted(n=20, poisoned=2)
    with pytest.raises(ClipbenchError, match="k=64 needs more than 64 reference points"):
        cls(cls.Config(k=64)).score(inputs)
    with pytest.raises(ClipbenchError, match="detector.k must be >= 1"):
        cls(cls.Config(k=0))


def test_detector_names_are_checked_with_a_suggestion():
    with pytest.raises(ClipbenchError, match="Did you mean 'slof'"):
        DETECTORS.get("slfo")


@pytest.mark.parametrize("name", [n for n in DETECTORS.names() if DETECTORS.get(n).level == "input"])
def test_every_input_detector_scores_every_image_finitely(name):
    import torch.nn.functional as F

    from clipbench.detectors.base import InputImages
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import create_model

    clip = create_model("clipbench-micro-vit", None, seed=0)
    pipeline = ImagePipeline.from_model(clip.model)
    g = torch.Generator().manual_seed(0)
    size = pipeline.size
    images = torch.randint(0, 256, (20, 3, size, size), dtype=torch.uint8, generator=g)
    reference = torch.randint(0, 256, (7, 3, size, size), dtype=torch.uint8, generator=g)
    dim = clip.model.text_projection.shape[1]
    classifier = F.normalize(torch.randn(dim, 10, generator=g), dim=0)
    cls = DETECTORS.get(name)
    config = dataclasses.replace(cls.default_config(), perturbations=3) if name == "strip" else cls.default_config()
    inputs = InputImages(images=images, model=clip, pipeline=pipeline, classifier=classifier, reference=reference, seed=0)
    scores = np.asarray(cls(config).score(inputs))
    assert scores.shape == (20,) and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, np.asarray(cls(config).score(inputs)))  # seeded


def test_strip_ranks_inputs_whose_prediction_survives_blending_as_suspicious():
    import math
    from types import SimpleNamespace

    from clipbench.detectors.base import InputImages
    from clipbench.detectors.strip import Strip, StripConfig
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import create_model

    pipeline = ImagePipeline.from_model(create_model("clipbench-micro-vit", None, seed=0).model)
    marked_above = float(pipeline.pixels(torch.full((1, 3, 1, 1), 230, dtype=torch.uint8))[0, 0, 0, 0])

    class Stubborn(torch.nn.Module):
        """Predicts class 0 whenever the first pixel is saturated (a trigger blending cannot
        remove), else a near-uniform distribution (what STRIP expects of a blend of two images)."""

        def __init__(self):
            super().__init__()
            self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(100.0)))

        def encode_image(self, pixels):
            content = torch.ones(len(pixels), 10) + 1e-3 * pixels.flatten(1)[:, :10]
            fixed = torch.nn.functional.one_hot(torch.zeros(len(pixels), dtype=torch.long), 10).float()
            return torch.where((pixels[:, 0, 0, 0] > marked_above)[:, None], fixed, content)

    g = torch.Generator().manual_seed(0)
    size = pipeline.size
    images = torch.randint(0, 100, (40, 3, size, size), dtype=torch.uint8, generator=g)
    triggered = torch.arange(40) % 2 == 1
    images[triggered, :, 0, 0] = 255
    inputs = InputImages(images=images, model=SimpleNamespace(model=Stubborn()), pipeline=pipeline,
                         classifier=torch.eye(10), reference=torch.randint(0, 100, (30, 3, size, size), dtype=torch.uint8,
                                                                           generator=g), seed=0)
    scores = Strip(StripConfig(perturbations=20)).score(inputs)
    assert auroc(scores, triggered.numpy()) == 1.0


def test_decree_pieces_follow_the_official_code():
    from clipbench.detectors.decree import _Lambda, mean_pairwise_cosine

    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # pairs: (1,2) 0, (1,3) and (2,3) 1/sqrt(2), each counted in both orders
    assert float(mean_pairwise_cosine(features)) == pytest.approx(2 * (1 / 2 ** 0.5) / 3)
    weight = _Lambda()
    for _ in range(6):
        weight.update(True)
    assert weight.value == pytest.approx(5e-3)  # up by 5 after more than 5 successes
    for _ in range(6):
        weight.update(False)
    assert weight.value == pytest.approx(1e-3)


class _StubEncoder(torch.nn.Module):
    """Embeds an image as the mean over its pixels of a bounded feature of each pixel's colour, so
    only a trigger covering much of the image collapses images of different colours; with
    ``backdoor``, a white 4x4 top-left corner maps every image to one embedding (a differentiable
    switch on the corner's brightness)."""

    def __init__(self, backdoor: bool):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.colour = torch.randn(3, 8, generator=g)
        self.fixed = torch.randn(8, generator=g)
        self.backdoor = backdoor

    def encode_image(self, pixels):
        content = torch.tanh(pixels.permute(0, 2, 3, 1) @ self.colour).mean(dim=(1, 2))
        if not self.backdoor:
            return content
        gate = torch.sigmoid(5 * (pixels[:, :, :4, :4].mean(dim=(1, 2, 3)) - 0.8))[:, None]
        return (1 - gate) * content + gate * 50 * self.fixed


def test_decree_finds_a_smaller_trigger_in_a_backdoored_encoder():
    from types import SimpleNamespace

    from clipbench.detectors.base import ModelUnderTest
    from clipbench.detectors.decree import Decree, DecreeConfig
    from clipbench.image_pipeline import ImagePipeline
    from clipbench.models import create_model

    pipeline = ImagePipeline.from_model(create_model("clipbench-micro-vit", None, seed=0).model)
    size = pipeline.size
    g = torch.Generator().manual_seed(1)
    colours = torch.randint(0, 200, (64, 3, 1, 1), generator=g)
    shadow = (colours + torch.randint(0, 30, (64, 3, size, size), generator=g)).to(torch.uint8)
    config = DecreeConfig(lr=0.1, shadow_images=64, max_epochs=150)
    runs = {}
    for backdoor in (False, True):
        detector = Decree(config)
        inputs = ModelUnderTest(model=SimpleNamespace(model=_StubEncoder(backdoor)), pipeline=pipeline,
                                shadow=shadow, seed=0)
        (score,) = detector.score(inputs)
        runs[backdoor] = (score, detector.last_run)
    assert runs[True][1]["found"], runs[True]
    assert runs[True][0] > runs[False][0], runs
    assert runs[True][1]["pl1"] < 0.3, runs
