"""Scenarios: which data plays which role (pretraining, victim, clean defense, zero-shot test)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import require
from . import captions as caption_lib
from .pairs import PairSet
from .splits import ScenarioData, split_rows

DATASETS = ("fashion-mnist", "pairs")
#: Settings of real-scale data that a Fashion-MNIST scenario does not read (and must not carry in its cache key).
PAIRS_ONLY = ("train_data", "defense_data", "eval_data", "image_key", "caption_key", "classnames", "templates", "max_skipped")
CAPTION_STYLES = ("templates", "attributes")  # Fashion-MNIST captions (clipbench.data.attribute_captions)
THREAT_MODELS = ("finetune", "pretrain")


@dataclass(frozen=True)
class ScenarioConfig:
    """Which data plays which role, and how much of it.

    ``fashion-mnist`` (the ``tiny`` preset): disjoint splits carved from the 60K Fashion-MNIST
    training images; the test split (10K) is the zero-shot evaluation set.

    ``pairs`` (real scale, the ``paper-abd`` preset): image-caption pairs from ``train_data`` (a
    CSV/TSV of image paths and captions, webdataset shards, or ``hf:NAME[:SPLIT]``; see
    :func:`clipbench.data.sources.open_pairs`); the clean defense pairs come from ``defense_data``
    or, when it is empty, from rows of ``train_data`` disjoint from the victim's; the zero-shot set
    is an image-classification source ``eval_data`` (an ImageNet-style folder or ``hf:NAME``)
    scored with ``classnames`` (``imagenet``: OpenAI's 1,000 names; ``source``: the source's own
    class names) and ``templates`` (``openai``: the 80 OpenAI ImageNet templates; ``simple``).

    Splits and captions come from ``split_seed`` and are shared by every run seed, so one clean
    model serves every cell.

    ``threat_model`` says where the poisoned pairs sit. ``finetune`` (the ABD and CleanCLIP
    setting): a clean model, pretrained on the pretraining split (or fetched), is fine-tuned on the
    poisoned victim split. ``pretrain`` (the RoCLIP and SafeCLIP setting): the victim split *is*
    the pre-training data; the victim and every training-time defense train from a random
    initialisation on it (the same initialisation per seed), and the clean model, the baseline
    the cells are read against, is trained from scratch on the same split without the poison.
    It has no separate pretraining split (``pretrain_size`` 0).
    """

    KEYED_WHEN_SET = ("threat_model",)

    dataset: str = "fashion-mnist"
    pretrain_size: int = 40000
    victim_size: int = 10000
    defense_size: int = 5000
    eval_size: int = 10000
    target: str = "bag"
    split_seed: int = 0
    train_data: str = ""
    defense_data: str = ""
    eval_data: str = ""
    image_key: str = ""  # empty: the reader's default (CSV: image, caption; shards/hub: jpg, txt ...)
    caption_key: str = ""
    classnames: str = "imagenet"
    templates: str = "openai"
    max_skipped: float = 0.01  # a fraction of the listed rows, or a count when >= 1
    captions: str = "templates"  # fashion-mnist: class templates, or "attributes" read off the pixels
    threat_model: str = "finetune"  # or "pretrain": the victim split is the pre-training data

    @property
    def from_scratch(self) -> bool:
        """Whether the victim and training-time defenses train from a random initialisation."""
        return self.threat_model == "pretrain"

    def validate(self) -> None:
        require(self.dataset in DATASETS, f"scenario.dataset {self.dataset!r} is unknown; valid: {', '.join(DATASETS)}")
        require(self.threat_model in THREAT_MODELS,
                f"scenario.threat_model {self.threat_model!r} is unknown; valid: {', '.join(THREAT_MODELS)}")
        if self.from_scratch:
            require(self.victim_size > 0, "scenario.victim_size is the pre-training data under threat_model=pretrain "
                                          f"and must be > 0, got {self.victim_size}")
            require(self.pretrain_size == 0, f"scenario.pretrain_size must be 0 under threat_model=pretrain (every "
                                             f"model trains from scratch on the victim split), got {self.pretrain_size}")
        require(self.split_seed >= 0, f"scenario.split_seed must be >= 0, got {self.split_seed}")
        for name in ("pretrain_size", "victim_size", "defense_size", "eval_size"):
            require(getattr(self, name) >= 0, f"scenario.{name} must be >= 0, got {getattr(self, name)}")
        require(self.victim_size > 0, "scenario.victim_size must be > 0")
        require(self.eval_size > 0, "scenario.eval_size must be > 0")
        require(self.max_skipped >= 0, f"scenario.max_skipped must be >= 0, got {self.max_skipped}")
        if self.dataset == "pairs":
            require(self.captions == "templates", "scenario.captions is read only by the Fashion-MNIST scenario; "
                                                  "real pairs keep their own captions")
            from .real import validate_pairs_config  # real-scale readers import torch: only when needed

            validate_pairs_config(self)
            return
        require(self.captions in CAPTION_STYLES,
                f"scenario.captions {self.captions!r} is unknown; valid: {', '.join(CAPTION_STYLES)}")
        defaults = ScenarioConfig()
        for name in PAIRS_ONLY:
            require(getattr(self, name) == getattr(defaults, name),
                    f"scenario.{name} is read only with scenario.dataset=pairs; this scenario is {self.dataset}")
        total = self.pretrain_size + self.victim_size + self.defense_size
        require(total <= 60000, f"scenario: pretrain + victim + defense sizes ({total}) exceed the 60000 training images")
        require(self.eval_size <= 10000, f"scenario.eval_size ({self.eval_size}) exceeds the 10000 test images")
        classnames = caption_lib.ZERO_SHOT_CLASSNAMES
        require(self.target in classnames,
                f"scenario.target {self.target!r} is not a class of the scenario; valid: {', '.join(classnames)}")


def load_scenario(config: ScenarioConfig, cache_dir: Path) -> ScenarioData:
    """Build the scenario's splits: Fashion-MNIST in memory, or lazy real-scale sources."""
    config.validate()
    if config.dataset == "pairs":
        from .real import load_pairs_scenario

        return load_pairs_scenario(config, cache_dir)
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
    if config.captions == "attributes":
        from .attribute_captions import AttributeBins, attribute_captions

        bins = AttributeBins.fit(np.asarray(train_images, dtype=np.uint8))

        def caption(images: np.ndarray, labels: np.ndarray) -> list[str]:
            return attribute_captions(images, labels, CLASSNAMES, bins, rng)
    else:
        def caption(images: np.ndarray, labels: np.ndarray) -> list[str]:
            return caption_lib.make_captions(labels, CLASSNAMES, rng)

    sets = []
    for split_rows_ in rows:
        labels = np.asarray(train_labels[split_rows_], dtype=np.int64)
        images = (np.asarray(train_images[split_rows_], dtype=np.uint8) if len(split_rows_)
                  else np.zeros((0, *np.shape(train_images[0])), dtype=np.uint8))  # an empty split keeps the image shape
        sets.append(PairSet(images=images, labels=labels, captions=caption(images, labels), ids=split_rows_.astype(np.int64)))
    eval_rows = np.sort(np.random.default_rng(config.split_seed + 2).permutation(len(test["label"]))[: config.eval_size])
    eval_labels = np.asarray(test["label"][eval_rows], dtype=np.int64)
    eval_images = np.asarray(test["image"][eval_rows], dtype=np.uint8)
    evaluation = PairSet(images=eval_images, labels=eval_labels, captions=caption(eval_images, eval_labels),
                         ids=(eval_rows + 60000).astype(np.int64))
    return ScenarioData(
        pretrain=sets[0], victim=sets[1], defense=sets[2], evaluation=evaluation,
        classnames=classnames, templates=caption_lib.ZERO_SHOT_TEMPLATES,
        target_index=classnames.index(config.target), poison_captions=caption_lib.fashion_mnist_language(config.target),
    )
