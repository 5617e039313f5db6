"""SafeCLIP's image-caption similarity as a detector (Yang et al., ICML 2024, arXiv 2310.05862):
SafeCLIP fits a two-component Gaussian mixture to the cosine similarity of every training pair's
image and caption and trains the low-similarity component as risky. As a detector its score is
the similarity itself, negated: the detection metrics rank pairs by it over every threshold,
where the mixture places one. Scored with the embeddings of the model SafeCLIP
splits with, the clean model after its unimodal warm-up; here the clean model itself, as the
warm-up belongs to SafeCLIP's training, not to its scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.registry import register_detector

from .base import DataDetector, PairEmbeddings


@dataclass(frozen=True)
class SimilarityConfig:
    """No settings: the score is the pair's cosine similarity, negated."""


@register_detector("similarity")
class CaptionSimilarity(DataDetector):
    Config = SimilarityConfig
    embedding_model = "clean"
    description = "a pair's image-caption cosine similarity under the clean model, negated (SafeCLIP's split)"
    source = "SafeCLIP, Yang et al. ICML 2024 (arXiv 2310.05862)"
    provenance = "adapted: the split's score, not its training"

    def score(self, inputs: PairEmbeddings):
        import torch.nn.functional as F

        images, texts = F.normalize(inputs.images.double(), dim=1), F.normalize(inputs.texts.double(), dim=1)
        return (-(images * texts).sum(dim=1)).numpy()
