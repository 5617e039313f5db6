"""Tables from stored results: a pure function of the result JSONs in a folder.

``load_results`` reads every ``*.json`` (a corrupt or foreign file is skipped with a warning that
names it); ``long_form`` flattens them into one row per cell and metric; ``pivot`` builds
attack x defense tables of mean ± std over seeds; ``write_report`` writes them as CSV, Markdown
and LaTeX.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from .atomic import write_text
from .detection_report import is_detection
from .results import SCHEMA_VERSION

METRICS = ("ca_top1", "linear_probe", "asr", "asr_all", "ra")  # a metric no result has gets no table
REPORT_META = "generated.json"  # the report's build time and version, kept apart from its tables and page
LABELS = {"ca_top1": "CA", "linear_probe": "Linear probe", "asr": "ASR", "asr_all": "ASR (all)", "ra": "RA"}


def load_results(folder: Path) -> list[dict]:
    """Every clipbench result JSON under ``folder`` (recursively), sorted by cell name."""
    results = []
    for path in sorted(Path(folder).rglob("*.json")):
        if path.name == REPORT_META:  # a report built inside the results folder
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            warnings.warn(f"skipping {path}: not readable JSON ({error})", stacklevel=2)
            continue
        if is_detection(data):  # tabled by clipbench.detection_report
            continue
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION or "cell" not in data:
            warnings.warn(f"skipping {path}: not a clipbench result (schema {SCHEMA_VERSION})", stacklevel=2)
            continue
        data["_file"] = str(path.relative_to(Path(folder)))  # where it was read from (not stored): the page links to it
        results.append(data)
    return sorted(results, key=lambda r: r["cell"]["name"])


def setting_of(result: dict) -> str:
    """The setting a cell belongs to: preset, model, pretrained weights and ``--set`` overrides.

    A budget sweep's own value is not part of it: a sweep point shares the setting of the cells
    it is compared with.
    """
    cell = result["cell"]
    config = result.get("config") or {}
    overrides = {section: dict(values) for section, values in (config.get("overrides") or {}).items()}
    sweep = (cell.get("sweep") or {}).get("key")
    if sweep:
        section, key = sweep.split(".", 1)
        overrides.get(section, {}).pop(key, None)
    overrides = {section: values for section, values in overrides.items() if values}
    pretrained = config.get("pretrained")
    return f"{cell['preset']}/{cell['model']}" + (f"/{pretrained}" if pretrained else "") + (
        " " + json.dumps(overrides, sort_keys=True) if overrides else "")


def main_setting(frame: pd.DataFrame) -> str:
    """The setting with the most rows: what figures, the ranking and the page's tables show when
    a folder mixes settings."""
    return frame["setting"].value_counts().idxmax()


def long_form(results: list[dict]) -> pd.DataFrame:
    """One row per (cell, metric): value, interval, counts, status, the cost of the defense, and
    the sweep key and value of a budget sweep's point (empty for the method's own budget)."""
    rows = []
    for result in results:
        cell = result["cell"]
        defense_stage = result.get("stages", {}).get("defense", {})
        cost = defense_stage.get("build", {}) or defense_stage
        base = {k: cell[k] for k in ("preset", "model", "attack", "defense", "seed")}
        base["setting"] = setting_of(result)
        sweep = cell.get("sweep") or {}
        base.update({"sweep": sweep.get("key"), "budget": sweep.get("value"), "file": result.get("_file")})
        base.update({"status": result["status"], "provenance": (result.get("provenance") or {}).get("defense"),
                     "defense_wall_s": cost.get("wall_s"), "defense_peak_rss_mib": cost.get("peak_rss_mib")})
        if result["status"] != "ok":
            rows.append({**base, "metric": None, "value": None, "error": result.get("error")})
            continue
        for name, metric in result["metrics"].items():
            rows.append({**base, "metric": name, "value": metric["value"], "ci_low": metric["ci95"][0],
                         "ci_high": metric["ci95"][1], "successes": metric["successes"], "total": metric["total"]})
        for name, metric in result.get("clean_model_metrics", {}).items():
            rows.append({**base, "metric": f"clean_model_{name}", "value": metric["value"], "ci_low": metric["ci95"][0],
                         "ci_high": metric["ci95"][1], "successes": metric["successes"], "total": metric["total"]})
    return pd.DataFrame(rows)


def pivot(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Attack x defense table of ``metric`` in percent, "mean ± std (n seeds)", at each method's
    own budget (points of budget sweeps are on the curves instead, :mod:`clipbench.curves`).

    Only seeds of the same setting (preset, model, pretrained weights, ``--set`` overrides) are
    averaged; when a folder holds several settings, each gets its own rows.
    """
    subset = frame[(frame["metric"] == metric) & (frame["status"] == "ok") & frame["sweep"].isna()]
    if subset.empty:
        return pd.DataFrame()
    rows = ["setting", "attack"] if subset["setting"].nunique() > 1 else ["attack"]
    grouped = subset.groupby(rows + ["defense"])["value"].agg(["mean", "std", "count"]).reset_index()

    grouped["cell"] = grouped.apply(lambda row: format_cell(row["mean"], row["std"], int(row["count"])), axis=1)
    return grouped.pivot(index=rows, columns="defense", values="cell").fillna("-")


