"""CA-ASR trade-off curves of budget sweeps and the matched-budget view of them.

A curve is one defense on one attack and seed, its points ordered by the swept value (the sweep's
points and the cell at the method's own budget, :mod:`clipbench.sweep`). A post-training defense
at zero budget is the victim itself, so its curve starts at the victim's (CA, ASR).

The matched-budget ASR of a curve is the lowest ASR it reaches while its clean accuracy stays at
most ``ca_loss`` below the victim's, with CA and ASR interpolated linearly between neighbouring
points: defenses are compared at the same cost in clean accuracy instead of at their own, unequal
budgets (PAR, arXiv 2412.00727, compares CA-ASR curves for the same reason). A curve that never
falls below that accuracy within the swept values is marked "not reached": a larger budget could
lower its ASR further.
"""

from __future__ import annotations

import math

import pandas as pd

from .report import format_cell, setting_of

CURVE_COLUMNS = ("setting", "attack", "defense", "stage", "seed", "sweep", "budget", "ca", "asr", "point")


def curve_points(results: list[dict]) -> pd.DataFrame:
    """One row per point of every swept curve (finished cells only), and one per victim (``none``).

    ``point`` is ``sweep`` for a sweep's cell, ``own`` for the method's own budget (its config
    value of the swept key), ``victim`` for the no-defense cell of the same attack and seed. A
    curve belongs to a seed that was swept: a seed whose cells hold no sweep point contributes no
    ``own`` or ``victim`` point, so curves and their means are over the swept seeds only.
    """
    ok = [r for r in results if r.get("status") == "ok" and "ca_top1" in r.get("metrics", {}) and "asr" in r["metrics"]]
    settings = [setting_of(r) for r in ok]
    swept: dict[tuple, set[str]] = {}
    swept_seeds: set[tuple] = set()
    for result, setting in zip(ok, settings):
        cell = result["cell"]
        key = (cell.get("sweep") or {}).get("key")
        if key:
            swept.setdefault((setting, cell["attack"], cell["defense"], cell["seed"]), set()).add(key)
            swept_seeds.add((setting, cell["attack"], cell["seed"]))
    rows = []
    for result, setting in zip(ok, settings):
        cell, config = result["cell"], result.get("config") or {}
        base = {"setting": setting, "attack": cell["attack"], "defense": cell["defense"],
                "stage": (config.get("defense") or {}).get("stage"), "seed": cell["seed"],
                "ca": result["metrics"]["ca_top1"]["value"], "asr": result["metrics"]["asr"]["value"]}
        sweep = cell.get("sweep")
        if sweep:
            rows.append({**base, "sweep": sweep["key"], "budget": float(sweep["value"]), "point": "sweep"})
            continue
        if cell["defense"] == "none" and (setting, cell["attack"], cell["seed"]) in swept_seeds:
            rows.append({**base, "sweep": None, "budget": 0.0, "point": "victim"})
        for key in sorted(swept.get((setting, cell["attack"], cell["defense"], cell["seed"]), ())):
            value = (config.get("defense") or {}).get(key.split(".", 1)[1])
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({**base, "sweep": key, "budget": float(value), "point": "own"})
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def lowest_asr_within(points: list[tuple[float, float]], floor: float) -> tuple[float, bool]:
    """The lowest ASR on the polyline through ``points`` ((CA, ASR) in budget order) where CA >= ``floor``,
    and whether the polyline goes below ``floor`` (the allowance was used up within the sweep).

    Along a segment CA and ASR move linearly together, so the lowest admissible ASR sits at an end
    of a segment's admissible part: a point with CA >= floor, or where the segment crosses floor.
    Returns ``(nan, crossed)`` when no point keeps its CA at or above ``floor``.
    """
    candidates = [asr for ca, asr in points if ca >= floor]
    crossed = any(ca < floor for ca, _ in points)
    for (ca_a, asr_a), (ca_b, asr_b) in zip(points, points[1:]):
        if (ca_a - floor) * (ca_b - floor) < 0:
            t = (ca_a - floor) / (ca_a - ca_b)
            candidates.append(asr_a + t * (asr_b - asr_a))
    return (min(candidates) if candidates else math.nan), crossed


def matched_budget(points: pd.DataFrame, ca_loss: float = 0.01) -> pd.DataFrame:
    """Per curve (setting, attack, defense, swept key, seed): the victim's CA, the matched-budget
    ASR at ``ca_loss`` (a fraction: 0.01 is one point of accuracy) and whether it was reached."""
    columns = ["setting", "attack", "defense", "sweep", "seed", "victim_ca", "asr", "reached"]
    if points.empty:
        return pd.DataFrame(columns=columns)
    victims = points[points["point"] == "victim"].set_index(["setting", "attack", "seed"])
    rows = []
    curves = points[points["point"] != "victim"]
    for (setting, attack, defense, sweep, seed), curve in curves.groupby(["setting", "attack", "defense", "sweep", "seed"]):
        if (setting, attack, seed) not in victims.index:
            continue
        victim = victims.loc[(setting, attack, seed)]
        victim = victim.iloc[0] if isinstance(victim, pd.DataFrame) else victim
        ordered = curve.drop_duplicates("budget").sort_values("budget")
        line = [(row.ca, row.asr) for row in ordered.itertuples()]
        if (ordered["stage"] == "post_training").all():
            line = [(victim["ca"], victim["asr"])] + line  # zero budget: the victim as it is
        asr, crossed = lowest_asr_within(line, victim["ca"] - ca_loss)
        rows.append({"setting": setting, "attack": attack, "defense": defense, "sweep": sweep, "seed": seed,
                     "victim_ca": victim["ca"], "asr": asr, "reached": crossed})
    return pd.DataFrame(rows, columns=columns)


def matched_table(matched: pd.DataFrame) -> pd.DataFrame:
    """Attack x defense (swept key) of the matched-budget ASR in percent, "mean ± std (n seeds)";
    "†" where a seed's curve did not use up the accuracy allowance within the swept values, "-"
    where no measured point kept the accuracy."""
    if matched.empty:
        return pd.DataFrame()
    rows = ["setting", "attack"] if matched["setting"].nunique() > 1 else ["attack"]

    def fmt(group: pd.DataFrame) -> str:
        values = group["asr"].dropna()
        if values.empty:
            return "-"
        mark = "" if group["reached"].all() else " †"
        return format_cell(values.mean(), values.std(), len(values)) + mark

    labelled = matched.assign(column=matched["defense"] + " (" + matched["sweep"] + ")")
    cells = [dict(zip(rows + ["column"], key if isinstance(key, tuple) else (key,)), cell=fmt(group))
             for key, group in labelled.groupby(rows + ["column"])]
    return pd.DataFrame(cells).pivot(index=rows, columns="column", values="cell").fillna("-")
