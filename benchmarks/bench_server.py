"""Server section: metric rows per second persisted by 8 worker processes into one ``mlflow server`` on PostgreSQL.

Starts the same PostgreSQL and ``mlflow server`` as the test suite (``mltrack.testing._postgres`` and
``._mlflow_server``: Debian's PostgreSQL run as the ``postgres`` user, ``mlflow server --backend-store-uri
postgresql+psycopg2://... --artifacts-destination DIR --workers W``), then, per mode, starts W worker processes
("spawn": each a fresh interpreter). Each worker opens its client, creates its own run and sends one warm-up
request, waits for the others at a barrier, then writes ``--rows`` metric rows shaped like mltrack's (13 keys per
call, step = call index) in ``log_batch`` requests of ``--batch`` rows, and reports when it finished and its
process-tree RSS (itself and any children, from /proc; "added": over the same worker before it imported its
client). Throughput = rows counted in PostgreSQL afterwards /
(last worker's end - barrier). Modes:

- ``mlflow``: ``MlflowClient.log_batch`` (the baseline: what an application process pays with MLflow's client);
- ``rest``: ``mltrack.writer.rest_client.RestClient.log_batch`` (the light client, no ``import mlflow``);
- ``mltrack``: through mltrack's public API; see :func:`measure_through_mltrack` (filled in with the new writer).

Modes alternate over ``--rounds`` rounds so that a noisy machine slows all alike. Usage:
  python benchmarks/bench_server.py [--workers 8] [--rows 20000] [--batch 1000] [--rounds 2] [--json FILE]
  python benchmarks/bench_server.py --quick
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

KEYS = ("llm.tokens.prompt", "llm.tokens.completion", "llm.tokens.total", "llm.tokens.cumulative.prompt",
        "llm.tokens.cumulative.completion", "llm.tokens.cumulative.total", "llm.cost.prompt", "llm.cost.completion",
        "llm.cost.total", "llm.cost.cumulative", "llm.latency", "llm.calls", "llm.errors")  # one call's rows
TARGET_RATIO = 0.8  # issue 11: mltrack's rows/s >= 0.8x MlflowClient.log_batch's on the same server


# -- process facts ------------------------------------------------------------------------------------------
def tree_rss(pid: int) -> int:
    """RSS in bytes of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += C.rss_bytes(current)
        except Exception:  # noqa: BLE001 - it ended meanwhile
            pass
        todo += children.get(current, [])
    return total


# -- workers ------------------------------------------------------------------------------------------------
def _rows(rows: int, now_ms: int) -> list[tuple[str, float, int, int]]:
    out = []
    call = 0
    while len(out) < rows:
        out += [(key, float(call * 7 + k), now_ms + call, call) for k, key in enumerate(KEYS)]
        call += 1
    return out[:rows]


def _worker(mode: str, uri: str, index: int, rows: int, batch: int, barrier: Any, results: Any) -> None:
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    rss_bare = tree_rss(os.getpid())  # a spawned interpreter with this script loaded, before any client
    if mode == "mlflow":
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        client = MlflowClient(tracking_uri=uri)
    else:
        from mltrack.writer.rest_client import Metric, RestClient

        client = RestClient(uri)
    experiment = client.get_experiment_by_name("bench-server")
    experiment_id = experiment.experiment_id if experiment else "0"
    run_id = client.create_run(experiment_id, run_name=f"{mode}-{index}").info.run_id
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in _rows(rows, int(time.time() * 1000))]
    client.log_batch(run_id, metrics=[Metric("warmup", 0.0, 0, 0)])
    barrier.wait()
    for i in range(0, len(metrics), batch):
        client.log_batch(run_id, metrics=metrics[i:i + batch])
    end = time.monotonic()
    results.put({"mode": mode, "index": index, "run_id": run_id, "end": end, "rss": tree_rss(os.getpid()),
                 "rss_bare": rss_bare,
                 "mlflow_imported": "mlflow" in sys.modules})