def incomplete_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Every failed cell with its error, and every missing one: per setting, each combination of
    the attacks, defenses and seeds found in the folder that has no result (sweep points aside)."""
    columns = ["setting", "attack", "defense", "seed", "status", "reason"]
    own = frame[frame["sweep"].isna()] if "sweep" in frame else frame
    if own.empty:
        return pd.DataFrame(columns=columns)
    cells = own.drop_duplicates(["setting", "attack", "defense", "seed"])
    rows = [{**{k: row[k] for k in columns[:4]}, "status": row["status"], "reason": row.get("error") or "failed"}
            for _, row in cells[cells["status"] != "ok"].iterrows()]
    for setting, group in cells.groupby("setting"):
        present = set(zip(group["attack"], group["defense"], group["seed"]))
        for attack in sorted(group["attack"].unique()):
            for defense in sorted(group["defense"].unique()):
                for seed in sorted(group["seed"].unique()):
                    if (attack, defense, seed) not in present:
                        rows.append({"setting": setting, "attack": attack, "defense": defense, "seed": seed,
                                     "status": "missing", "reason": "no result file in the folder"})
    return pd.DataFrame(rows, columns=columns).sort_values(["status", "attack", "defense", "seed"]).reset_index(drop=True)


def clean_model_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The clean model's CA and ASR under each attack's trigger, once per attack (every cell of an
    attack and seed reads the same clean model), mean ± std over seeds."""
    subset = frame[frame["metric"].isin(["clean_model_ca_top1", "clean_model_asr"]) & (frame["status"] == "ok")]
    if subset.empty:
        return pd.DataFrame()
    rows = ["setting", "attack"] if subset["setting"].nunique() > 1 else ["attack"]
    once = subset.drop_duplicates(rows + ["seed", "metric"])
    table = once.groupby(rows + ["metric"])["value"].agg(["mean", "std", "count"]).reset_index()
    table["cell"] = table.apply(lambda row: format_cell(row["mean"], row["std"], int(row["count"])), axis=1)
    wide = table.pivot(index=rows, columns="metric", values="cell")
    wide = wide[[c for c in ("clean_model_ca_top1", "clean_model_asr") if c in wide]]
    return wide.rename(columns={"clean_model_ca_top1": "clean model CA", "clean_model_asr": "clean model ASR"})


def format_cell(mean: float, std: float, count: int) -> str:
    """Percent, "mean ± std (n=k)"; a single seed has no spread to show."""
    if count > 1 and not pd.isna(std):
        return f"{100 * mean:.1f} ± {100 * std:.1f} (n={count})"
    return f"{100 * mean:.1f} (n={count})"


