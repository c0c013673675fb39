"""Section 2: throughput persisted to a local SQLite store, mltrack vs. MLflow's own ``log_batch``.

mltrack: N calls logged with ``tracker.log_prompt_response`` (real OpenAI SDK response objects, taken once from
the fake server) inside one ``track_llm_context``, in R rounds of N/R calls, each round followed by
``mltrack.flush()``; a round is timed from its first call to the end of its flush, so it covers the writer
turning every call into metric rows, tags and the ``llm/`` JSONL artifact. ``writer_queue_size`` is set to hold
all N records, so nothing waits for room. One-time setup (writer thread, store connection, first run) is done
before, untimed, as it is for the baseline's client.

Baseline: after each mltrack round, the very metric rows that round wrote (read back from mltrack's store: same
keys, values, steps and timestamps, same count) are written with ``MlflowClient.log_batch`` in batches of 1000
into a fresh store of their own, timed from the first batch to the last. Rounds alternate (mltrack, log_batch,
mltrack, ...) so that a noisy machine slows both alike. Usage (normally run by run.py):
  python benchmarks/bench_throughput.py --calls 20000 --rounds 4 --template T.db --workdir DIR
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
RUN_NAME = "bench-throughput"


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


def _rows(db: Path, first_step: int, last_step: int) -> list[tuple[str, float, int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT m.key, m.value, m.timestamp, m.step FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
            "WHERE r.name = ? AND m.key LIKE 'llm.%' AND m.step BETWEEN ? AND ? ORDER BY m.step, m.rowid",
            (RUN_NAME, first_step, last_step)).fetchall()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--template", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--base-url")
    parser.add_argument("--result")
    args = parser.parse_args(argv)

    pairs = _responses(args.base_url, 50)
    uri, db = C.fresh_store(Path(args.template), Path(args.workdir), "throughput-mltrack")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    import mltrack
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    mltrack.configure(writer_queue_size=max(10000, 2 * args.calls + 1000))  # spilling starts at half of it
    t0 = time.perf_counter()
    with mltrack.track_llm_context("bench-throughput-warmup") as tracker:
        for messages, response in pairs[:10]:
            tracker.log_prompt_response(messages, response, latency_ms=12.5)
    mltrack.flush(300)
    setup_s = time.perf_counter() - t0

    lb_uri, lb_db = C.fresh_store(Path(args.template), Path(args.workdir), "throughput-log-batch")
    client = MlflowClient(tracking_uri=lb_uri)
    lb_run = client.create_run("0", run_name="bench-log-batch").info.run_id

    per_round = max(1, args.calls // args.rounds)
    rounds: list[dict[str, Any]] = []
    all_flushed = True
    step = 0
    with mltrack.track_llm_context(RUN_NAME, tags={"benchmark": "throughput"}) as tracker:
        for r in range(args.rounds):
            first = step
            t0 = time.perf_counter()
            for _ in range(per_round):
                messages, response = pairs[step % len(pairs)]
                tracker.log_prompt_response(messages, response, latency_ms=12.5)
                step += 1
            t_calls = time.perf_counter() - t0
            flushed = mltrack.flush(1800)
            t_mltrack = time.perf_counter() - t0
            all_flushed = all_flushed and flushed
            rows = [Metric(k, float(v), int(ts), int(s)) for k, v, ts, s in _rows(db, first, step - 1)]
            t0 = time.perf_counter()
            for i in range(0, len(rows), BATCH):
                client.log_batch(lb_run, metrics=rows[i:i + BATCH])
            t_lb = time.perf_counter() - t0
            rounds.append({"calls": per_round, "rows": len(rows), "mltrack_s": t_mltrack, "caller_s": t_calls,
                           "log_batch_s": t_lb, "flushed": flushed})
            print(f"    round {r + 1}/{args.rounds}: mltrack {per_round:,} calls -> {len(rows):,} rows in "
                  f"{t_mltrack:.2f} s (caller {t_calls:.2f} s)  |  log_batch same rows in {t_lb:.2f} s")

    calls = sum(x["calls"] for x in rounds)
    rows_m = sum(x["rows"] for x in rounds)
    mltrack_s = sum(x["mltrack_s"] for x in rounds)
    lb_s = sum(x["log_batch_s"] for x in rounds)
    with sqlite3.connect(lb_db) as conn:
        rows_lb = conn.execute("SELECT COUNT(*) FROM metrics WHERE key LIKE 'llm.%'").fetchone()[0]
    mine = {"calls": calls, "metric_rows": rows_m, "elapsed_s": mltrack_s, "caller_s": sum(x["caller_s"] for x in rounds),
            "setup_s": setup_s, "flushed": all_flushed, "rows_per_call": rows_m / calls if calls else 0.0,
            "calls_per_s": calls / mltrack_s, "rows_per_s": rows_m / mltrack_s, "dropped": C.writer_dropped()}
    base = {"metric_rows": rows_lb, "elapsed_s": lb_s, "rows_per_s": rows_lb / lb_s if lb_s else 0.0, "batch": BATCH}
    ratio = mine["rows_per_s"] / base["rows_per_s"] if base["rows_per_s"] else float("nan")
    result = {"mltrack": mine, "log_batch": base, "ratio": ratio, "rounds": rounds}
    dropped = f", {mine['dropped']} dropped" if mine["dropped"] else ""
    print(f"  mltrack: {calls:,} calls -> {rows_m:,} metric rows ({mine['rows_per_call']:.1f}/call) in "
          f"{mltrack_s:.2f} s (flush {'ok' if all_flushed else 'TIMED OUT'}{dropped}): "
          f"{mine['calls_per_s']:,.0f} calls/s, {mine['rows_per_s']:,.0f} metric rows/s")
    print(f"  (one-time setup before the timed rounds: writer thread, store connection, first run: {setup_s:.2f} s)")
    print(f"  MlflowClient.log_batch, the same {rows_lb:,} rows, batches of {BATCH}: {lb_s:.2f} s, "
          f"{base['rows_per_s']:,.0f} metric rows/s")
    print(f"  ratio mltrack / log_batch (metric rows/s): {ratio:.2f}x")
    C.write_result(args.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
