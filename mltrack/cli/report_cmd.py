"""``mltrack report``: calls, error rate, tokens, cached share, cost, latency and TTFT per model / provider / tag,
over some experiments and a time window; as a table, CSV or JSON, with PNG charts and a self-contained HTML page."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path
from typing import Any, TextIO

from mltrack.cli.report_data import collect, is_duration, parse_since, resolve_experiments
from mltrack.cli.report_render import render_csv, render_json, render_table
from mltrack.cli.report_stats import TOTAL, group_by, key_function, summarize


class _ProgressBar:
    """One line on a terminal's stderr, redrawn in place; silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream, self.label = stream, label
        self.active = bool(getattr(stream, "isatty", lambda: False)())
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.active or total <= 0:
            return
        percent = done * 100 // total
        if percent == self._last and done != total:
            return
        self._last = percent
        filled = percent * 30 // 100
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} runs")
        if done == total:
            self.stream.write("\r" + " " * (len(self.label) + 50) + "\r")
        self.stream.flush()


def _client(args: argparse.Namespace) -> tuple[Any, str | None]:
    from mlflow import MlflowClient

    from mltrack.config import get_settings

    settings = get_settings()
    return MlflowClient(tracking_uri=args.tracking_uri or settings.tracking_uri), settings.experiment_name


def _summary(rows: list, experiments: list, since: _dt.datetime | None, args: argparse.Namespace) -> str:
    window = "all time"
    if since is not None:
        start = since.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        window = f"since {start} UTC" + (f" (the last {args.since.strip()})" if is_duration(args.since) else "")
    names = ", ".join(e.name for e in experiments)
    plural = "s" if len(experiments) != 1 else ""
    runs = len(set(r.run_id for r in rows))
    return (f"{len(rows)} call{'s' if len(rows) != 1 else ''} in {runs} run{'s' if runs != 1 else ''}, {window}, "
            f"experiment{plural} {names}")


def cmd_report(args: argparse.Namespace) -> int:
    fmt = "json" if args.json else args.format
    key_function(args.by)  # a bad --by (or a missing matplotlib) fails before any store is read
    if args.plot or args.html:
        from mltrack.cli.report_plots import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            print(f"mltrack: {exc}", file=sys.stderr)
            return 2
    since = parse_since(args.since)
    client, default_experiment = _client(args)
    experiments = resolve_experiments(client, args.experiment or [], args.all_experiments, default_experiment)
    rows = collect(client, [e.experiment_id for e in experiments], since,
                   progress=_ProgressBar(sys.stderr, "mltrack report: reading calls"))
    groups = group_by(rows, args.by)
    total = summarize(TOTAL, rows) if rows else None
    summary = _summary(rows, experiments, since, args)
    if fmt == "json":
        meta = {"experiments": [e.name for e in experiments], "since": since.isoformat() if since else None,
                "runs": len(set(r.run_id for r in rows))}
        print(render_json(groups, total, args.by, meta))
    elif fmt == "csv":
        print(render_csv(groups, total, args.by), end="")
    else:
        print(summary + "\n")
        print(render_table(groups, total, args.by) if groups else "no LLM calls found")
    if args.plot or args.html:
        from mltrack.cli.report_plots import render_charts, write_charts

        charts = render_charts(rows, args.by, [g.key for g in groups])
        # Where the charts went goes to stderr when stdout carries CSV/JSON, so the data stays parseable.
        notice = sys.stderr if fmt != "table" else sys.stdout
        if args.plot:
            for path in write_charts(charts, Path(args.plot)):
                print(f"wrote {path}", file=notice)
        if args.html:
            from mltrack.cli.report_html import render_html

            page = Path(args.html)
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(render_html(groups, total, args.by, summary, charts), encoding="utf-8")
            print(f"wrote {page}", file=notice)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="calls, tokens, cost, latency and errors per model/provider/tag")
    report.add_argument("--experiment", action="append", metavar="NAME",
                        help="experiment name; repeat it or give a comma list for several "
                             "(default: the configured experiment_name, else Default)")
    report.add_argument("--all-experiments", action="store_true", help="every active experiment of the store")
    report.add_argument("--since", help="only calls made in this window: a duration such as 30m, 12h, 7d, 2w, "
                                        "or an ISO date/time such as 2026-12-01 (UTC unless it names a zone)")
    report.add_argument("--by", default="model", help="model (default), provider, or tag:NAME (a run tag, "
                                                      "e.g. tag:prompt_version for an A/B comparison)")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output (default table)")
    report.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # kept: same as --format json
    report.add_argument("--tracking-uri", help="MLflow tracking URI (default: configured)")
    report.add_argument("--plot", metavar="DIR", help="also write the charts as PNG files into DIR")
    report.add_argument("--html", metavar="FILE", help="also write one self-contained HTML page (tables and charts)")
    report.set_defaults(func=cmd_report)
