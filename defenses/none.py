"""No defense: the poisoned victim is evaluated as it is (the "Victim" column of ABD's Table I)."""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.registry import register_defense

from .base import Defense


@dataclass(frozen=True)
class NoDefenseConfig:
    """No settings."""


@register_defense("none")
class NoDefense(Defense):
    Config = NoDefenseConfig
    stage = "post_training"
    description = "no defense: evaluate the poisoned victim"
    source = "baseline"
    needs_clean_pairs = False

    def run(self, context):
        return None
