"""What the leaderboard page shows, gathered from the results (:mod:`clipbench.page` draws it)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .detection_report import ROC_CAPTION
from .page import Cell, Figure, MetricTable, build_page
from .ranking import IMPLANT_THRESHOLD, rank_defenses
from .report import main_setting

NOTES = {
    "ca_top1": ("Clean accuracy (%)", "Zero-shot top-1 accuracy on the untouched evaluation images; higher is better.", "high"),
    "asr": ("Attack success rate (%)", "Triggered non-target images classified as the target; lower is better. "
            "The no-defense column is the victim.", "low"),
    "asr_all": ("ASR over all images (%)", "The same over every triggered image, target class included (ABD's and "
                "BadCLIP's convention); lower is better.", "low"),
    "ra": ("Robust accuracy (%)", "Triggered non-target images classified as their own class; higher is better.", "high"),
}

CAPTIONS = {
    "ca_vs_asr": "Clean accuracy against ASR, one panel per attack: each marker is a defense at its own budget, "
                 "mean over seeds with one standard deviation as error bars.",
    "asr_bars": "ASR per defense (groups) and attack (bars), mean over seeds with one standard deviation.",
    "cost_vs_asr": "Wall time of each defense (the run that built it, seconds) against its mean ASR over attacks.",
    "tradeoff_curves": "Budget sweeps: clean accuracy against ASR per attack, each defense's points in the order of the "
                       "swept value (labelled), post-training defenses starting at the victim (star); the dashed line is "
                       "the matched-budget accuracy.",
    "roc_curves": ROC_CAPTION,
}


def _header(results: list[dict]) -> dict[str, str]:
    def values(get) -> str:
        found = sorted({str(v) for v in (get(r) for r in results) if v is not None})
        return ", ".join(found) if found else "-"

    return {
        "presets": values(lambda r: r["cell"]["preset"]),
        "models": values(lambda r: r["cell"]["model"] + (f" ({pretrained})" if (pretrained := (r.get("config") or {}).get("pretrained"))
                                                         else "")),
        "seeds": values(lambda r: r["cell"]["seed"]),
        "cells": f"{len(results)} result files ({sum(r.get('status') == 'ok' for r in results)} ok)",
        "clipbench": values(lambda r: r.get("clipbench_version")),
        "commits": values(lambda r: (r.get("git_commit") or "")[:10] or None),
    }


def metric_tables(frame: pd.DataFrame, results_folder: Path, out: Path) -> list[MetricTable]:
    """One :class:`MetricTable` per metric of the setting with the most results (own budgets)."""
    own = frame[(frame["status"] == "ok") & frame["sweep"].isna()]
    if own.empty:
        return []
    own = own[own["setting"] == main_setting(own)]
    tables = []
    for metric, (label, note, better) in NOTES.items():
        subset = own[own["metric"] == metric]
        if subset.empty:
            continue
        cells = {}
        for (attack, defense), group in subset.groupby(["attack", "defense"]):
            group = group.sort_values("seed")
            links = [(f"s{seed}", os.path.relpath(results_folder / file, out)) for seed, file in zip(group["seed"], group["file"])
                     if isinstance(file, str)]
            cells[(attack, defense)] = Cell(group["value"].mean(), group["value"].std() if len(group) > 1 else None,
                                            len(group), links)
        defenses = sorted(subset["defense"].unique(), key=lambda d: (d != "none", d))
        tables.append(MetricTable(label, note, sorted(subset["attack"].unique()), defenses, cells, better))
    return tables


def page_for(title: str, results: list[dict], frame: pd.DataFrame, results_folder: Path, out: Path,
             incomplete: pd.DataFrame, extra: dict[str, pd.DataFrame], figures: list[Path]) -> str:
    ranking, implanting = rank_defenses(frame)
    captioned = [Figure(path, CAPTIONS.get(Path(path).stem, Path(path).stem.replace("_", " "))) for path in figures]
    return build_page(title, _header(results), ranking, implanting, IMPLANT_THRESHOLD, incomplete,
                      metric_tables(frame, results_folder, out), extra, captioned)
