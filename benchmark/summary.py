"""A small table of cell results for the terminal."""

from __future__ import annotations

from tabulate import tabulate


def _pct(metric: dict | None) -> str:
    if not metric:
        return "-"
    low, high = metric["ci95"]
    return f"{100 * metric['value']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def cell_table(results: list[dict]) -> str:
    """One row per result: CA, ASR, ASR-all, RA (percent with Wilson 95% interval), the linear
    probe's accuracy when any result has one, and status. A targeted-poisoning cell's ASR is its
    success on its target images."""
    probe = any("linear_probe" in result.get("metrics", {}) for result in results)
    rows = []
    for result in results:
        cell, metrics = result["cell"], result.get("metrics", {})
        wall = sum(stage.get("wall_s", 0.0) for stage in result.get("stages", {}).values())
        rows.append((
            cell["attack"], cell["defense"], cell["seed"], _pct(metrics.get("ca_top1")),
            *((_pct(metrics.get("linear_probe")),) if probe else ()), _pct(metrics.get("asr")),
            _pct(metrics.get("asr_all")), _pct(metrics.get("ra")),
            result["status"] + (f": {result['error']}" if result.get("error") else ""),
            f"{wall:.0f}",
        ))
    headers = ("attack", "defense", "seed", "CA top-1 %", *(("linear probe %",) if probe else ()), "ASR %", "ASR-all %",
               "RA %", "status", "wall s")
    return tabulate(rows, headers=headers, tablefmt="simple")
