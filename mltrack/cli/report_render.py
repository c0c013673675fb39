"""The report's tables as text, CSV and JSON (one column set, three renderings)."""

from __future__ import annotations

import csv
import io
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Sequence

from mltrack.cli.report_stats import Group

_MIN_SIGNIFICANT = 3
_MAX_SIGNIFICANT = 6


def format_usd(value: Decimal) -> str:
    """Money for people: ``$`` and at least two decimals and three significant digits, more when the exact
    value has them (up to six): ``$1.00``, ``$0.000150``, ``$0.0003525``, ``$1234.57``.

    Rounded half up. (The report's own formatter, to be unified with the CLI's shared one: that one stops at
    three significant digits, which would print 0.0003525 as $0.000353.)"""
    value = Decimal(value)
    if value == 0:
        return "$0.00"
    sign = "-" if value < 0 else ""
    value = abs(value)
    magnitude = value.adjusted()  # exponent of the leading digit: 0.00015 -> -4, 12.3 -> 1
    exact = value.normalize()
    exact_decimals = max(0, -exact.as_tuple().exponent)  # type: ignore[operator]
    min_decimals = max(2, _MIN_SIGNIFICANT - 1 - magnitude)
    max_decimals = max(2, _MAX_SIGNIFICANT - 1 - magnitude)
    decimals = min(max(min_decimals, exact_decimals), max_decimals)
    return f"{sign}${value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP):f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cost_cell(group: Group) -> str:
    if not group.priced:
        return "unpriced"
    return format_usd(group.cost) + ("*" if group.unpriced_calls else "")


COLUMNS = ("calls", "errors", "error_rate", "prompt_tokens", "completion_tokens", "total_tokens",
           "cached_prompt_tokens", "cached_share", "cost_usd", "unpriced_calls", "latency_p50_ms", "latency_p95_ms",
           "ttft_p50_ms", "ttft_p95_ms")


def group_record(group: Group) -> dict[str, Any]:
    """One group as plain data: exact cost as a decimal string (null when no call was priced), rates as fractions."""
    return {
        "calls": group.calls, "errors": group.errors, "error_rate": group.error_rate,
        "prompt_tokens": group.prompt_tokens, "completion_tokens": group.completion_tokens,
        "total_tokens": group.total_tokens, "cached_prompt_tokens": group.cached_prompt_tokens,
        "cached_share": group.cached_share, "cost_usd": f"{group.cost:f}" if group.priced else None,
        "unpriced_calls": group.unpriced_calls, "latency_p50_ms": group.latency_p50,
        "latency_p95_ms": group.latency_p95, "ttft_p50_ms": group.ttft_p50, "ttft_p95_ms": group.ttft_p95,
    }


def table_rows(groups: Sequence[Group], total: Group | None) -> list[tuple[str, ...]]:
    """The text table's cells (also what the HTML page shows), one tuple per group, the total last."""
    rows = []
    for g in list(groups) + ([total] if total is not None else []):
        rows.append((g.key, str(g.calls), f"{g.error_rate:.1%}", str(g.prompt_tokens), str(g.completion_tokens),
                     str(g.total_tokens), f"{g.cached_share:.1%}", _cost_cell(g), _ms(g.latency_p50),
                     _ms(g.latency_p95), _ms(g.ttft_p50), _ms(g.ttft_p95)))
    return rows


def table_header(by: str) -> tuple[str, ...]:
    return (by, "calls", "error rate", "prompt tok", "completion tok", "total tok", "cached", "cost",
            "latency p50 ms", "latency p95 ms", "TTFT p50 ms", "TTFT p95 ms")


def footnotes(groups: Sequence[Group]) -> list[str]:
    """What a reader must know to read the cost column right."""
    notes = []
    if any(g.unpriced_calls and g.priced for g in groups):
        notes.append("* some calls of this group have no known price: their cost is not included")
    if any(not g.priced for g in groups):
        notes.append("unpriced: no call of this group has a known price (add one under 'pricing:' in .mltrack.yml)")
    return notes


def render_table(groups: Sequence[Group], total: Group | None, by: str) -> str:
    """A fixed-width text table, the total row last."""
    rows = [table_header(by)] + table_rows(groups, total)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    if total is not None:
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines + footnotes(list(groups) + ([total] if total is not None else [])))


def render_csv(groups: Sequence[Group], total: Group | None, by: str) -> str:
    """CSV with exact figures (cost as an exact decimal, empty when unpriced), the total row last."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((by,) + COLUMNS)
    for g in list(groups) + ([total] if total is not None else []):
        record = group_record(g)
        writer.writerow([g.key] + ["" if record[c] is None else record[c] for c in COLUMNS])
    return out.getvalue()


def render_json(groups: Sequence[Group], total: Group | None, by: str, meta: dict[str, Any]) -> str:
    """JSON: the window and experiments, then one object per group and the total."""
    doc = dict(meta)
    doc["by"] = by
    doc["groups"] = [{"key": g.key, **group_record(g)} for g in groups]
    doc["total"] = None if total is None else group_record(total)
    return json.dumps(doc, indent=2)
