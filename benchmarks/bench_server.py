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
- ``mltrack``: through mltrack's public API and its shared writer (:func:`measure_through_mltrack`); then one
  application process alone (``--single-calls``) for the memory target.

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
SINGLE_TARGET_MIB = 40  # issue 11: an application process tracking into a server adds <= 40 MiB (its whole tree)


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


def _mltrack_worker(uri: str, index: int, calls: int, journal_dir: str, barrier: Any, results: Any) -> None:
    os.environ.update({"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": uri,
                       "MLTRACK_EXPERIMENT": "bench-server", "MLTRACK_JOURNAL_DIR": journal_dir})
    rss_bare = tree_rss(os.getpid())
    import mltrack

    name = f"mltrack-{index}-{os.getpid()}-{time.time_ns()}"
    usage = {"prompt_tokens": 120, "completion_tokens": 40}
    samples: list[int] = []
    with mltrack.track_llm_context(name, model=C.MODEL) as tracker:
        tracker.log_prompt_response("warm up", "ok", token_usage=usage)
        mltrack.flush(300)  # the shared writer is up and the run exists: what a long-lived worker has
        barrier.wait()
        clock = time.perf_counter_ns
        for i in range(calls):
            began = clock()
            tracker.log_prompt_response("What is the capital of France?", "Paris.", token_usage=usage)
            samples.append(clock() - began)
    flushed = mltrack.flush(1800)
    end = time.monotonic()
    samples.sort()
    results.put({"index": index, "name": name, "end": end, "flushed": flushed, "rss": tree_rss(os.getpid()),
                 "rss_bare": rss_bare, "p50_us": C.percentile(samples, 50) / 1000,
                 "p99_us": C.percentile(samples, 99) / 1000, "mlflow_imported": "mlflow" in sys.modules})
    barrier.wait()  # stay alive until every worker measured its tree (the shared writer may be a child of this one)


