"""Fashion-MNIST captions that vary beyond the class name (``scenario.captions=attributes``).

Template captions ("a photo of a handbag.") carry nothing but the class, so every image of a
class has the same few captions: nearest-caption matching (RoCLIP) becomes a pseudo-label, and
EDA only shuffles template words. These captions add what can be read off the pixels of each
image, binned into words at thresholds taken from the 60,000 training images (terciles, so each
word covers about a third of them):

- tone: the mean grey level of the item's pixels (above 10 of 255): dark, grey, light;
- size: the share of the 28 x 28 frame the item covers: small, medium-sized, large;
- texture: the mean absolute difference between neighbouring item pixels: smooth, textured,
  patterned.

Position is left out: Fashion-MNIST centres every item, so it would say nothing. Each caption is
a random template with one to three attribute slots, filled with the image's words and a random
synonym of its class. The zero-shot task (class names and templates) is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .captions import SYNONYMS

FOREGROUND = 10  # grey levels above this are the item, below it the black background

TONE = ("dark", "grey", "light")
SIZE = ("small", "medium-sized", "large")
TEXTURE = ("smooth", "textured", "patterned")

#: Templates with attribute slots; ``{noun}`` is a synonym of the class.
ATTRIBUTE_TEMPLATES = (
    "a photo of a {tone} {noun}.",
    "a {size} {noun} on a plain background.",
    "a {tone}, {texture} {noun}.",
    "a product shot of a {size}, {tone} {noun}.",
    "a grayscale picture of a {texture} {noun}.",
    "a {size} {texture} {noun} in a catalogue.",
    "my new {tone} {noun}, {size} and {texture}.",
    "a low resolution photo of a {texture}, {tone} {noun}.",
    "this {noun} is {tone} and {size}.",
    "a {tone} {noun} with a {texture} surface.",
)


def measurements(images: np.ndarray) -> np.ndarray:
    """``N x 3`` per image: mean item grey level, item area share, mean neighbour difference in the item."""
    pixels = images.astype(np.float32)
    item = pixels > FOREGROUND
    area = item.sum(axis=(1, 2))
    safe = np.maximum(area, 1)
    tone = (pixels * item).sum(axis=(1, 2)) / safe
    dx = np.abs(np.diff(pixels, axis=2)) * (item[:, :, 1:] & item[:, :, :-1])
    dy = np.abs(np.diff(pixels, axis=1)) * (item[:, 1:, :] & item[:, :-1, :])
    texture = (dx.sum(axis=(1, 2)) + dy.sum(axis=(1, 2))) / safe
    return np.stack([tone, area / (images.shape[1] * images.shape[2]), texture], axis=1)


@dataclass(frozen=True)
class AttributeBins:
    """Tercile thresholds of each measurement (two per attribute)."""

    edges: np.ndarray  # 3 x 2

    @classmethod
    def fit(cls, images: np.ndarray) -> "AttributeBins":
        return cls(np.quantile(measurements(images), [1 / 3, 2 / 3], axis=0).T)

    def words(self, images: np.ndarray) -> list[tuple[str, str, str]]:
        """(tone, size, texture) words of each image (a value at a threshold takes the lower word)."""
        values = measurements(images)
        bins = np.stack([np.searchsorted(self.edges[i], values[:, i], side="left") for i in range(3)], axis=1)
        return [(TONE[t], SIZE[s], TEXTURE[x]) for t, s, x in bins]


def attribute_captions(images: np.ndarray, labels: np.ndarray, classnames: tuple[str, ...], bins: AttributeBins,
                       rng: np.random.Generator) -> list[str]:
    """One caption per image: a random attribute template, the image's words, a random synonym."""
    templates = rng.integers(0, len(ATTRIBUTE_TEMPLATES), size=len(labels))
    picks = rng.integers(0, 1 << 30, size=len(labels))
    captions = []
    for (tone, size, texture), label, template, pick in zip(bins.words(images), labels, templates, picks):
        synonyms = SYNONYMS[classnames[int(label)]]
        captions.append(ATTRIBUTE_TEMPLATES[template].format(tone=tone, size=size, texture=texture,
                                                             noun=synonyms[pick % len(synonyms)]))
    return captions
