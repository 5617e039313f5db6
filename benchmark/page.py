"""A self-contained HTML page of the leaderboard: tables and figures embedded (no external files)."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def build_page(title: str, tables: dict[str, "object"], figures: list[Path], notes: str = "") -> str:
    """HTML with one table per entry of ``tables`` (pandas DataFrames) and the PNG ``figures`` inlined."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f3f3f3}img{max-width:100%;margin:1em 0}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Built by <code>clipbench report</code> from the result files alone (the build time is in "
        "<code>generated.json</code>, so an unchanged leaderboard rebuilds to the same page). "
        "Cells: mean ± std over seeds (n = number of seeds), in percent.</p>",
    ]
    if notes:
        parts.append(f"<p>{html.escape(notes)}</p>")
    for name, table in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(table.to_html(escape=True))
    for figure in figures:
        encoded = base64.b64encode(Path(figure).read_bytes()).decode()
        parts.append(f"<h2>{html.escape(Path(figure).stem.replace('_', ' '))}</h2>")
        parts.append(f"<img alt='{html.escape(Path(figure).stem)}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
