"""The leaderboard page: one self-contained HTML file (figures inlined, a few lines of script for
sorting and filtering, nothing fetched from the network; it works from ``file://``).

What it shows, top to bottom: a header with the setting (presets, models, seeds, versions), the
ranking of defenses (:mod:`clipbench.ranking`), failed and missing cells, one table per metric
(attack x defense, mean ± std over seeds, the best defense of each row marked, each value linked
to the result files it averages), the clean model's numbers once per attack, further tables
(the matched-budget view of sweeps), and the figures with captions saying what they plot.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3;cursor:pointer;user-select:none;white-space:nowrap}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td:first-child,th:first-child{text-align:left}
td.best{font-weight:bold;background:#e3f4e3}
td a{color:#555;font-size:10px;margin-left:3px;text-decoration:none}
input.filter{margin:.3em 0;padding:2px 6px;width:18em}
dl.header{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:14px}
dl.header dt{font-weight:bold}figure{margin:1.5em 0}figcaption{font-size:13px;color:#444;max-width:900px}
img{max-width:100%}p.note{font-size:13px;color:#444;max-width:900px}
"""

SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, column){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var ascending = !th.classList.contains('sorted-asc');
      table.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(ascending ? 'sorted-asc' : 'sorted-desc');
      function key(row){var cell=row.cells[column]; var v=cell.getAttribute('data-sort');
        if(v===null){v=cell.textContent.trim();} var n=parseFloat(v); return isNaN(n)?v.toLowerCase():n;}
      rows.sort(function(a,b){var x=key(a),y=key(b); if(x===y){return 0;}
        if(typeof x!==typeof y){return (typeof x==='number'?-1:1)*(ascending?1:-1);} return (x<y?-1:1)*(ascending?1:-1);});
      rows.forEach(function(row){body.appendChild(row);});
    });
  });
});
document.querySelectorAll('input.filter').forEach(function(input){
  var table = document.getElementById(input.getAttribute('data-table'));
  input.addEventListener('input', function(){
    var query = input.value.toLowerCase();
    Array.from(table.tBodies[0].rows).forEach(function(row){
      row.style.display = row.textContent.toLowerCase().indexOf(query) >= 0 ? '' : 'none';});
  });
});
"""


@dataclass
class Cell:
    """One value of a metric table: mean and spread over seeds (fractions), and its result files."""

    mean: float
    std: Optional[float]
    n: int
    links: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        if self.n > 1 and self.std is not None:
            return f"{100 * self.mean:.1f} ± {100 * self.std:.1f} (n={self.n})"
        return f"{100 * self.mean:.1f} (n={self.n})"


@dataclass
class MetricTable:
    """Attack rows x defense columns of :class:`Cell`; ``better`` marks the best defense per row."""

    label: str
    note: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    better: Optional[str] = None  # "low", "high" or None


@dataclass
class Figure:
    path: Path
    caption: str


def _filter(table_id: str) -> str:
    return f"<input class='filter' data-table='{table_id}' placeholder='filter rows…' aria-label='filter rows'>"


def _frame_table(frame: pd.DataFrame, table_id: str) -> str:
    """A plain DataFrame as a sortable, filterable table (index as the first columns)."""
    flat = frame.reset_index() if frame.index.name or any(frame.index.names) else frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in flat.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in flat.itertuples(index=False))
    return f"{_filter(table_id)}<table class='sortable' id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metric_table(table: MetricTable, table_id: str) -> str:
    head = "<th>attack</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        candidates = {c: table.cells[(row, c)].mean for c in table.columns if (row, c) in table.cells and c != "none"}
        best = None
        if table.better and candidates:
            pick = min if table.better == "low" else max
            best = pick(candidates, key=candidates.get)
        tds = [f"<td>{html.escape(row)}</td>"]
        for column in table.columns:
            cell = table.cells.get((row, column))
            if cell is None:
                tds.append("<td data-sort=''>-</td>")
                continue
            links = "".join(f"<a href='{html.escape(href)}' title='result file of {html.escape(label)}'>{html.escape(label)}</a>"
                            for label, href in cell.links)
            marker = " class='best'" if column == best else ""
            tds.append(f"<td{marker} data-sort='{cell.mean:.6f}'>{html.escape(cell.text())}{links}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f"<h3>{html.escape(table.label)}</h3><p class='note'>{html.escape(table.note)}</p>{_filter(table_id)}"
            f"<table class='sortable' id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _ranking(ranking: pd.DataFrame, attacks: list[str], threshold: float) -> str:
    if ranking.empty:
        return "<p class='note'>No ranking: it needs the no-defense cells and at least one attack that implants.</p>"

    def spread(mean: float, std: Optional[float], n: int) -> str:
        return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if n > 1 and std is not None and pd.notna(std) else "")

    body = "".join(
        f"<tr><td>{i + 1}</td><td>{html.escape(row.defense)}</td><td data-sort='{row.asr_mean:.6f}'>"
        f"{spread(row.asr_mean, row.asr_std, row.seeds)}</td><td data-sort='{row.ca_drop_mean:.6f}'>"
        f"{spread(row.ca_drop_mean, row.ca_drop_std, row.seeds)}</td><td>{row.seeds}</td></tr>"
        for i, row in enumerate(ranking.itertuples()))
    note = (f"Mean over the attacks that implant (victim ASR at least {100 * threshold:.0f}%: {', '.join(attacks)}), "
            "per seed, then mean ± std over seeds. CA drop: the victim's clean accuracy minus the defended model's, in points. "
            "Ordered by ASR, then CA drop.")
    return (f"<h2>Ranking of defenses</h2><p class='note'>{html.escape(note)}</p>{_filter('ranking')}"
            "<table class='sortable' id='ranking'><thead><tr><th>rank</th><th>defense</th><th>ASR (%)</th>"
            f"<th>CA drop (points)</th><th>seeds</th></tr></thead><tbody>{body}</tbody></table>")


def build_page(title: str, header: dict[str, str], ranking: pd.DataFrame, implanting: list[str], threshold: float,
               incomplete: pd.DataFrame, metrics: list[MetricTable], extra: dict[str, pd.DataFrame],
               figures: list[Figure]) -> str:
    """The page's HTML (deterministic: the same inputs give the same bytes)."""
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><dl class='header'>"]
    parts += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in header.items()]
    parts.append("</dl><p class='note'>Built by <code>clipbench report</code> from the result files alone; the build "
                 "time is in <code>generated.json</code>, so an unchanged leaderboard rebuilds to the same page. Values "
                 "are percentages, mean ± std over seeds (n seeds); click a column to sort, type to filter; the small "
                 "links after a value open the result files it averages.</p>")
    parts.append(_ranking(ranking, implanting, threshold))
    if not incomplete.empty:
        parts.append(f"<h2>Failed or missing cells ({len(incomplete)})</h2><p class='note'>Not in the tables below.</p>")
        parts.append(_frame_table(incomplete.drop(columns=[c for c in ("setting",) if incomplete[c].nunique() == 1]),
                                  "incomplete"))
    parts.append("<h2>Tables</h2>")
    for i, table in enumerate(metrics):
        parts.append(_metric_table(table, f"metric{i}"))
    for i, (label, frame) in enumerate(extra.items()):
        parts.append(f"<h3>{html.escape(label)}</h3>{_frame_table(frame, f'extra{i}')}")
    if figures:
        parts.append("<h2>Figures</h2>")
    for figure in figures:
        encoded = base64.b64encode(Path(figure.path).read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(figure.caption)}' src='data:image/png;base64,{encoded}'>"
                     f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)
