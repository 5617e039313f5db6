"""Figures of the leaderboard (matplotlib, written as PNG): CA against ASR per attack, grouped ASR
bars per defense and attack, and defense cost against ASR."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .atomic import atomic_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _means(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    subset = frame[(frame["metric"] == metric) & (frame["status"] == "ok")]
    return subset.groupby(["attack", "defense"])["value"].agg(["mean", "std"]).reset_index()


def _save(figure, path: Path) -> Path:
    with atomic_file(path) as tmp:
        figure.savefig(tmp, dpi=130, bbox_inches="tight")
    return path


def ca_vs_asr(frame: pd.DataFrame, out: Path) -> Path:
    """One panel per attack: CA (y) against ASR (x), one marker per defense, seed std as error bars."""
    plt = _pyplot()
    ca, asr = _means(frame, "ca_top1"), _means(frame, "asr")
    joined = ca.merge(asr, on=["attack", "defense"], suffixes=("_ca", "_asr"))
    attacks = sorted(joined["attack"].unique())
    defenses = sorted(joined["defense"].unique())
    markers = "osD^vP*Xh<>"
    figure, axes = plt.subplots(1, len(attacks), figsize=(3.2 * len(attacks), 3.2), squeeze=False, sharey=True)
    for ax, attack in zip(axes[0], attacks):
        rows = joined[joined["attack"] == attack]
        for i, defense in enumerate(defenses):
            row = rows[rows["defense"] == defense]
            if row.empty:
                continue
            ax.errorbar(100 * row["mean_asr"], 100 * row["mean_ca"], xerr=100 * row["std_asr"].fillna(0),
                        yerr=100 * row["std_ca"].fillna(0), fmt=markers[i % len(markers)], label=defense, capsize=2)
        ax.set_title(attack)
        ax.set_xlabel("ASR (%)")
        ax.set_xlim(-5, 105)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("clean accuracy (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(defenses), bbox_to_anchor=(0.5, 1.08), frameon=False)
    path = _save(figure, out / "ca_vs_asr.png")
    plt.close(figure)
    return path


def asr_bars(frame: pd.DataFrame, out: Path) -> Path:
    """Grouped bars: ASR per defense (groups) and attack (bars), seed std as error bars."""
    plt = _pyplot()
    asr = _means(frame, "asr")
    table = asr.pivot(index="defense", columns="attack", values="mean") * 100
    errors = asr.pivot(index="defense", columns="attack", values="std").fillna(0) * 100
    figure, ax = plt.subplots(figsize=(1.2 + 0.9 * len(table) * max(1, len(table.columns)) / 3, 3.4))
    table.plot.bar(ax=ax, yerr=errors, capsize=2, rot=0, width=0.8)
    ax.set_ylabel("ASR (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="attack", fontsize=7, ncol=3)
    path = _save(figure, out / "asr_bars.png")
    plt.close(figure)
    return path


def cost_vs_asr(frame: pd.DataFrame, out: Path) -> Path:
    """Defense wall time (s) against mean ASR over attacks, one point per defense."""
    plt = _pyplot()
    asr = frame[(frame["metric"] == "asr") & (frame["status"] == "ok")]
    summary = asr.groupby("defense").agg(asr=("value", "mean"), cost=("defense_wall_s", "mean")).reset_index()
    figure, ax = plt.subplots(figsize=(4.2, 3.2))
    ax.scatter(summary["cost"], 100 * summary["asr"])
    for _, row in summary.iterrows():
        ax.annotate(row["defense"], (row["cost"], 100 * row["asr"]), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("defense wall time (s)")
    ax.set_ylabel("mean ASR over attacks (%)")
    ax.grid(alpha=0.3)
    path = _save(figure, out / "cost_vs_asr.png")
    plt.close(figure)
    return path


def all_plots(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Every figure, drawn for the setting with the most results when a folder mixes settings."""
    if frame.empty or "metric" not in frame or frame[frame["metric"] == "asr"].empty:
        return []
    if frame["setting"].nunique() > 1:
        frame = frame[frame["setting"] == frame["setting"].value_counts().idxmax()]
    return [ca_vs_asr(frame, out), asr_bars(frame, out), cost_vs_asr(frame, out)]
