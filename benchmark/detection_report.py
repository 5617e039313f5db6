"""Tables and ROC curves of detection results (``clipbench detect``), built by ``clipbench report``
beside the CA/ASR tables when a results folder holds both.

A table is attack x detector, each value the mean ± std over seeds (:func:`clipbench.report.format_cell`);
the ROC figure has one panel per attack with each detector's curve, the mean true-positive rate
over seeds at each false-positive rate of the stored grid.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

#: The detection metrics tabled, with their titles.
TABLES = {
    "auroc": "Detection AUROC (%)",
    "auprc": "Detection AUPRC (%)",
    "tpr_at_fpr_5": "Detection TPR at 5% FPR (%)",
}
ROC_CAPTION = ("Detection ROC curves, one panel per attack: each detector's true-positive rate against its "
               "false-positive rate (data level: the victim split's pairs; input level: clean and triggered "
               "evaluation images), mean over seeds; the diagonal is chance.")


def is_detection(data: object) -> bool:
    """Whether a parsed JSON is a detection result."""
    return isinstance(data, dict) and data.get("kind") == "detection"


def load_detections(folder: Path) -> list[dict]:
    """Every finished detection result under ``folder`` (recursively), sorted by file name."""
    from .detection import SCHEMA_VERSION

    found = []
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # reported by the results loader
        if is_detection(data):
            if data.get("schema_version") != SCHEMA_VERSION or data.get("status") != "ok":
                warnings.warn(f"skipping {path}: a detection result of another schema (rerun clipbench detect)", stacklevel=2)
                continue
            found.append(data)
    return found


def detection_frame(detections: list[dict]) -> pd.DataFrame:
    """One row per result and metric: attack, detector, seed, metric, value."""
    settings = {(d["cell"]["preset"], d["cell"]["model"]) for d in detections}

    def attack_of(d: dict) -> str:  # several presets or models in one folder: each its own rows
        cell = d["cell"]
        return cell["attack"] if len(settings) == 1 else f"{cell['preset']}/{cell['model']}/{cell['attack']}"

    rows = [{"attack": attack_of(d), "detector": d["cell"]["detector"], "seed": d["cell"]["seed"],
             "metric": name, "value": metric["value"]}
            for d in detections for name, metric in d.get("metrics", {}).items()]
    return pd.DataFrame(rows, columns=["attack", "detector", "seed", "metric", "value"])


def detection_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Attack x detector, mean ± std over seeds of ``metric``."""
    from .report import format_cell

    subset = frame[frame["metric"] == metric]
    if subset.empty:
        return pd.DataFrame()
    stats = subset.groupby(["attack", "detector"])["value"].agg(["mean", "std", "count"]).reset_index()
    stats["cell"] = [format_cell(m, s, int(c)) for m, s, c in zip(stats["mean"], stats["std"], stats["count"])]
    table = stats.pivot(index="attack", columns="detector", values="cell").fillna("-")  # a detector not run on an attack
    return table.rename_axis(index="attack", columns="detector")


def roc_figure(detections: list[dict], out: Path) -> Path:
    """``roc_curves.png``: one panel per attack, each detector's mean ROC curve over seeds."""
    import numpy as np

    from .plots import _pyplot, _save

    plt = _pyplot()
    detections = [d for d in detections if "roc" in d]
    attacks = sorted({d["cell"]["attack"] for d in detections})
    detectors = sorted({d["cell"]["detector"] for d in detections})
    figure, axes = plt.subplots(1, len(attacks), figsize=(3.2 * len(attacks), 3.4), squeeze=False, sharey=True)
    for ax, attack in zip(axes[0], attacks):
        for i, detector in enumerate(detectors):
            curves = [d["roc"] for d in detections if d["cell"]["attack"] == attack and d["cell"]["detector"] == detector]
            if curves:
                tpr = np.mean([c["tpr"] for c in curves], axis=0)
                ax.plot(100 * np.asarray(curves[0]["fpr"]), 100 * tpr, label=f"{detector}", color=f"C{i}")
        ax.plot([0, 100], [0, 100], color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(attack)
        ax.set_xlabel("false-positive rate (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("true-positive rate (%)")
    handles, names = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, names, loc="upper center", ncol=min(5, len(names)), bbox_to_anchor=(0.5, 1.1), frameon=False)
    path = _save(figure, out / "roc_curves.png")
    plt.close(figure)
    return path


def model_level_table(detections: list[dict]) -> pd.DataFrame:
    """Model-level detectors: per detector, the score of the clean model and of each attack's
    victims (mean ± std over seeds), and the AUROC of victims against the clean model pooled over
    the folder (each clean model counted once per detector seed)."""
    from .detection_metrics import auroc

    results = [d for d in detections if d["cell"].get("level") == "model"]
    if not results:
        return pd.DataFrame()
    rows = {}
    for detector in sorted({d["cell"]["detector"] for d in results}):
        mine = [d for d in results if d["cell"]["detector"] == detector]
        clean = {(m["key"], d["detector"]["seed"]): m["score"] for d in mine for m in d["models"] if m["role"] == "clean"}
        victims = [(d["cell"]["attack"], m["score"]) for d in mine for m in d["models"] if m["role"] == "victim"]
        row = {"clean model": _mean_std(list(clean.values()))}
        for attack in sorted({a for a, _ in victims}):
            row[f"victim, {attack}"] = _mean_std([score for a, score in victims if a == attack])
        labels = [0] * len(clean) + [1] * len(victims)
        row["AUROC victims vs clean (%)"] = (f"{100 * auroc(list(clean.values()) + [s for _, s in victims], labels):.1f} "
                                             f"({len(victims)} vs {len(clean)})" if clean and victims else "-")
        rows[detector] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(index="detector")


def _mean_std(values: list[float]) -> str:
    import numpy as np

    if len(values) > 1:
        return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} (n={len(values)})"
    return f"{values[0]:.3f} (n=1)" if values else "-"


def write_detection_report(detections: list[dict], out: Path) -> tuple[list[Path], list[str], dict[str, pd.DataFrame]]:
    """The detection tables (CSV and Markdown) and the ROC figure in ``out``: the files written,
    the Markdown sections for ``tables.md`` and the tables by title for the page."""
    from .report import _write_table

    frame = detection_frame(detections)
    named = [(f"detection_{metric}", title, detection_table(frame, metric)) for metric, title in TABLES.items()]
    named.append(("detection_models", "Model-level detection: scores (higher = more suspicious)",
                  model_level_table(detections)))
    written, sections, tables = [], [], {}
    for stem, title, table in named:
        if not table.empty:
            written += _write_table(out, stem, table, latex=False)
            sections.append(f"### {title}\n\n{table.to_markdown()}\n")
            tables[title] = table
    if any("roc" in d for d in detections):
        written.append(roc_figure(detections, out))
    return written, sections, tables