def _write_table(out: Path, stem: str, table: pd.DataFrame, latex: bool = True) -> list[Path]:
    paths = [out / f"{stem}.csv", out / f"{stem}.md"]
    write_text(paths[0], table.to_csv())
    write_text(paths[1], table.to_markdown() + "\n")
    if latex:
        paths.append(out / f"{stem}.tex")
        write_text(paths[2], table.to_latex())
    return paths


def write_report(results_folder: Path, out: Path, title: str = "clipbench leaderboard", ca_loss: float = 0.01) -> list[Path]:
    """Write the long-form CSV, one pivot per metric (CSV, Markdown, LaTeX), the clean model's
    numbers, the failed and missing cells, the figures and a self-contained HTML page into
    ``out``; with budget sweeps among the results, also their curve points and the matched-budget
    table at ``ca_loss`` (:mod:`clipbench.curves`)."""
    from .curves import curve_points, matched_budget, matched_table
    from .detection_report import load_detections, write_detection_report
    from .page_data import page_for

    results = load_results(results_folder)
    detections = load_detections(results_folder)
    out.mkdir(parents=True, exist_ok=True)
    detection_files, detection_sections, detection_tables = write_detection_report(detections, out)
    if not results:  # a folder of detection results only: their tables and ROC curves
        write_text(out / "tables.md", "\n".join(detection_sections))
        return detection_files + [out / "tables.md", _write_meta(out, results_folder, len(detections))]
    frame = long_form(results)
    written = [out / "results_long.csv"]
    write_text(written[0], frame.to_csv(index=False))
    sections = []
    incomplete = incomplete_cells(frame)
    if not incomplete.empty:
        shown = incomplete.drop(columns="setting") if incomplete["setting"].nunique() == 1 else incomplete
        write_text(out / "incomplete_cells.md", shown.to_markdown(index=False) + "\n")
        written.append(out / "incomplete_cells.md")
        sections.append(f"### Failed or missing cells ({len(incomplete)}): not in the tables below\n\n"
                        f"{shown.to_markdown(index=False)}\n")
    for metric in METRICS:
        table = pivot(frame, metric)
        if not table.empty:
            written += _write_table(out, f"pivot_{metric}", table)
            sections.append(f"### {LABELS[metric]} (%)\n\n{table.to_markdown()}\n")
    clean = clean_model_table(frame)
    if not clean.empty:
        written += _write_table(out, "clean_model", clean)
        sections.append(f"### Clean model under each attack's trigger (%)\n\n{clean.to_markdown()}\n")
    points = curve_points(results)
    matched = matched_table(matched_budget(points, ca_loss))
    matched_label = f"ASR at matched budget: at most {100 * ca_loss:g} point(s) of CA below the victim (%)"
    if not matched.empty:
        write_text(out / "curve_points.csv", points.to_csv(index=False))
        written += [out / "curve_points.csv"] + _write_table(out, "matched_budget", matched, latex=False)
        sections.append(f"### {matched_label}\n\n{matched.to_markdown()}\n\n† a seed's curve kept its accuracy over "
                        "the whole sweep: a larger budget may lower its ASR further.\n")
    write_text(out / "tables.md", "\n".join(sections + detection_sections))
    written.append(out / "tables.md")
    from .plots import all_plots

    figures = all_plots(frame, out, points, ca_loss) + [p for p in detection_files if p.suffix == ".png"]
    written += figures + [p for p in detection_files if p.suffix != ".png"]
    extra = {"Clean model under each attack's trigger (%)": clean} if not clean.empty else {}
    if not matched.empty:
        extra[matched_label] = matched
    extra.update(detection_tables)
    write_text(out / "index.html", page_for(title, results, frame, Path(results_folder), out, incomplete, extra, figures))
    written.append(out / "index.html")
    written.append(_write_meta(out, results_folder, len(results) + len(detections)))
    return written


def _write_meta(out: Path, results_folder: Path, count: int) -> Path:
    import datetime

    from . import __version__
    from .atomic import write_json

    return write_json(out / REPORT_META, {"generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                          "clipbench_version": __version__, "results": str(results_folder), "cells": count})
