"""One self-contained HTML page: the report's table and its charts as embedded PNGs (readable offline)."""

from __future__ import annotations

import base64
import html
from typing import Sequence

from mltrack.cli.report_render import footnotes, table_header, table_rows
from mltrack.cli.report_stats import Group

_TITLES = {
    "cost_over_time": "Cost over time",
    "latency_distribution": "Latency distribution",
    "ttft_distribution": "Time to first token distribution",
    "tokens_per_call": "Tokens per call",
    "cached_share": "Cached-token share",
    "error_rate_over_time": "Error rate over time",
}

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.9em; }
div.table { overflow-x: auto; }
th, td { padding: 0.3em 0.6em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #999; }
p.meta, p.note { color: #555; font-size: 0.9em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def render_html(groups: Sequence[Group], total: Group | None, by: str, summary: str,
                charts: dict[str, bytes]) -> str:
    """The page: a summary line, the table (total last), its footnotes, then every chart as a data: URI."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table_header(by))
    body = []
    rows = table_rows(groups, total)
    for i, row in enumerate(rows):
        css = ' class="total"' if total is not None and i == len(rows) - 1 else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    every = list(groups) + ([total] if total is not None else [])
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in footnotes(every))
    figures = []
    for name, png in charts.items():
        title = _TITLES.get(name, name)
        data = base64.b64encode(png).decode("ascii")
        figures.append(f'<h2 id="{esc(name)}">{esc(title)}</h2>\n'
                       f'<img id="chart-{esc(name)}" alt="{esc(title)}" src="data:image/png;base64,{data}">')
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>mltrack report by {esc(by)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<h1>LLM calls by {esc(by)}</h1>", f'<p class="meta">{esc(summary)}</p>',
        f'<div class="table"><table id="report"><thead><tr>{head}</tr></thead><tbody>', *body,
        "</tbody></table></div>", notes,
        *figures, "</body>", "</html>", "",
    ])
