"""``mltrack insights``: which conditions go with a target (default: failed traces), ranked by NPMI."""

from __future__ import annotations

import argparse
from pathlib import Path

from mltrack.cli.traces_cmd import fmt_npmi, table


def write_plot(insights: list, target: str, path: Path) -> None:
    """A horizontal bar chart of the ranked conditions' NPMI with the target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('mltrack insights --plot needs matplotlib: pip install "mltrack[plot]"') from exc
    import math

    fig, ax = plt.subplots(figsize=(10, max(2.5, 1.0 + 0.45 * len(insights))))
    values = [0.0 if math.isnan(i.npmi) else i.npmi for i in insights]
    ax.barh([i.condition for i in insights], values, color=["tab:red" if v > 0 else "tab:blue" for v in values])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(f"NPMI with {target}")
    ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_insights(args: argparse.Namespace) -> int:
    from mltrack.insights._api import client_and_experiments
    from mltrack.insights._candidates import rank
    from mltrack.insights._load import load_views
    from mltrack.insights._parser import parse

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    target = parse(args.target)
    client, exp_ids = client_and_experiments(args.experiment, None)
    # candidates read every part of the traces (models, tags, costs): read them all once
    views = load_views(client, exp_ids, None, {"spans", "span_attributes", "tags", "metadata", "assessments"})
    if not views:
        print("no traces in this experiment")
        return 0
    hits, insights = rank(views, target, args.top)
    share = hits / len(views)
    print(f"target: {args.target} — {hits} of {len(views)} traces ({share:.1%})\n")
    if not insights:
        print("no candidate conditions found")
        return 0
    rows = [(str(n), i.condition, fmt_npmi(i.npmi), fmt_npmi(i.npmi_smoothed), str(i.count), str(i.joint_count),
             f"{i.joint_count / i.count:.1%}") for n, i in enumerate(insights, 1)]
    print(table(("#", "condition", "npmi", "smoothed", "traces", "with target", "target rate"), rows, left=2))
    if args.plot:
        write_plot(insights, args.target, Path(args.plot))
        print(f"\nwrote {args.plot}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from mltrack.insights._candidates import DEFAULT_TARGET

    parser = sub.add_parser("insights", help="conditions ranked by how they go with a target (NPMI)")
    parser.add_argument("--experiment", help="experiment name (default: configured experiment_name, else Default)")
    parser.add_argument("--target", default=DEFAULT_TARGET,
                        help=f"the condition to explain (default: {DEFAULT_TARGET})")
    parser.add_argument("--top", type=int, default=10, help="show this many conditions (default 10)")
    parser.add_argument("--plot", metavar="FILE", help="also draw the ranking as a bar chart into FILE (PNG)")
    parser.set_defaults(func=cmd_insights)
