"""Regenerate a paper's results table: measured cells beside the published numbers.

A :class:`Reproduction` names the attacks and the table's defense rows (a clipbench defense plus
config overrides, e.g. ABD without EDA for the "patch only" ablation). The published numbers are
data (``published/paper_results.csv``, each row with its source), never literals in code.

The ABD paper's ASR counts every triggered image, target-class images included (docs/protocol.md,
"ASR and accuracy definitions"), so the published ASR is compared with clipbench's ``asr_all``;
the primary ``asr`` (target class excluded) is shown beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .atomic import atomic_file, write_text
from .registry import REPRODUCTIONS

PUBLISHED_CSV = Path(__file__).parent / "published" / "paper_results.csv"
ABD_SOURCE = "ABD (arXiv 2409.15968)"


@dataclass(frozen=True)
class TableRow:
    """One defense row of a paper table: its published label and how clipbench runs it."""

    label: str
    defense: str
    overrides: dict[str, str] = field(default_factory=dict)
    published_table: str = ""


@dataclass(frozen=True)
class Reproduction:
    """A published table: its source, attacks (rows of the paper's table) and defense columns.

    Every reproduction (:mod:`clipbench.reproduce_claims` too) answers ``requests`` (its cells),
    ``compare`` (measured beside published), ``terminal`` and ``write``, and names the preset it
    runs on by default."""

    name: str
    source: str
    table: str
    description: str
    attacks: tuple[str, ...]
    rows: tuple[TableRow, ...]
    default_preset: str = "tiny"

    def requests(self, preset: str, seeds: Iterable[int], model: str | None, pretrained: str | None,
                 overrides: dict[str, dict[str, str]]) -> list:
        return cell_requests(self, preset, seeds, model, pretrained, overrides)

    def compare(self, results: list[dict]) -> pd.DataFrame:
        return side_by_side(self, results)

    def terminal(self, table: pd.DataFrame) -> str:
        from tabulate import tabulate

        return "\n".join([
            "cells read measured (published), %; ASR counts target-class images",
            tabulate(paper_shape(table, self), headers="keys", tablefmt="simple", showindex=False),
            tabulate(table[["attack", "defense", "ca_diff", "asr_diff", "asr_measured"]].round(1),
                     headers=("attack", "defense", "CA measured - published", "ASR measured - published",
                              "ASR excl. target"), tablefmt="simple", showindex=False)])

    def write(self, table: pd.DataFrame, setting: str, out: Path) -> dict[str, Path]:
        return write_outputs(table, self, setting, out)


def _register(reproduction: Reproduction) -> Reproduction:
    REPRODUCTIONS.register(reproduction.name)(reproduction)
    return reproduction


_ABD_ATTACKS = ("badnet", "blended", "badclip")
_ABD_FULL = TableRow("abd", "abd", {}, "Table I")

_register(Reproduction(
    "abd-table1", ABD_SOURCE, "Table I", "ABD Table I: no defense, RoCLIP, CleanCLIP and ABD against three attacks",
    _ABD_ATTACKS,
    (TableRow("none", "none", {}, "Table I"), TableRow("roclip", "roclip", {}, "Table I"),
     TableRow("cleanclip", "cleanclip", {}, "Table I"), _ABD_FULL),
))
_register(Reproduction(
    "abd-table2", ABD_SOURCE, "Table II", "ABD Table II: fine-tuning, the adversarial patch alone, EDA alone (and full ABD)",
    _ABD_ATTACKS,
    (TableRow("finetune", "finetune", {}, "Table II"),
     TableRow("abd[adv-patch only]", "abd", {"use_eda": "false"}, "Table II"),
     TableRow("abd[eda only]", "abd", {"use_patch": "false"}, "Table II"), _ABD_FULL),
))
_register(Reproduction(
    "abd-table3", ABD_SOURCE, "Table III", "ABD Table III: a plain UAP without the backdoor loss (and full ABD)",
    _ABD_ATTACKS,
    (TableRow("abd[plain UAP no backdoor loss]", "abd", {"backdoor_loss": "false"}, "Table III"), _ABD_FULL),
))


def published_numbers(path: Path = PUBLISHED_CSV) -> pd.DataFrame:
    """The published table rows (source, table, attack, defense label, CA, ASR, ASR definition)."""
    return pd.read_csv(path)


def cell_requests(reproduction: Reproduction, preset: str, seeds: Iterable[int], model: str | None,
                  pretrained: str | None, overrides: dict[str, dict[str, str]]) -> list:
    """One :class:`~clipbench.cells.CellRequest` per attack x row x seed (row overrides win)."""
    from .cells import CellRequest

    requests = []
    for seed in seeds:
        for attack in reproduction.attacks:
            for row in reproduction.rows:
                merged = {section: dict(values) for section, values in overrides.items()}
                if row.overrides:
                    merged["defense"] = {**merged.get("defense", {}), **row.overrides}
                requests.append(CellRequest(preset=preset, attack=attack, defense=row.defense, seed=seed, model=model,
                                            pretrained=pretrained, overrides=merged))
    return requests


def _row_label(reproduction: Reproduction, result: dict) -> str:
    """The table row a result belongs to: its defense and the row's override values."""
    given = ((result.get("config") or {}).get("overrides") or {}).get("defense", {})
    candidates = [row for row in reproduction.rows if row.defense == result["cell"]["defense"]]
    keys = {key for row in candidates for key in row.overrides}
    for row in candidates:
        if all(given.get(key) == row.overrides.get(key) for key in keys):
            return row.label
    return result["cell"]["defense"]


def side_by_side(reproduction: Reproduction, results: list[dict], published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long table: per attack and row, measured mean/std over seeds beside the published numbers (%)."""
    published = published_numbers() if published is None else published
    measured: dict[tuple[str, str], dict[str, list[float]]] = {}
    failed: dict[tuple[str, str], int] = {}
    for result in results:
        key = (result["cell"]["attack"], _row_label(reproduction, result))
        if result["status"] != "ok":
            failed[key] = failed.get(key, 0) + 1
            continue
        values = measured.setdefault(key, {"ca": [], "asr_all": [], "asr": []})
        values["ca"].append(100 * result["metrics"]["ca_top1"]["value"])
        values["asr_all"].append(100 * result["metrics"]["asr_all"]["value"])
        values["asr"].append(100 * result["metrics"]["asr"]["value"])
    rows = []
    for attack in reproduction.attacks:
        for row in reproduction.rows:
            values = measured.get((attack, row.label), {"ca": [], "asr_all": [], "asr": []})
            match = published[(published["source"] == reproduction.source) & (published["table"] == row.published_table)
                              & (published["attack"] == attack) & (published["defense"] == row.label)]
            pub_ca = float(match["clean_acc"].iloc[0]) if len(match) else np.nan
            pub_asr = float(match["asr"].iloc[0]) if len(match) else np.nan
            ca, asr_all = _mean(values["ca"]), _mean(values["asr_all"])
            rows.append({
                "attack": attack, "defense": row.label, "seeds": len(values["ca"]), "failed": failed.get((attack, row.label), 0),
                "ca_measured": ca, "ca_std": _std(values["ca"]), "ca_published": pub_ca, "ca_diff": ca - pub_ca,
                "asr_all_measured": asr_all, "asr_all_std": _std(values["asr_all"]), "asr_published": pub_asr,
                "asr_diff": asr_all - pub_asr, "asr_measured": _mean(values["asr"]),
                "published_source": f"{reproduction.source}, {row.published_table}" if len(match) else "",
            })
    return pd.DataFrame(rows)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else np.nan


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else np.nan


def _fmt(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.1f}"


def paper_shape(table: pd.DataFrame, reproduction: Reproduction) -> pd.DataFrame:
    """The paper's layout: one row per attack, CA and ASR per defense as ``measured (published)``."""
    out = []
    for attack in reproduction.attacks:
        line = {"attack": attack}
        for row in reproduction.rows:
            hit = table[(table["attack"] == attack) & (table["defense"] == row.label)].iloc[0]
            line[f"{row.label} CA"] = f"{_fmt(hit['ca_measured'])} ({_fmt(hit['ca_published'])})"
            line[f"{row.label} ASR"] = f"{_fmt(hit['asr_all_measured'])} ({_fmt(hit['asr_published'])})"
        out.append(line)
    return pd.DataFrame(out)


def formatted(table: pd.DataFrame, counts: list[str]) -> pd.DataFrame:
    """``table`` with every number but the ``counts`` columns as text to one decimal (``—`` for none)."""
    view = table.copy()
    numeric = view.select_dtypes("number").columns.difference(counts)
    view[numeric] = view[numeric].map(_fmt)
    return view


def write_tables(out: Path, sections: list[str], table: pd.DataFrame, figure) -> dict[str, Path]:
    """``table.md`` (the ``sections``), ``table.csv`` (``table``) and ``figure.png`` (drawn by
    ``figure(path)``) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "table.md", "csv": out / "table.csv", "figure": out / "figure.png"}
    write_text(paths["markdown"], "\n\n".join(sections) + "\n")
    write_text(paths["csv"], table.to_csv(index=False))
    figure(paths["figure"])
    return paths


def bar_figure(path: Path, title: str, ylabel: str, labels: list[str], panels: list[tuple], other: str = "published",
               figsize: tuple[float, float] = (8, 3.6), rotate: bool = False) -> None:
    """Measured beside ``other`` bars per label, one panel per ``(title, measured, other, error)``
    (``error``: the measured bars' error bars, or ``None``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=figsize, sharey=True)
    axes = np.atleast_1d(axes)
    x = np.arange(len(labels))
    for ax, (name, measured, published, error) in zip(axes, panels):
        ax.bar(x - 0.2, measured, 0.4, yerr=error, label="measured", color="#d62728")
        ax.bar(x + 0.2, published, 0.4, label=other, color="#7f7f7f")
        if rotate:
            ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
            ax.set_title(name)
        else:
            ax.set_xticks(x, labels)
            ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 105)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_outputs(table: pd.DataFrame, reproduction: Reproduction, setting: str, out: Path) -> dict[str, Path]:
    """Markdown (paper layout + long table), CSV and a figure of measured vs published numbers."""
    from tabulate import tabulate

    sections = [
        f"# {reproduction.name}: {reproduction.description}",
        f"Measured: {setting}. Published: {reproduction.source}, {reproduction.table} (RN50, CC3M, ImageNet-1K val). "
        "Cells read `measured (published)`, in %. ASR is the paper's definition (target-class images counted, "
        "`asr_all`); `asr_measured` in the long table excludes them (clipbench's primary ASR).",
        tabulate(paper_shape(table, reproduction), headers="keys", tablefmt="github", showindex=False),
        "## Long form",
        tabulate(formatted(table.drop(columns=["published_source"]), ["seeds", "failed"]), headers="keys",
                 tablefmt="github", showindex=False),
    ]
    labels = [row.label for row in reproduction.rows]
    parts = {attack: table[table["attack"] == attack].set_index("defense").reindex(labels) for attack in reproduction.attacks}
    panels = [(attack, part["asr_all_measured"], part["asr_published"], None) for attack, part in parts.items()]
    return write_tables(out, sections, table, lambda path: bar_figure(
        path, f"{reproduction.name}: measured vs published ASR", "ASR incl. target class (%)", labels, panels,
        figsize=(4 * len(panels), 3.6), rotate=True))
