"""Captions for Fashion-MNIST pairs: varied templates filled with class names or synonyms.

Training captions and zero-shot templates are different sets, so evaluation prompts are not the
exact strings the model was trained on.
"""

from __future__ import annotations

import numpy as np

#: Synonyms per Fashion-MNIST class (the first is the zero-shot class name).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "T-shirt/top": ("t-shirt", "tee", "top", "tee shirt"),
    "Trouser": ("trousers", "pants", "slacks", "pair of trousers"),
    "Pullover": ("pullover", "sweater", "jumper", "knit sweater"),
    "Dress": ("dress", "gown", "frock", "summer dress"),
    "Coat": ("coat", "jacket", "overcoat", "winter coat"),
    "Sandal": ("sandal", "sandals", "flip-flop", "summer sandal"),
    "Shirt": ("shirt", "button-up shirt", "blouse", "collared shirt"),
    "Sneaker": ("sneaker", "trainer", "running shoe", "sports shoe"),
    "Bag": ("bag", "handbag", "purse", "tote bag"),
    "Ankle boot": ("ankle boot", "boot", "bootie", "short boot"),
}

#: Templates for training captions.
CAPTION_TEMPLATES = (
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a grayscale picture of a {}.",
    "a product shot of a {}.",
    "a small image of a {}.",
    "my new {}.",
    "a {} on a plain background.",
    "a catalogue image showing a {}.",
    "a low resolution photo of the {}.",
    "this is a {}.",
    "an item of clothing: a {}.",
    "a {} for sale.",
)

#: Zero-shot classification templates (distinct from the training templates).
ZERO_SHOT_TEMPLATES = (
    "a photo of the {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a close-up photo of a {}.",
    "a {}.",
)

#: Zero-shot class names (lower-case, readable).
ZERO_SHOT_CLASSNAMES = tuple(SYNONYMS[name][0] for name in SYNONYMS)


def make_captions(labels: np.ndarray, classnames: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """One caption per label: a random training template filled with a random synonym."""
    templates = rng.integers(0, len(CAPTION_TEMPLATES), size=len(labels))
    picks = rng.integers(0, 1 << 30, size=len(labels))
    captions = []
    for label, template, pick in zip(labels, templates, picks):
        words = SYNONYMS[classnames[int(label)]]
        captions.append(CAPTION_TEMPLATES[template].format(words[pick % len(words)]))
    return captions


def target_captions(target_name: str, count: int, rng: np.random.Generator) -> list[str]:
    """``count`` captions naming the target class, as BadNet-style attacks write them.

    CleanCLIP and BadCLIP fill a random ImageNet template with the target class name
    (docs/protocol.md, "Poisoned captions"); here the scenario's training templates play that role.
    """
    templates = rng.integers(0, len(CAPTION_TEMPLATES), size=count)
    return [CAPTION_TEMPLATES[t].format(target_name) for t in templates]
