"""``mltrack traces search FILTER`` and ``mltrack traces correlate FILTER1 FILTER2`` (docs/insights.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any


def usd(value: Decimal | None) -> str:
    """Money with at least two decimals, more for sub-cent amounts (``$1.00``, ``$0.000150``)."""
    if value is None:
        return "-"
    return f"${value:.2f}" if abs(value) >= Decimal("0.01") or value == 0 else f"${value:.6f}"


def fmt_npmi(value: float | None) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:+.3f}"


def _trace_row(trace: Any) -> tuple[str, ...]:
    from mltrack.insights._views import view_of_trace

    view = view_of_trace(trace)
    stamp = dt.datetime.fromtimestamp(view.timestamp_ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    llm_calls = sum(1 for s in view.spans if s.type == "LLM")
    return (view.trace_id, stamp, view.status, "-" if view.execution_time_ms is None else str(view.execution_time_ms),
            view.name or "-", str(len(view.spans)), str(llm_calls),
            "-" if view.total_tokens is None else str(view.total_tokens), usd(view.total_cost))


def table(header: tuple[str, ...], rows: list[tuple[str, ...]], left: int = 1) -> str:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned, the rest right-aligned."""
    everything = [header, *rows]
    widths = [max(len(r[i]) for r in everything) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     .rstrip() for r in everything)


def cmd_search(args: argparse.Namespace) -> int:
    from mltrack.insights import search_traces

    traces = search_traces(args.filter, experiment=args.experiment, order_by=args.order_by or None,
                           max_results=args.max_results)
    rows = [_trace_row(t) for t in traces]
    if args.json:
        keys = ("trace_id", "timestamp", "status", "execution_time_ms", "name", "spans", "llm_calls", "total_tokens",
                "total_cost")
        print(json.dumps([dict(zip(keys, r)) for r in rows], indent=2))
        return 0
    print(f"{len(rows)} traces match {args.filter!r}" + (" (the limit: --max-results)" if len(rows) == args.max_results
                                                         else ""))
    if rows:
        print()
        print(table(("trace_id", "timestamp (UTC)", "status", "ms", "name", "spans", "llm_calls", "tokens", "cost"),
                    rows, left=3))
    return 0


def cmd_correlate(args: argparse.Namespace) -> int:
    from mltrack.insights import calculate_trace_filter_correlation

    result = calculate_trace_filter_correlation(args.filter1, args.filter2, experiment=args.experiment,
                                                base_filter=args.base_filter)
    if args.json:
        print(json.dumps({"npmi": result.npmi, "npmi_smoothed": result.npmi_smoothed,
                          "filter_string1_count": result.filter_string1_count,
                          "filter_string2_count": result.filter_string2_count, "joint_count": result.joint_count,
                          "total_count": result.total_count}, indent=2))
        return 0
    print(table(("", "traces"), [("filter 1: " + args.filter1, str(result.filter_string1_count)),
                                 ("filter 2: " + args.filter2, str(result.filter_string2_count)),
                                 ("both", str(result.joint_count)),
                                 ("all" + (f" (matching {args.base_filter})" if args.base_filter else ""),
                                  str(result.total_count))]))
    print(f"\nNPMI {fmt_npmi(result.npmi)}   smoothed NPMI {fmt_npmi(result.npmi_smoothed)}"
          "   (-1 never together, 0 independent, +1 always together)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    traces = sub.add_parser("traces", help="search traces and correlate conditions (mltrack's filter language)")
    verbs = traces.add_subparsers(dest="traces_command", required=True)
    search = verbs.add_parser("search", help="traces matching a filter, e.g. \"count(span.type = 'LLM') > 3\"")
    search.add_argument("filter", help="the filter (see docs/insights.md)")
    search.add_argument("--experiment", help="experiment name (default: configured experiment_name, else Default)")
    search.add_argument("--max-results", type=int, default=1000, help="at most this many traces (default 1000)")
    search.add_argument("--order-by", action="append", help="e.g. 'execution_time_ms DESC' (repeatable)")
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.set_defaults(func=cmd_search)
    correlate = verbs.add_parser("correlate", help="NPMI of two filters over the experiment's traces")
    correlate.add_argument("filter1")
    correlate.add_argument("filter2")
    correlate.add_argument("--experiment", help="experiment name (default: configured experiment_name, else Default)")
    correlate.add_argument("--base-filter", help="count only the traces matching this filter")
    correlate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    correlate.set_defaults(func=cmd_correlate)
