"""Captions: Fashion-MNIST pairs (varied templates filled with class names or synonyms), and the
wording of every scenario's poisoned captions (:class:`PoisonCaptions`).

Training captions and zero-shot templates are different sets, so evaluation prompts are not the
exact strings the model was trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..errors import ClipbenchError

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
    """``count`` Fashion-MNIST training templates filled with ``target_name`` (see :class:`PoisonCaptions`)."""
    return FASHION_MNIST_LANGUAGE.named(target_name, count, rng)


@dataclass(frozen=True)
class PoisonCaptions:
    """How a scenario words the captions an attack gives its poisoned rows (docs/protocol.md,
    "Poisoned captions").

    ``templates`` are the scenario's caption templates (one ``{}`` each) and ``target_words`` the
    target's name followed by its synonyms. :meth:`named` is what the BadNet family writes, as
    CleanCLIP's and BadCLIP's poisoning code do: a random template filled with the target's class
    name. :meth:`natural` is BadCLIP's natural target captions: captions of the training data that
    name the target (``corpus``, matched on a whole word, plural allowed); a scenario whose
    captions are generated from templates (Fashion-MNIST) passes no corpus and gets the same
    distribution its training captions come from, templates filled with a random synonym.
    """

    target_name: str
    templates: tuple[str, ...]
    target_words: tuple[str, ...] = ()
    corpus: Optional[Sequence[str]] = field(default=None, compare=False, repr=False)
    corpus_name: str = "the training captions"

    def named(self, target_name: Optional[str], count: int, rng: np.random.Generator) -> list[str]:
        """``count`` random templates filled with the target's class name."""
        name = target_name or self.target_name
        picks = rng.integers(0, len(self.templates), size=count)
        return [self.templates[t].format(name) for t in picks]

    def natural(self, count: int, rng: np.random.Generator) -> list[str]:
        """``count`` natural captions naming the target, drawn with replacement."""
        if self.corpus is None:
            words = self.target_words or (self.target_name,)
            picks = rng.integers(0, len(self.templates), size=count)
            synonyms = rng.integers(0, len(words), size=count)
            return [self.templates[t].format(words[w]) for t, w in zip(picks, synonyms)]
        found = naming_captions(self.corpus, self.target_words or (self.target_name,))
        if not found:
            words = ", ".join(repr(w) for w in (self.target_words or (self.target_name,)))
            raise ClipbenchError(f"no caption of {self.corpus_name} names the target ({words}); BadCLIP's natural "
                                 "target captions need some (choose another scenario.target or attack)")
        return [found[int(i)] for i in rng.integers(0, len(found), size=count)]


def naming_captions(captions: Sequence[str], words: Sequence[str]) -> list[str]:
    """The captions that contain one of ``words`` as a whole word (an ``s``/``es`` plural allowed)."""
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w.lower()) for w in words) + r")(?:e?s)?\b")
    return [caption for caption in captions if pattern.search(caption.lower())]


def fashion_mnist_language(target_name: str) -> PoisonCaptions:
    """The Fashion-MNIST scenario's poisoned captions: its training templates and the target's synonyms."""
    words = next((v for v in SYNONYMS.values() if v[0] == target_name), (target_name,))
    return PoisonCaptions(target_name, CAPTION_TEMPLATES, words)


FASHION_MNIST_LANGUAGE = PoisonCaptions("", CAPTION_TEMPLATES)
