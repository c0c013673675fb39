"""``mltrack report``: calls, tokens, cost, latency p50/p95 and error rate per model / provider / tag."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mltrack.cli.money import format_usd
from mltrack.cli.report_data import Group, collect, group_by, parse_window


def _client_and_experiments(args: argparse.Namespace) -> tuple[object, list[str]]:
    from mlflow import MlflowClient

    from mltrack.config import get_settings

    settings = get_settings()
    client = MlflowClient(tracking_uri=args.tracking_uri or settings.tracking_uri)
    name = args.experiment or settings.experiment_name
    if name is None:
        return client, ["0"]
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise ValueError(f"no experiment named {name!r} at {client.tracking_uri}")
    return client, [experiment.experiment_id]


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_table(groups: list[Group], by: str) -> str:
    header = (by, "calls", "errors", "error_rate", "prompt_tok", "completion_tok", "total_tok", "cost_usd",
              "p50_ms", "p95_ms")
    rows = [header] + [(
        g.key, str(g.calls), str(g.errors), f"{g.error_rate:.1%}", str(g.prompt_tokens), str(g.completion_tokens),
        str(g.total_tokens), format_usd(g.cost) + ("*" if g.unpriced_calls else ""), _fmt_ms(g.latency_p50),
        _fmt_ms(g.latency_p95)) for g in groups]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    if any(g.unpriced_calls for g in groups):
        lines.append("* some calls had no known price and are not in the cost")
    return "\n".join(lines)


def write_plots(groups: list[Group], by: str, folder: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('mltrack report --plot needs matplotlib: pip install "mltrack[plot]"') from exc
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    charts = [("cost_usd", [float(g.cost) for g in groups]), ("total_tokens", [g.total_tokens for g in groups]),
              ("latency_p95_ms", [g.latency_p95 or 0.0 for g in groups]), ("calls", [g.calls for g in groups])]
    for name, values in charts:
        fig, ax = plt.subplots(figsize=(9, max(2.5, 1.0 + 0.4 * len(groups))))
        ax.barh([g.key for g in groups], values)
        ax.set_xlabel(name)
        ax.set_title(f"{name} per {by}")
        ax.invert_yaxis()
        fig.tight_layout()
        path = folder / f"{name}_by_{by.replace(':', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def cmd_report(args: argparse.Namespace) -> int:
    client, experiment_ids = _client_and_experiments(args)
    rows = collect(client, experiment_ids, parse_window(args.since))
    groups = group_by(rows, args.by)
    if args.json:
        print(json.dumps([{**g.__dict__, "cost": str(g.cost), "error_rate": g.error_rate} for g in groups], indent=2))
    else:
        window = f"the last {args.since}" if args.since else "all time"
        print(f"{len(rows)} calls in {len(set(r.run_id for r in rows))} runs, {window}\n")
        print(render_table(groups, args.by) if groups else "no LLM calls found")
    if args.plot:
        for path in write_plots(groups, args.by, Path(args.plot)):
            print(f"wrote {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="calls, tokens, cost, latency and errors per model/provider/tag")
    report.add_argument("--experiment", help="experiment name (default: configured experiment_name, else Default)")
    report.add_argument("--since", help="time window, e.g. 24h, 7d (default: all time)")
    report.add_argument("--by", default="model", help="model (default), provider, or tag:NAME")
    report.add_argument("--tracking-uri", help="MLflow tracking URI (default: configured)")
    report.add_argument("--plot", metavar="DIR", help="also write PNG charts into DIR")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.set_defaults(func=cmd_report)
