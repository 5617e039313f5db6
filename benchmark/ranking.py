"""The ranking of defenses on the leaderboard page.

A defense's rank comes from two numbers, each averaged over the attacks that implant (the
victim's mean ASR over seeds at least ``implant_threshold``; an attack that does not implant says
nothing about a defense) and then summarised over seeds as mean ± std:

- its ASR (lower is better): the mean over those attacks of the cell's ASR, per seed;
- its cost in clean accuracy: the mean over the same attacks of the victim's CA minus the
  defended model's CA on the same attack and seed (for a training-time defense, which never sees
  the victim, the same difference against the victim it replaces).

Defenses are ordered by mean ASR, then by CA drop. A seed counts only where the defense has a
result on every implanting attack, so no defense is averaged over an easier subset.
"""

from __future__ import annotations

import pandas as pd

from .report import main_setting

IMPLANT_THRESHOLD = 0.9  # the bar an attack must clear to count as implanted on `tiny` (README, "Calibration")


def _table(own: pd.DataFrame, metric: str) -> pd.DataFrame:
    subset = own[own["metric"] == metric]
    return subset.pivot_table(index=["attack", "seed"], columns="defense", values="value", aggfunc="first")


def rank_defenses(frame: pd.DataFrame, implant_threshold: float = IMPLANT_THRESHOLD) -> tuple[pd.DataFrame, list[str]]:
    """The ranking (one row per defense) and the attacks it averages over, for the setting with
    the most results; empty when the folder has no ``none`` cells to read the victim from."""
    columns = ["defense", "asr_mean", "asr_std", "ca_drop_mean", "ca_drop_std", "seeds"]
    own = frame[(frame["status"] == "ok") & frame["sweep"].isna()] if "sweep" in frame else frame[frame["status"] == "ok"]
    if own.empty or "none" not in set(own["defense"]):
        return pd.DataFrame(columns=columns), []
    own = own[own["setting"] == main_setting(own)]
    asr, ca = _table(own, "asr"), _table(own, "ca_top1")
    if "none" not in asr:
        return pd.DataFrame(columns=columns), []
    victim = asr["none"].groupby(level="attack").mean()
    attacks = sorted(victim[victim >= implant_threshold].index)
    if not attacks:
        return pd.DataFrame(columns=columns), []
    rows = []
    for defense in sorted(set(asr.columns) - {"none"}):
        per_seed = []
        for seed in sorted(asr.index.get_level_values("seed").unique()):
            keys = [(attack, seed) for attack in attacks]
            if not all(key in asr.index and pd.notna(asr.loc[key, defense]) and pd.notna(ca.loc[key, "none"]) for key in keys):
                continue
            per_seed.append((sum(asr.loc[key, defense] for key in keys) / len(keys),
                             sum(ca.loc[key, "none"] - ca.loc[key, defense] for key in keys) / len(keys)))
        if not per_seed:
            continue
        seeds = pd.DataFrame(per_seed, columns=["asr", "drop"])
        rows.append({"defense": defense, "asr_mean": seeds["asr"].mean(), "asr_std": seeds["asr"].std() if len(seeds) > 1 else None,
                     "ca_drop_mean": seeds["drop"].mean(), "ca_drop_std": seeds["drop"].std() if len(seeds) > 1 else None,
                     "seeds": len(seeds)})
    ranking = pd.DataFrame(rows, columns=columns).sort_values(["asr_mean", "ca_drop_mean"]).reset_index(drop=True)
    return ranking, attacks
