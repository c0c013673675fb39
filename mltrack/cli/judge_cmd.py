"""``mltrack judge``: score past runs with the configured judges, skipping runs already judged with the same
judge and model (tag ``mltrack.judged.<name>``)."""

from __future__ import annotations

import argparse
import sys

from mltrack.cli.report_data import parse_since, resolve_experiments


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def cmd_judge(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from mltrack.config import get_settings
    from mltrack.judges._config import judge_config
    from mltrack.judges._past import NothingToJudge, judge_run, pending_judges
    from mltrack.judges._runner import SPEND, usd

    since = parse_since(args.since)
    settings = get_settings()
    client = MlflowClient(tracking_uri=args.tracking_uri or settings.tracking_uri)
    experiments = resolve_experiments(client, [args.experiment] if args.experiment else [], False,
                                      settings.experiment_name)
    filter_string = f"attributes.start_time >= {int(since.timestamp() * 1000)}" if since else ""
    runs = client.search_runs([e.experiment_id for e in experiments], filter_string=filter_string,
                              max_results=50000)
    config = judge_config(settings)
    metrics = args.metrics.split(",") if args.metrics else None
    judged = skipped = failed = 0
    spent_before = SPEND.total
    tty = sys.stderr.isatty()
    for i, run in enumerate(runs, 1):
        todo = pending_judges(run, config.model, metrics)
        if not todo:
            skipped += 1
        else:
            try:
                judge_run(run.info.run_id, todo, tracking_uri=client.tracking_uri)
                judged += 1
            except NothingToJudge:  # nothing to judge in that run (no LLM call with a logged response)
                skipped += 1
            except Exception as exc:  # noqa: BLE001 - one run's failure does not stop the batch
                failed += 1
                print(f"\nmltrack: run {run.info.run_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if tty:
            print(_bar(i, len(runs)), end="", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    print(f"judged {judged} run(s), skipped {skipped} (already judged or nothing to judge), failed {failed}; "
          f"judge spend {usd(SPEND.total - spent_before)} ({config.model})")
    return 1 if failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    judge = sub.add_parser("judge", help="score past runs with the configured judges (judges: in .mltrack.yml)")
    judge.add_argument("--experiment", help="experiment name (default: experiment_name, else the default one)")
    judge.add_argument("--since", help="runs started in this window: a duration such as 12h, 1d, 2w, or an ISO "
                       "date/time (default: all time)")
    judge.add_argument("--metrics", help="comma-separated judge names (default: judges.metrics)")
    judge.add_argument("--tracking-uri", dest="tracking_uri", help="MLflow tracking URI (default: the config's)")
    judge.set_defaults(func=cmd_judge)