def measure_client(mode: str, uri: str, workers: int, rows: int, batch: int, count_rows: Any) -> dict[str, Any]:
    """W worker processes writing ``rows`` metric rows each with ``mode``'s client; rows/s persisted."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(mode, uri, i, rows, batch, barrier, results)) for i in range(workers)]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=600)
    start = time.monotonic()
    reports = [results.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join(60)
    elapsed = max(r["end"] for r in reports) - start
    persisted = count_rows([r["run_id"] for r in reports]) - workers  # less the warm-up rows
    return {"mode": mode, "rows": persisted, "expected_rows": rows * workers, "seconds": elapsed,
            "rows_per_s": persisted / elapsed, "rss_per_worker_mib": sum(r["rss"] for r in reports) / workers / C.MIB,
            "rss_bare_mib": sum(r["rss_bare"] for r in reports) / workers / C.MIB,
            "mlflow_imported": any(r["mlflow_imported"] for r in reports)}


def measure_through_mltrack(uri: str, workers: int, rows: int, count_rows: Any) -> dict[str, Any] | None:
    """The same figure through mltrack's public API (the shared writer): to be written with the new writer.

    It should start W spawned workers that each make ``rows / 13`` tracked calls into their own run (e.g.
    ``log_prompt_response`` on a ready SDK response inside ``track_llm_context``), wait at a barrier, then time
    until ``mltrack.flush()`` returns in every worker, count the rows in PostgreSQL with ``count_rows`` and report
    the caller's p50/p99 and the process-tree RSS per worker (the shared writer counted once, divided by W), in
    the dict shape :func:`measure_client` returns. Returns None until then."""
    return None


# -- the stack ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20000, help="metric rows per worker and mode")
    parser.add_argument("--batch", type=int, default=1000, help="rows per log_batch request (MLflow's maximum)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server-workers", type=int, default=1, help="mlflow server --workers")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.rounds = 2000, 1

    from mltrack.testing._mlflow_server import MlflowServer
    from mltrack.testing._postgres import PostgresServer

    folder = Path(tempfile.mkdtemp(prefix="mltrack-bench-server-"))
    began = time.monotonic()
    postgres = PostgresServer().start()
    server = None
    try:
        postgres.create_database("mlflow")
        server = MlflowServer(postgres.url("mlflow"), folder / "artifacts", workers=args.server_workers,
                              log_path=folder / "server.log").start()
        print(f"PostgreSQL {postgres.bin_dir.parent.name} on :{postgres.port} ({postgres.start_seconds:.1f} s), "
              f"mlflow server on {server.uri} ({server.start_seconds:.1f} s, --workers {args.server_workers})")

        def count_rows(run_ids: list[str]) -> int:
            ids = ",".join(f"'{r}'" for r in run_ids)
            return int(postgres.psql(f"SELECT count(*) FROM metrics WHERE run_uuid IN ({ids})").strip())

        from mltrack.writer.rest_client import RestClient

        RestClient(server.uri).create_experiment("bench-server")
        results: dict[str, list[dict[str, Any]]] = {"mlflow": [], "rest": [], "mltrack": []}
        for round_no in range(args.rounds):
            for mode in ("mlflow", "rest"):
                result = measure_client(mode, server.uri, args.workers, args.rows, args.batch, count_rows)
                results[mode].append(result)
                print(f"  round {round_no + 1} {mode:>7}: {result['rows']:,} rows in {result['seconds']:.2f} s = "
                      f"{result['rows_per_s']:,.0f} rows/s, RSS {result['rss_per_worker_mib']:.0f} MiB per worker")
            through = measure_through_mltrack(server.uri, args.workers, args.rows, count_rows)
            if through is not None:
                results["mltrack"].append(through)
        report = _report(results, args)
        C.write_result(args.json, {"args": vars(args), "results": results, "report": report,
                                   "setup_seconds": time.monotonic() - began})
        return 0 if report["complete"] else 1
    finally:
        if server is not None:
            server.stop()
        postgres.close()
        shutil.rmtree(folder, ignore_errors=True)


def _total(runs: list[dict[str, Any]]) -> dict[str, float] | None:
    if not runs:
        return None
    rows, seconds = sum(r["rows"] for r in runs), sum(r["seconds"] for r in runs)
    return {"rows_per_s": rows / seconds, "rss_mib": sum(r["rss_per_worker_mib"] for r in runs) / len(runs),
            "rss_bare_mib": sum(r.get("rss_bare_mib", 0.0) for r in runs) / len(runs),
            "complete": all(r["rows"] == r["expected_rows"] for r in runs),
            "mlflow_imported": any(r["mlflow_imported"] for r in runs)}


def _report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    base = _total(results["mlflow"])
    assert base is not None
    print(f"\n{args.workers} processes x {args.rows:,} metric rows, log_batch of {args.batch} rows, "
          f"{args.rounds} round(s); rows counted in PostgreSQL")
    print(f"{'writer':<34} {'rows/s':>10} {'vs baseline':>12} {'RSS/worker':>11} {'added':>8}  imports mlflow")
    complete = True
    report: dict[str, Any] = {}
    for mode, label in (("mlflow", "MlflowClient.log_batch (baseline)"), ("rest", "RestClient.log_batch"),
                        ("mltrack", "through mltrack")):
        total = _total(results[mode])
        if total is None:
            print(f"{label:<34} {'n/a':>10} {'':>12} {'':>11}  (not measured yet: measure_through_mltrack)")
            continue
        ratio = total["rows_per_s"] / base["rows_per_s"]
        complete &= total["complete"]
        target = f" {C.verdict(ratio >= TARGET_RATIO)} (>= {TARGET_RATIO}x)" if mode == "mltrack" else ""
        print(f"{label:<34} {total['rows_per_s']:>10,.0f} {ratio:>11.2f}x {total['rss_mib']:>7.0f} MiB "
              f"{total['rss_mib'] - total['rss_bare_mib']:>4.0f} MiB  "
              f"{'yes' if total['mlflow_imported'] else 'no'}{target}"
              f"{'' if total['complete'] else '  ROWS MISSING'}")
        report[mode] = {**total, "ratio": ratio}
    report["complete"] = complete
    return report


if __name__ == "__main__":
    sys.exit(main())