def measure_through_mltrack(uri: str, workers: int, calls: int, count_rows: Any) -> dict[str, Any]:
    """W spawned workers, each ``calls`` tracked calls (``log_prompt_response`` on a ready response) into its own
    run through mltrack's public API and its shared writer; rows/s = metric rows persisted in PostgreSQL / (barrier
    to the last worker's ``flush()`` returning). RSS per worker: the process trees summed (the shared writer counted
    once, in the tree of the worker that started it), divided by W."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    journal_dir = tempfile.mkdtemp(prefix="mltrack-bench-journal-")
    procs = [ctx.Process(target=_mltrack_worker, args=(uri, i, calls, journal_dir, barrier, results))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=600)
    start = time.monotonic()
    reports = [results.get(timeout=3600) for _ in procs]
    barrier.wait(timeout=600)
    for proc in procs:
        proc.join(60)
    shutil.rmtree(journal_dir, ignore_errors=True)
    elapsed = max(r["end"] for r in reports) - start
    from mltrack.writer.rest_client import RestClient

    client = RestClient(uri)
    experiment_id = client.get_experiment_by_name("bench-server").experiment_id
    names = {r["name"] for r in reports}
    run_ids = [run.info.run_id for run in client.search_runs([experiment_id], max_results=1000)
               if run.info.run_name in names]
    calls_rows = count_rows(run_ids, "llm.calls")  # one row per call (step = call index)
    rows = count_rows(run_ids)
    per_call = rows / max(calls_rows, 1)
    warm_rows = round(per_call) * len(run_ids)  # the warm-up call's rows, written before the barrier
    return {"mode": "mltrack", "rows": rows - warm_rows, "seconds": elapsed, "rows_per_s": (rows - warm_rows) / elapsed,
            "expected_rows": (rows - warm_rows) if (calls_rows == workers * (calls + 1) and len(run_ids) == workers
                                                    and all(r["flushed"] for r in reports)) else -1,
            "calls": calls * workers, "rows_per_call": per_call,
            "rss_per_worker_mib": sum(r["rss"] for r in reports) / workers / C.MIB,
            "rss_bare_mib": sum(r["rss_bare"] for r in reports) / workers / C.MIB,
            "p50_us": max(r["p50_us"] for r in reports), "p99_us": max(r["p99_us"] for r in reports),
            "mlflow_imported": any(r["mlflow_imported"] for r in reports)}


def _app_worker(tracked: bool, uri: str, calls: int, base_url: str, journal_dir: str, results: Any) -> None:
    """One application process: ``calls`` real openai SDK calls to the fake LLM server, tracked or not."""
    os.environ.update({"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": uri,
                       "MLTRACK_EXPERIMENT": "bench-server", "MLTRACK_JOURNAL_DIR": journal_dir})
    client = C.openai_client(base_url)
    client.chat.completions.create(model=C.MODEL, messages=C.MESSAGES)  # the SDK warmed up in both variants
    flushed = True
    if tracked:
        import mltrack

        mltrack.instrument("openai")
        with mltrack.track_llm_context(f"memory-{os.getpid()}"):
            for _ in range(calls):
                client.chat.completions.create(model=C.MODEL, messages=C.MESSAGES)
        flushed = mltrack.flush(600)
    else:
        for _ in range(calls):
            client.chat.completions.create(model=C.MODEL, messages=C.MESSAGES)
    results.put({"tracked": tracked, "rss": tree_rss(os.getpid()), "flushed": flushed,
                 "mlflow_imported": "mlflow" in sys.modules})


def measure_one_app(uri: str, calls: int) -> dict[str, Any]:
    """The process tree of one application process after ``calls`` instrumented calls into the server (with the
    writer it started), against the same process without mltrack, both in this run."""
    ctx = mp.get_context("spawn")
    server = C.start_fake_server()
    out: dict[str, Any] = {}
    try:
        for tracked in (False, True):
            results = ctx.Queue()
            journal_dir = tempfile.mkdtemp(prefix="mltrack-bench-journal-")
            proc = ctx.Process(target=_app_worker, args=(tracked, uri, calls, server.openai_base_url, journal_dir,
                                                         results))
            proc.start()
            out["tracked" if tracked else "bare"] = results.get(timeout=3600)
            proc.join(120)
            shutil.rmtree(journal_dir, ignore_errors=True)
    finally:
        server.stop()
    out["added_mib"] = (out["tracked"]["rss"] - out["bare"]["rss"]) / C.MIB
    return out


# -- the stack ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20000, help="metric rows per worker and mode")
    parser.add_argument("--batch", type=int, default=1000, help="rows per log_batch request (MLflow's maximum)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server-workers", type=int, default=1, help="mlflow server --workers")
    parser.add_argument("--single-calls", type=int, default=10000,
                        help="calls of the one-process memory row (0: skip it)")
    parser.add_argument("--modes", default="mlflow,rest,mltrack", type=lambda text: text.split(","),
                        help="which writers to measure (the baseline, mlflow, is needed for the ratios)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.rounds, args.single_calls = 2000, 1, 500

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

        def count_rows(run_ids: list[str], key: str | None = None) -> int:
            ids = ",".join(f"'{r}'" for r in run_ids)
            where = f" AND key = '{key}'" if key else ""
            return int(postgres.psql(f"SELECT count(*) FROM metrics WHERE run_uuid IN ({ids}){where}").strip())

        from mltrack.writer.rest_client import RestClient

        RestClient(server.uri).create_experiment("bench-server")
        results: dict[str, list[dict[str, Any]]] = {"mlflow": [], "rest": [], "mltrack": []}
        for round_no in range(args.rounds):
            for mode in [m for m in ("mlflow", "rest") if m in args.modes]:
                result = measure_client(mode, server.uri, args.workers, args.rows, args.batch, count_rows)
                results[mode].append(result)
                print(f"  round {round_no + 1} {mode:>7}: {result['rows']:,} rows in {result['seconds']:.2f} s = "
                      f"{result['rows_per_s']:,.0f} rows/s, RSS {result['rss_per_worker_mib']:.0f} MiB per worker")
            if "mltrack" not in args.modes:
                continue
            through = measure_through_mltrack(server.uri, args.workers, max(1, args.rows // len(KEYS)), count_rows)
            results["mltrack"].append(through)
            print(f"  round {round_no + 1} mltrack: {through['rows']:,} rows ({through['calls']:,} calls, "
                  f"{through['rows_per_call']:.1f} rows each) in {through['seconds']:.2f} s = "
                  f"{through['rows_per_s']:,.0f} rows/s, RSS {through['rss_per_worker_mib']:.0f} MiB per worker, "
                  f"caller p50 {through['p50_us']:.0f} us p99 {through['p99_us']:.0f} us")
        single = measure_one_app(server.uri, args.single_calls) if args.single_calls else None
        report = _report(results, args)
        if single is not None:
            added = single["added_mib"]
            report["single"] = single
            print(f"\none application process, {args.single_calls:,} instrumented openai calls into the server: process "
                  f"tree {single['bare']['rss'] / C.MIB:.0f} MiB without mltrack, {single['tracked']['rss'] / C.MIB:.0f} "
                  f"MiB with it (its writer included): +{added:.0f} MiB {C.verdict(added <= SINGLE_TARGET_MIB)} "
                  f"(<= {SINGLE_TARGET_MIB} MiB); imports mlflow: {'yes' if single['tracked']['mlflow_imported'] else 'no'}"
                  f"{'' if single['tracked']['flushed'] else '; flush() FAILED'}")
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
    base = _total(results["mlflow"]) or {"rows_per_s": float("nan")}
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
