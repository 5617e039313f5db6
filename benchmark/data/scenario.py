"""Scenarios: which data plays which role (pretraining, victim, clean defense, zero-shot test)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import require
from ..errors import ClipbenchError
from . import captions as caption_lib
from .pairs import PairSet


@dataclass(frozen=True)
class ScenarioConfig:
    """Sizes of the disjoint splits carved from the 60K Fashion-MNIST training images.

    The test split (10K) is the zero-shot evaluation set. Splits and captions come from
    ``split_seed`` and are shared by every run seed, so one clean model serves every cell.
    """

    dataset: str = "fashion-mnist"
    pretrain_size: int = 40000
    victim_size: int = 10000
    defense_size: int = 5000
    eval_size: int = 10000
    target: str = "bag"
    split_seed: int = 0

    def validate(self) -> None:
        require(self.dataset == "fashion-mnist", f"scenario.dataset {self.dataset!r} is unknown; valid: fashion-mnist")
        require(self.split_seed >= 0, f"scenario.split_seed must be >= 0, got {self.split_seed}")
        for name in ("pretrain_size", "victim_size", "defense_size", "eval_size"):
            require(getattr(self, name) >= 0, f"scenario.{name} must be >= 0, got {getattr(self, name)}")
        total = self.pretrain_size + self.victim_size + self.defense_size
        require(total <= 60000, f"scenario: pretrain + victim + defense sizes ({total}) exceed the 60000 training images")
        require(self.eval_size <= 10000, f"scenario.eval_size ({self.eval_size}) exceeds the 10000 test images")
        require(self.victim_size > 0, "scenario.victim_size must be > 0")
        require(self.eval_size > 0, "scenario.eval_size must be > 0")
        classnames = caption_lib.ZERO_SHOT_CLASSNAMES
        require(self.target in classnames, f"scenario.target {self.target!r} is not a class of the scenario; valid: {', '.join(classnames)}")


@dataclass
class ScenarioData:
    """The materialised splits and the zero-shot task of a scenario."""

    pretrain: PairSet
    victim: PairSet
    defense: PairSet
    evaluation: PairSet
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    target_index: int

    @property
    def target_name(self) -> str:
        return self.classnames[self.target_index]


def split_rows(total: int, sizes: list[int], seed: int) -> list[np.ndarray]:
    """Disjoint random row sets of the given sizes drawn from ``range(total)``."""
    if sum(sizes) > total:
        raise ClipbenchError(f"split sizes {sizes} exceed the {total} rows available")
    order = np.random.default_rng(seed).permutation(total)
    bounds = np.cumsum([0] + sizes)
    return [np.sort(order[bounds[i] : bounds[i + 1]]) for i in range(len(sizes))]


def load_scenario(config: ScenarioConfig, cache_dir: Path) -> ScenarioData:
    """Build the scenario's splits from the real Fashion-MNIST data."""
    config.validate()
    from .fashion_mnist import CLASSNAMES, load_fashion_mnist

    classnames = caption_lib.ZERO_SHOT_CLASSNAMES
    raw = load_fashion_mnist(cache_dir)
    train = raw["train"].with_format("numpy")
    test = raw["test"].with_format("numpy")
    train_images, train_labels = train["image"], train["label"]
    rows = split_rows(
        len(train_labels), [config.pretrain_size, config.victim_size, config.defense_size], config.split_seed
    )
    rng = np.random.default_rng(config.split_seed + 1)
    sets = []
    for split_rows_ in rows:
        labels = np.asarray(train_labels[split_rows_], dtype=np.int64)
        sets.append(
            PairSet(
                images=np.asarray(train_images[split_rows_], dtype=np.uint8),
                labels=labels,
                captions=caption_lib.make_captions(labels, CLASSNAMES, rng),
                ids=split_rows_.astype(np.int64),
            )
        )
    eval_rows = np.sort(np.random.default_rng(config.split_seed + 2).permutation(len(test["label"]))[: config.eval_size])
    eval_labels = np.asarray(test["label"][eval_rows], dtype=np.int64)
    evaluation = PairSet(
        images=np.asarray(test["image"][eval_rows], dtype=np.uint8),
        labels=eval_labels,
        captions=caption_lib.make_captions(eval_labels, CLASSNAMES, rng),
        ids=(eval_rows + 60000).astype(np.int64),
    )
    return ScenarioData(
        pretrain=sets[0], victim=sets[1], defense=sets[2], evaluation=evaluation,
        classnames=classnames, templates=caption_lib.ZERO_SHOT_TEMPLATES,
        target_index=classnames.index(config.target),
    )
