"""Section 2: throughput persisted to a local SQLite store, mltrack vs. MLflow's own ``log_batch``.

mltrack: N calls logged with ``tracker.log_prompt_response`` (real OpenAI SDK response objects, taken once from
the fake server) inside one ``track_llm_context``, then ``mltrack.flush()``; timed from the first call to the
end of the flush, so it covers the writer turning every call into metric rows, tags and the ``llm/`` JSONL
artifact. The queue is sized to hold all N records, so nothing is dropped or spilled.

Baseline: the very metric rows mltrack wrote (read back from its store: same keys, values, steps and
timestamps, same count) written with ``MlflowClient.log_batch`` in batches of 1000 into a fresh store, timed
from the first batch to the last. Usage (normally run by run.py):
  python benchmarks/bench_throughput.py --calls 20000 --template T.db --workdir DIR
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

BATCH = 1000


def _responses(base_url: str | None, count: int) -> list[Any]:
    """A few real SDK response objects (the fake server answers each prompt differently)."""
    server = None if base_url else C.start_fake_server()
    try:
        client = C.openai_client(base_url or server.openai_base_url)
        out = []
        for i in range(count):
            messages = [{"role": "user", "content": f"question number {i}: " + "tell me more " * (i % 7)}]
            out.append((messages, client.chat.completions.create(model=C.MODEL, messages=messages)))
        return out
    finally:
        if server is not None:
            server.stop()


def run_mltrack(args: argparse.Namespace, pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    uri, db = C.fresh_store(Path(args.template), Path(args.workdir), "throughput-mltrack")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    import mltrack

    mltrack.configure(writer_queue_size=max(10000, args.calls + 1000))
    n = len(pairs)
    # One-time setup outside the timed region, as for the baseline's client: the writer thread, the store
    # connection (importing SQLAlchemy/alembic, checking the schema) and a first run.
    t0 = time.perf_counter()
    with mltrack.track_llm_context("bench-throughput-warmup") as tracker:
        for messages, response in pairs[:10]:
            tracker.log_prompt_response(messages, response, latency_ms=12.5)
    mltrack.flush(300)
    setup_s = time.perf_counter() - t0
    warm_rows = C.count_rows(db, "metrics")
    t0 = time.perf_counter()
    with mltrack.track_llm_context("bench-throughput", tags={"benchmark": "throughput"}) as tracker:
        for i in range(args.calls):
            messages, response = pairs[i % n]
            tracker.log_prompt_response(messages, response, latency_ms=12.5)
    t_calls = time.perf_counter() - t0
    flushed = mltrack.flush(1800)
    elapsed = time.perf_counter() - t0
    rows = C.count_rows(db, "metrics") - warm_rows
    return {"uri": uri, "db": str(db), "calls": args.calls, "setup_s": setup_s, "elapsed_s": elapsed, "caller_s": t_calls,
            "flushed": flushed, "metric_rows": rows, "rows_per_call": rows / args.calls if args.calls else 0,
            "calls_per_s": args.calls / elapsed, "rows_per_s": rows / elapsed, "dropped": C.writer_dropped()}


def run_log_batch(args: argparse.Namespace, source_db: Path) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    with sqlite3.connect(source_db) as conn:
        rows = conn.execute("SELECT m.key, m.value, m.timestamp, m.step FROM metrics m JOIN runs r "
                            "ON m.run_uuid = r.run_uuid WHERE r.name = 'bench-throughput' ORDER BY m.step, m.rowid").fetchall()
    metrics = [Metric(key, float(value), int(ts), int(step)) for key, value, ts, step in rows]
    uri, db = C.fresh_store(Path(args.template), Path(args.workdir), "throughput-log-batch")
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run("0", run_name="bench-log-batch").info.run_id
    t0 = time.perf_counter()
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + BATCH])
    elapsed = time.perf_counter() - t0
    written = C.count_rows(db, "metrics")
    return {"metric_rows": written, "elapsed_s": elapsed, "rows_per_s": written / elapsed if elapsed else 0.0,
            "batch": BATCH}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--template", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--base-url")
    parser.add_argument("--result")
    args = parser.parse_args(argv)

    pairs = _responses(args.base_url, 50)
    mine = run_mltrack(args, pairs)
    base = run_log_batch(args, Path(mine["db"]))
    ratio = mine["rows_per_s"] / base["rows_per_s"] if base["rows_per_s"] else float("nan")
    result = {"mltrack": mine, "log_batch": base, "ratio": ratio}
    dropped = f", {mine['dropped']} dropped" if mine["dropped"] else ""
    print(f"  mltrack: {mine['calls']} calls -> {mine['metric_rows']} metric rows "
          f"({mine['rows_per_call']:.1f}/call) in {mine['elapsed_s']:.2f} s "
          f"(caller loop {mine['caller_s']:.2f} s, flush {'ok' if mine['flushed'] else 'TIMED OUT'}"
          f"{dropped}): "
          f"{mine['calls_per_s']:,.0f} calls/s, {mine['rows_per_s']:,.0f} metric rows/s")
    print(f"  (one-time setup before the timed region: writer thread, store connection, first run: "
          f"{mine['setup_s']:.2f} s)")
    print(f"  MlflowClient.log_batch, same {base['metric_rows']} rows, batches of {BATCH}: {base['elapsed_s']:.2f} s, "
          f"{base['rows_per_s']:,.0f} metric rows/s")
    print(f"  ratio mltrack / log_batch (metric rows/s): {ratio:.2f}x")
    C.write_result(args.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
