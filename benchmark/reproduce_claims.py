"""Reproduce a paper's headline claims rather than a results table: RoCLIP's (and SafeCLIP's)
pre-training comparison, CLIP vs the defense under targeted data poisoning and a backdoor.

The claims are data (``published/roclip_claims.csv``: each row its source, where it is stated, the
metric, the defense and the value; a claim without a number has an empty value). The measured
side comes from the cells of ``attacks x rows x seeds``: targeted-poisoning success on the
targeted cells, backdoor ASR (target class excluded, clipbench's primary ASR; the papers count a
triggered image as a success when it is classified as the target) on the backdoor cells, and
zero-shot CA and linear-probe accuracy averaged over all cells of a row; the differences to the
no-defense row are what the claims of "+10% linear probe" and "similar zero-shot" are read against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .registry import REPRODUCTIONS
from .reproduce import Reproduction, TableRow, _fmt, _mean, _std, bar_figure, formatted, write_tables

CLAIMS_CSV = Path(__file__).parent / "published" / "roclip_claims.csv"
ROCLIP = "RoCLIP (arXiv 2303.06854v2)"
SAFECLIP = "SafeCLIP (arXiv 2310.05862v2)"


@dataclass(frozen=True)
class ClaimsReproduction(Reproduction):
    """Claims of ``source`` (and its sibling papers) measured on ``attacks`` (``targeted`` and the
    backdoor ``backdoor``) x ``rows``; ``claim_source`` maps a row's defense to the paper whose
    claims it is read against (default: ``source``)."""

    claim_source: dict[str, str] = field(default_factory=dict)
    backdoor: str = "badnet"

    def compare(self, results: list[dict], claims: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per defense: measured means (and standard deviations over seeds) beside the claims."""
        claims = published_claims() if claims is None else claims
        rows = []
        for row in self.rows:
            mine = [r for r in results if r["cell"]["defense"] == row.defense and r["status"] == "ok"]
            targeted = [100 * r["metrics"]["asr"]["value"] for r in mine if r["cell"]["attack"] == "targeted"]
            backdoor = [100 * r["metrics"]["asr"]["value"] for r in mine if r["cell"]["attack"] == self.backdoor]
            ca = [100 * r["metrics"]["ca_top1"]["value"] for r in mine]
            probe = [100 * r["metrics"]["linear_probe"]["value"] for r in mine if "linear_probe" in r["metrics"]]
            source = self.claim_source.get(row.defense, self.source)
            rows.append({
                "defense": row.label, "cells": len(mine),
                "failed": sum(1 for r in results if r["cell"]["defense"] == row.defense and r["status"] != "ok"),
                "targeted_success": _mean(targeted), "targeted_success_std": _std(targeted),
                "targeted_success_claimed": _claim(claims, "targeted_success", row.defense),
                "backdoor_asr": _mean(backdoor), "backdoor_asr_std": _std(backdoor),
                "backdoor_asr_claimed": _claim(claims, "backdoor_asr", row.defense),
                "ca": _mean(ca), "ca_std": _std(ca), "linear_probe": _mean(probe), "linear_probe_std": _std(probe),
                "linear_probe_gain_claimed": _claim(claims, "linear_probe_gain", row.defense, source),
                "claims_from": source,
            })
        table = pd.DataFrame(rows)
        base = table.iloc[0]
        table["ca_vs_no_defense"] = table["ca"] - base["ca"]
        table["linear_probe_vs_no_defense"] = table["linear_probe"] - base["linear_probe"]
        return table

    def paper_shape(self, table: pd.DataFrame) -> pd.DataFrame:
        """``measured (claimed)`` per metric, one row per defense."""
        def cell(value, claimed):
            return f"{_fmt(value)} ({_fmt(claimed)})"

        return pd.DataFrame([{
            "defense": r["defense"],
            "targeted success %": cell(r["targeted_success"], r["targeted_success_claimed"]),
            f"{self.backdoor} ASR %": cell(r["backdoor_asr"], r["backdoor_asr_claimed"]),
            "CA %": _fmt(r["ca"]), "CA vs none": _signed(r["ca_vs_no_defense"], i),
            "linear probe %": _fmt(r["linear_probe"]),
            "linear probe vs none": f"{_signed(r['linear_probe_vs_no_defense'], i)} ({_signed(r['linear_probe_gain_claimed'], 1)})",
        } for i, (_, r) in enumerate(table.iterrows())])

    def terminal(self, table: pd.DataFrame) -> str:
        from tabulate import tabulate

        return tabulate(self.paper_shape(table), headers="keys", tablefmt="simple", showindex=False)

    def write(self, table: pd.DataFrame, setting: str, out: Path) -> dict[str, Path]:
        """Markdown (claims layout, long form, the claims' sources), CSV and a figure."""
        from tabulate import tabulate

        claims = published_claims()
        sections = [
            f"# {self.name}: {self.description}",
            f"Measured: {setting}. Claimed: the abstracts of {ROCLIP} and {SAFECLIP} (CC3M, from scratch). Cells read "
            "`measured (claimed)`, in %; a claim the papers state without a number is `—`. Targeted success: the "
            "share of target images classified as their adversarial class; backdoor ASR excludes target-class "
            "images; CA and linear probe are the means over every cell of the row (both attacks, all seeds); "
            "`vs none` is the difference to the row without a defense, in points.",
            tabulate(self.paper_shape(table), headers="keys", tablefmt="github", showindex=False),
            "## Long form",
            tabulate(formatted(table, ["cells", "failed"]), headers="keys", tablefmt="github", showindex=False),
            "## The claims",
            tabulate(claims.astype(object).where(claims.notna(), ""), headers="keys", tablefmt="github", showindex=False),
        ]
        panels = [(title, table[metric], table[f"{metric}_claimed"], table[f"{metric}_std"].fillna(0))
                  for metric, title in (("targeted_success", "targeted poisoning success"),
                                        ("backdoor_asr", f"{self.backdoor} ASR"))]
        return write_tables(out, sections, table, lambda path: bar_figure(
            path, f"{self.name}: measured vs claimed", "%", list(table["defense"]), panels, other="claimed",
            figsize=(8, 3.4)))


def published_claims(path: Path = CLAIMS_CSV) -> pd.DataFrame:
    """The papers' stated numbers (source, where stated, metric, defense, value, note)."""
    return pd.read_csv(path)


def _claim(claims: pd.DataFrame, metric: str, defense: str, source: str | None = None) -> float:
    hit = claims[(claims["metric"] == metric) & (claims["defense"] == defense)]
    if source is not None:
        hit = hit[hit["source"] == source]
    values = hit["value"].dropna()
    return float(values.iloc[0]) if len(values) else np.nan


def _signed(value: float, index: int) -> str:
    if index == 0 or value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return f"{value:+.1f}"


REPRODUCTIONS.register("roclip")(ClaimsReproduction(
    "roclip", ROCLIP, "abstract",
    "CLIP vs RoCLIP and SafeCLIP pre-trained from scratch on poisoned data: targeted poisoning, a BadNet backdoor, "
    "zero-shot and linear-probe accuracy",
    ("targeted", "badnet"),
    (TableRow("CLIP (none)", "none"), TableRow("roclip", "roclip"), TableRow("safeclip", "safeclip")),
    default_preset="tiny-pretrain", claim_source={"none": ROCLIP, "roclip": ROCLIP, "safeclip": SAFECLIP},
    backdoor="badnet",
))
