"""``mltrack report`` over 10,000 calls in 1,000 runs on the SQLite store, against baselines from the same run.

The store is built directly (fast): each run is created with ``MlflowClient``, gets its ``llm.*`` metric rows in one
``log_batch`` (as mltrack's writer logs them) and its calls artifact written as the writer writes it
(``llm/calls-000000.jsonl``). Then, each timed ``--repeat`` times (best and median):

- ``report``: mltrack's report in this process (store reads, aggregation, rendering), the target is <= 2 s;
- ``search_runs``: a bare paged ``MlflowClient.search_runs`` over the same runs (the floor: MLflow's own cost);
- ``old``: the report's previous approach (``list_artifacts`` + ``download_artifacts`` per run), once;
- ``cli``: the whole ``python -m mltrack report`` process, with ``python -c "import mlflow"`` as its floor;
- ``charts``: rendering the six charts (``--plot`` / ``--html``), for information.

Usage: ``python benchmarks/bench_report.py [--runs 1000] [--calls-per-run 10] [--repeat 3] [--skip-old]
[--json FILE] [--keep]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, fresh_store, make_template_store, verdict, write_result  # noqa: E402

TARGET_S = 2.0
MODELS = [  # model, provider, USD per 1M input / cached input / output (or None: unpriced)
    ("gpt-4o-mini", "openai", (Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))),
    ("gpt-4o", "openai", (Decimal("2.5"), Decimal("1.25"), Decimal("10"))),
    ("claude-3-5-haiku-20241022", "anthropic", (Decimal("0.8"), Decimal("0.08"), Decimal("4"))),
    ("my-local-model", "local", None),
]


def build_store(folder: Path, runs: int, per_run: int, seed: int = 7) -> tuple[str, int]:
    """A store with ``runs`` finished runs of ``per_run`` calls each over the last 7 days; returns (URI, calls)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    template = make_template_store(folder / "template.db")
    uri, _db = fresh_store(template, folder, "report")
    client = MlflowClient(tracking_uri=uri)
    rng = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc)
    calls = 0
    for r in range(runs):
        start = now - dt.timedelta(seconds=rng.uniform(0, 7 * 86400))
        run = client.create_run("0", start_time=int(start.timestamp() * 1000), run_name=f"run-{r}")
        lines, metrics = [], []
        cum_p = cum_c = 0
        cum_cost = Decimal(0)
        errors = 0
        models = set()
        for step in range(per_run):
            model, provider, price = MODELS[rng.randrange(len(MODELS))]
            models.add(model)
            when = start + dt.timedelta(seconds=step * rng.uniform(0.5, 5))
            ts = int(when.timestamp() * 1000)
            error = "RateLimitError" if rng.random() < 0.02 else None
            prompt, completion = (0, 0) if error else (rng.randint(50, 4000), rng.randint(5, 800))
            cached = (prompt // 1024) * 1024 if rng.random() < 0.3 else 0
            latency = rng.lognormvariate(6.0, 0.6)
            ttft = latency * rng.uniform(0.1, 0.4) if rng.random() < 0.5 else None
            line = {"step": step, "timestamp": when.isoformat(), "model": model, "provider": provider,
                    "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                    "cached_prompt_tokens": cached, "cache_write_tokens": 0, "reasoning_tokens": 0,
                    "tokens_estimated": False}
            cum_p, cum_c, errors = cum_p + prompt, cum_c + completion, errors + (error is not None)
            rows = [("llm.tokens.prompt", prompt), ("llm.tokens.completion", completion),
                    ("llm.tokens.total", prompt + completion), ("llm.tokens.cumulative.prompt", cum_p),
                    ("llm.tokens.cumulative.completion", cum_c), ("llm.tokens.cumulative.total", cum_p + cum_c)]
            if price is not None:
                p_cost = ((prompt - cached) * price[0] + cached * price[1]) / 10**6
                c_cost = completion * price[2] / 10**6
                cum_cost += p_cost + c_cost
                line.update(prompt_cost=str(p_cost), completion_cost=str(c_cost), total_cost=str(p_cost + c_cost))
                rows += [("llm.cost.prompt", float(p_cost)), ("llm.cost.completion", float(c_cost)),
                         ("llm.cost.total", float(p_cost + c_cost)), ("llm.cost.cumulative", float(cum_cost))]
            line.update(latency_ms=latency, ttft_ms=ttft, error=error, prompt=[{"role": "user", "content": "q"}],
                        response=None if error else "a")
            rows += [("llm.latency", latency), ("llm.calls", step + 1), ("llm.errors", errors)]
            if ttft is not None:
                rows.append(("llm.ttft_ms", ttft))
            metrics += [Metric(k, float(v), ts, step) for k, v in rows]
            lines.append(json.dumps(line))
        tags = [RunTag("llm.model", ",".join(sorted(models))), RunTag("prompt_version", f"v{r % 2 + 1}")]
        for i in range(0, len(metrics), 900):
            client.log_batch(run.info.run_id, metrics=metrics[i:i + 900], tags=tags if i == 0 else [])
        artifacts = Path(run.info.artifact_uri.removeprefix("file://")) / "llm"
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "calls-000000.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        client.set_terminated(run.info.run_id, end_time=ts + 100)
        calls += per_run
    return uri, calls


def time_report(uri: str) -> tuple[float, int]:
    """mltrack's report in this process: read, aggregate, render the table (imports already paid)."""
    from mlflow import MlflowClient

    from mltrack.cli.report_data import collect
    from mltrack.cli.report_render import render_table
    from mltrack.cli.report_stats import TOTAL, group_by, summarize

    t0 = time.perf_counter()
    client = MlflowClient(tracking_uri=uri)
    rows = collect(client, ["0"], None)
    text = render_table(group_by(rows, "model"), summarize(TOTAL, rows), "model")
    elapsed = time.perf_counter() - t0
    assert text
    return elapsed, len(rows)


def time_search_runs(uri: str) -> tuple[float, int]:
    """A bare paged search_runs over every run: what MLflow itself takes to hand the runs over."""
    from mlflow import MlflowClient

    t0 = time.perf_counter()
    client = MlflowClient(tracking_uri=uri)
    runs, token = 0, None
    while True:
        page = client.search_runs(["0"], max_results=5000, page_token=token)
        runs += len(page)
        token = page.token
        if not token:
            return time.perf_counter() - t0, runs


def time_old_report(uri: str) -> tuple[float, int]:
    """The report's previous approach: search_runs, then list_artifacts + download_artifacts for every run."""
    from mlflow import MlflowClient

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # (the old code printed them; not timed here)
    t0 = time.perf_counter()
    client = MlflowClient(tracking_uri=uri)
    calls, token = 0, None
    while True:
        runs = client.search_runs(["0"], max_results=500, page_token=token)
        for run in runs:
            for item in client.list_artifacts(run.info.run_id, "llm"):
                if item.path.endswith(".jsonl"):
                    with open(client.download_artifacts(run.info.run_id, item.path), encoding="utf-8") as fh:
                        calls += sum(1 for line in fh if line.strip())
        token = runs.token
        if not token:
            return time.perf_counter() - t0, calls


def time_cli(uri: str, args: list[str]) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def time_charts(uri: str) -> float:
    from mlflow import MlflowClient

    from mltrack.cli.report_data import collect
    from mltrack.cli.report_plots import render_charts
    from mltrack.cli.report_stats import group_by

    rows = collect(MlflowClient(tracking_uri=uri), ["0"], None)
    order = [g.key for g in group_by(rows, "model")]
    t0 = time.perf_counter()
    render_charts(rows, "model", order)
    return time.perf_counter() - t0


def _best_median(samples: list[float]) -> str:
    return f"best {min(samples):6.3f} s  median {statistics.median(samples):6.3f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--calls-per-run", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-old", action="store_true", help="do not time the previous per-run approach")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = parser.parse_args()
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    folder = Path(tempfile.mkdtemp(prefix="mltrack-bench-report-"))
    t0 = time.perf_counter()
    uri, calls = build_store(folder, args.runs, args.calls_per_run)
    print(f"store: {calls} calls in {args.runs} runs, built in {time.perf_counter() - t0:.1f} s ({uri})")

    import mlflow  # noqa: F401 - imports paid once, outside every timing

    import mltrack.cli.report_cmd  # noqa: F401

    report, search, cli, floor = [], [], [], []
    for _ in range(args.repeat):
        elapsed, seen = time_report(uri)
        assert seen == calls, (seen, calls)
        report.append(elapsed)
        search.append(time_search_runs(uri)[0])
        cli.append(time_cli(uri, ["-m", "mltrack", "report"]))
        floor.append(time_cli(uri, ["-c", "import mlflow; mlflow.MlflowClient().search_experiments()"]))
    result = {"runs": args.runs, "calls": calls, "report_s": report, "search_runs_s": search, "cli_s": cli,
              "cli_floor_s": floor}
    print(f"\nreport (in process)     {_best_median(report)}   target <= {TARGET_S:.1f} s: "
          f"{verdict(statistics.median(report) <= TARGET_S)}")
    print(f"search_runs (baseline)  {_best_median(search)}   report / search_runs = "
          f"{statistics.median(report) / statistics.median(search):.2f}x")
    print(f"CLI process             {_best_median(cli)}")
    print(f"  floor: python + import mlflow + one store query  {_best_median(floor)}   "
          f"CLI minus floor = {statistics.median(cli) - statistics.median(floor):.3f} s")
    if not args.skip_old:
        old, old_calls = time_old_report(uri)
        assert old_calls == calls
        result["old_s"] = old
        print(f"old approach (per-run download_artifacts)  {old:6.3f} s   old / report = "
              f"{old / statistics.median(report):.1f}x")
    charts = time_charts(uri)
    result["charts_s"] = charts
    print(f"charts (six PNGs, for --plot / --html)     {charts:6.3f} s")
    write_result(args.json, result)
    if args.keep:
        print(f"kept {folder}")
    else:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
