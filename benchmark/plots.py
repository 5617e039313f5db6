"""Figures of the leaderboard (matplotlib, written as PNG): CA against ASR per attack, grouped ASR
bars per defense and attack, defense cost against ASR, and the CA-ASR curves of budget sweeps."""

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


def tradeoff_curves(points: pd.DataFrame, out: Path, ca_loss: float) -> Path:
    """One panel per attack: each swept defense's curve of mean CA (y) against mean ASR (x) over
    seeds, its points in budget order (labelled with the swept value), starting at the victim for
    post-training defenses; the victim as a star and the matched-budget accuracy as a dashed line."""
    plt = _pyplot()
    means = points.groupby(["attack", "defense", "sweep", "budget", "point"], dropna=False)[["ca", "asr"]].mean().reset_index()
    victims = means[means["point"] == "victim"]
    curves = means[means["point"] != "victim"]
    attacks = sorted(curves["attack"].unique())
    labels = sorted({(d, k) for d, k in zip(curves["defense"], curves["sweep"])})
    figure, axes = plt.subplots(1, len(attacks), figsize=(3.6 * len(attacks), 3.6), squeeze=False, sharey=True)
    for ax, attack in zip(axes[0], attacks):
        victim = victims[victims["attack"] == attack]
        for i, (defense, key) in enumerate(labels):
            curve = curves[(curves["attack"] == attack) & (curves["defense"] == defense) & (curves["sweep"] == key)]
            curve = curve.groupby("budget")[["ca", "asr"]].mean().reset_index().sort_values("budget")
            if curve.empty:
                continue
            stage = points[(points["defense"] == defense)]["stage"].iloc[0]
            xs, ys = list(100 * curve["asr"]), list(100 * curve["ca"])
            if stage == "post_training" and not victim.empty:
                xs, ys = [100 * victim["asr"].iloc[0]] + xs, [100 * victim["ca"].iloc[0]] + ys
            ax.plot(xs, ys, marker="os^vDP*Xh"[i % 9], markersize=4, label=f"{defense} ({key})")
            for budget, x, y in zip(curve["budget"], xs[-len(curve):], ys[-len(curve):]):
                ax.annotate(f"{budget:g}", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        if not victim.empty:
            ax.plot(100 * victim["asr"], 100 * victim["ca"], "k*", markersize=10, label="victim (no defense)")
            ax.axhline(100 * (victim["ca"].iloc[0] - ca_loss), color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(attack)
        ax.set_xlabel("ASR (%)")
        ax.set_xlim(-5, 105)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("clean accuracy (%)")
    handles, names = [], []
    for ax in axes[0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    figure.legend(handles, names, loc="upper center", ncol=min(4, len(names)), bbox_to_anchor=(0.5, 1.12), frameon=False)
    path = _save(figure, out / "tradeoff_curves.png")
    plt.close(figure)
    return path


def all_plots(frame: pd.DataFrame, out: Path, points: pd.DataFrame | None = None, ca_loss: float = 0.01) -> list[Path]:
    """Every figure, drawn for the setting with the most results when a folder mixes settings; the
    trade-off curves when ``points`` (:func:`clipbench.curves.curve_points`) hold a sweep."""
    if frame.empty or "metric" not in frame or frame[frame["metric"] == "asr"].empty:
        return []
    own = frame[frame["sweep"].isna()]
    frame = own if not own.empty else frame
    from .report import main_setting

    setting = main_setting(frame)
    frame = frame[frame["setting"] == setting]
    figures = [ca_vs_asr(frame, out), asr_bars(frame, out), cost_vs_asr(frame, out)]
    if points is not None and not points.empty:
        points = points[points["setting"] == setting]
        if (points["point"] != "victim").any():
            figures.append(tradeoff_curves(points, out, ca_loss))
    return figures
