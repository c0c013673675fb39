"""Trace insights at scale: 10,000 traces of 5 spans each on MLflow's SQLite store and on a PostgreSQL-backed server.

Times mltrack's ``search_traces`` with a ``count()`` clause and ``calculate_trace_filter_correlation`` (target:
each <= 5 s), and MLflow's own ``TracingClient.calculate_trace_filter_correlation`` on the same filters where
MLflow accepts them, in the same run, and prints the ratio. The store is built once in bulk (straight into
MLflow's tables, in the layout MLflow's tracing writes: this takes seconds where 50,000 spans through the
tracing API take many minutes) and cached in a temporary folder between runs (``--rebuild`` builds it anew).

    python benchmarks/bench_insights.py [--store sqlite|server|postgres|both|sqlite-server] [--traces 10000]
                                        [--repeat 3] [--rebuild] [--tracking-uri URI] [--tune] [--grace S]

``--store server`` starts a throwaway PostgreSQL and a real ``mlflow server`` on it with MLflow's default 4
workers (mltrack.testing's fixtures; PostgreSQL must be installed, as .ci/run does), fills the server's backend
database with the same ``populate()`` (SQLAlchemy on the postgresql:// URL) and measures through the server's
http:// URI. There the only way to spans is the server's batchGet endpoint, which rebuilds and serializes every
span it returns, so the server run also prints that floor (batchGet of every trace, bytes not even decoded) and
what MLflow's own client takes to read every trace with its spans; ``--tune`` adds rows for the batch size and
threads of mltrack's reader. ``--store postgres`` measures the same server's database read directly
(``postgresql+psycopg2://``: MLflow's SQL store, read with mltrack's bulk queries); ``--store both`` runs all three.
``--store sqlite-server`` runs an ``mlflow server`` on a copy of the SQLite store: MLflow's span filter takes
seconds per page there, so the span questions mltrack asks are given up after a grace period (``--grace``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_S = 5.0
LAYOUT_VERSION = 1  # bump when populate() changes, so cached stores are rebuilt
BASE_MS = 1_760_000_000_000
MODELS = [("gpt-4o", "openai", 0.0025, 0.01), ("gpt-4o-mini", "openai", 0.00015, 0.0006),
          ("claude-3-5-sonnet", "anthropic", 0.003, 0.015)]

SEARCH = "count(span.type = 'LLM') > 2 AND tags.env = 'prod'"
BOTH_ACCEPT = [("span.type = 'TOOL'", "trace.status = 'ERROR'"), ("tags.env = 'prod'", "trace.status = 'ERROR'"),
               ("span.name = 'gpt-4o'", "trace.execution_time_ms > 2000")]
MLTRACK_ONLY = [("count(span.type = 'LLM') > 2", "trace.status = 'ERROR'"),
                ("trace.total_cost > 0.02 OR trace.execution_time_ms > 2000", "tags.env = 'prod'")]


def _attrs(values: dict) -> dict:
    return {k: json.dumps(v) for k, v in values.items()}  # MLflow keeps each attribute JSON-encoded in the span JSON


def populate(engine_url: str, experiment_id: int, n_traces: int, seed: int = 7) -> None:
    """Write ``n_traces`` traces of 5 spans (a CHAIN root, 1-4 LLM calls, the rest TOOL) into MLflow's tables."""
    import sqlalchemy as sa

    rng = random.Random(seed)
    infos, tags, metadata, spans = [], [], [], []
    for i in range(n_traces):
        rid = "tr-" + uuid.UUID(int=rng.getrandbits(128)).hex
        start_ms = BASE_MS + i * 1000
        failed = rng.random() < 0.1
        n_llm = rng.randint(1, 4)
        duration = rng.randint(100, 1500) + (2000 if failed and rng.random() < 0.5 else 0)
        env = rng.choice(["prod", "prod", "dev"])
        root_id = f"{rng.getrandbits(64):016x}"
        total_cost = 0.0
        total_tokens = 0
        for j in range(4):
            span_id = f"{rng.getrandbits(64):016x}"
            s_start = (start_ms + j) * 1_000_000
            s_end = s_start + 500_000
            if j < n_llm:
                model, provider, in_price, out_price = rng.choice(MODELS)
                tokens_in, tokens_out = rng.randint(100, 2000), rng.randint(10, 500)
                cost = round(tokens_in / 1000 * in_price + tokens_out / 1000 * out_price, 6)
                total_cost += cost
                total_tokens += tokens_in + tokens_out
                attributes = {"mlflow.traceRequestId": rid, "mlflow.spanType": "LLM", "mlflow.llm.model": model,
                              "mlflow.llm.provider": provider,
                              "mlflow.chat.tokenUsage": {"input_tokens": tokens_in, "output_tokens": tokens_out,
                                                         "total_tokens": tokens_in + tokens_out},
                              "mlflow.llm.cost": {"input_cost": 0.0, "output_cost": cost, "total_cost": cost}}
                name, kind, status = model, "LLM", "ERROR" if failed and j == n_llm - 1 else "OK"
            else:
                attributes = {"mlflow.traceRequestId": rid, "mlflow.spanType": "TOOL", "tool": "search"}
                name, kind, status = "search", "TOOL", "OK"
            content = {"trace_id": rid, "span_id": span_id, "parent_span_id": root_id, "name": name,
                       "start_time_unix_nano": s_start, "end_time_unix_nano": s_end, "events": [],
                       "status": {"code": f"STATUS_CODE_{status}", "message": ""}, "attributes": _attrs(attributes),
                       "links": []}
            spans.append({"trace_id": rid, "experiment_id": experiment_id, "span_id": span_id,
                          "parent_span_id": root_id, "name": name, "type": kind, "status": status,
                          "start_time_unix_nano": s_start, "end_time_unix_nano": s_end, "content": json.dumps(content)})
        root_status = "ERROR" if failed else "OK"
        root_content = {"trace_id": rid, "span_id": root_id, "parent_span_id": None, "name": "agent",
                        "start_time_unix_nano": start_ms * 1_000_000,
                        "end_time_unix_nano": (start_ms + duration) * 1_000_000, "events": [],
                        "status": {"code": f"STATUS_CODE_{root_status}", "message": ""},
                        "attributes": _attrs({"mlflow.traceRequestId": rid, "mlflow.spanType": "CHAIN"}), "links": []}
        spans.append({"trace_id": rid, "experiment_id": experiment_id, "span_id": root_id, "parent_span_id": None,
                      "name": "agent", "type": "CHAIN", "status": root_status,
                      "start_time_unix_nano": start_ms * 1_000_000,
                      "end_time_unix_nano": (start_ms + duration) * 1_000_000, "content": json.dumps(root_content)})
        infos.append({"request_id": rid, "experiment_id": experiment_id, "timestamp_ms": start_ms,
                      "execution_time_ms": duration, "status": root_status, "trace_name": "agent",
                      "db_payload_generation": 2, "total_tokens": total_tokens, "total_cost": total_cost})
        tags += [{"key": "mlflow.traceName", "value": "agent", "request_id": rid},
                 {"key": "mlflow.trace.spansLocation", "value": "TRACKING_STORE", "request_id": rid},
                 {"key": "env", "value": env, "request_id": rid}]
        metadata += [{"key": "mlflow.trace_schema.version", "value": "3", "request_id": rid},
                     {"key": "mlflow.trace.infoFinalized", "value": "true", "request_id": rid}]
    engine = sa.create_engine(engine_url)
    meta = sa.MetaData()
    meta.reflect(engine, only=["trace_info", "trace_tags", "trace_request_metadata", "spans"])
    with engine.begin() as conn:
        for table, rows in (("trace_info", infos), ("trace_tags", tags), ("trace_request_metadata", metadata),
                            ("spans", spans)):
            conn.execute(meta.tables[table].insert(), rows)
    engine.dispose()


def build_store(n_traces: int, rebuild: bool) -> str:
    """A cached SQLite store with ``n_traces`` traces in the Default experiment; its tracking URI."""
    import mlflow
    from mlflow import MlflowClient

    key = f"v{LAYOUT_VERSION}-mlflow{mlflow.__version__}-{n_traces}"
    folder = Path(tempfile.gettempdir()) / "mltrack-bench-insights" / key
    db = folder / "mlflow.db"
    uri = f"sqlite:///{db}"
    if db.exists() and not rebuild:
        print(f"store: cached {db}")
        return uri
    folder.mkdir(parents=True, exist_ok=True)
    if db.exists():
        db.unlink()
    started = time.perf_counter()
    MlflowClient(tracking_uri=uri).search_experiments()  # creates and migrates the tables
    populate(uri, 0, n_traces)
    print(f"store: built {db} ({n_traces} traces x 5 spans) in {time.perf_counter() - started:.1f} s")
    return uri


def timed(fn, repeat: int):
    """Best-of and median wall time of ``fn()`` (seconds), and its last result (one run only past 10 s)."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
        if times[-1] > 10:
            break
    return min(times), statistics.median(times), result


def measure(uri: str, repeat: int, tune: bool = False) -> bool:
    import mlflow
    from mlflow.tracing.client import TracingClient

    import mltrack

    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mltrack.configure(tracking_uri=uri)
    ok = True

    def verdict(seconds: float) -> str:
        return "PASS" if seconds <= TARGET_S else "FAIL"

    best, median, found = timed(lambda: mltrack.search_traces(SEARCH), repeat)
    ok &= best <= TARGET_S
    print(f"\nsearch_traces({SEARCH!r}): {len(found)} traces (max_results 1000, full Trace objects)")
    print(f"  best {best:.2f} s, median {median:.2f} s   target <= {TARGET_S:.0f} s  {verdict(best)}")
    best_ids, _, ids_only = timed(lambda: _count_only(SEARCH), repeat)
    print(f"  of which evaluating the filter over every trace: best {best_ids:.2f} s ({ids_only} match in all)")

    theirs = TracingClient(tracking_uri=uri)
    print("\ncorrelation, filters MLflow accepts too (same counts checked):")
    for first, second in BOTH_ACCEPT:
        b_ours, m_ours, ours = timed(lambda: mltrack.calculate_trace_filter_correlation(first, second), repeat)
        b_theirs, m_theirs, ref = timed(
            lambda: theirs.calculate_trace_filter_correlation(["0"], first, second), repeat)
        same = (ours.filter_string1_count, ours.filter_string2_count, ours.joint_count, ours.total_count) == \
            (ref.filter1_count, ref.filter2_count, ref.joint_count, ref.total_count)
        ok &= b_ours <= TARGET_S and same
        print(f"  {first!r} vs {second!r}: npmi {ours.npmi:+.4f} (MLflow {ref.npmi:+.4f}), counts "
              f"{'equal' if same else 'DIFFER'}")
        print(f"    mltrack best {b_ours:.2f} s (median {m_ours:.2f})  MLflow best {b_theirs:.3f} s "
              f"(median {m_theirs:.3f})  ratio mltrack/MLflow {b_ours / b_theirs:.3g}  "
              f"target <= {TARGET_S:.0f} s  {verdict(b_ours)}")
    print("\ncorrelation, filters only mltrack accepts:")
    for first, second in MLTRACK_ONLY:
        b_ours, m_ours, ours = timed(lambda: mltrack.calculate_trace_filter_correlation(first, second), repeat)
        ok &= b_ours <= TARGET_S
        print(f"  {first!r} vs {second!r}: npmi {ours.npmi:+.4f}, counts {ours.filter_string1_count}/"
              f"{ours.filter_string2_count}/{ours.joint_count}/{ours.total_count}")
        print(f"    best {b_ours:.2f} s (median {m_ours:.2f})  target <= {TARGET_S:.0f} s  {verdict(b_ours)}")
    if uri.startswith(("http://", "https://")):
        server_baselines(uri, tune)
    best, median, (hits, ranked) = timed(_insights, repeat)
    print(f"\nmltrack insights (target trace.status = 'ERROR', {hits} traces): {len(ranked)} conditions ranked, "
          f"top {ranked[0].condition!r} npmi {ranked[0].npmi:+.3f}")
    print(f"  best {best:.2f} s (median {median:.2f})  (no target; for information)")
    return ok


def server_baselines(uri: str, tune: bool) -> None:
    """What reading spans costs on this server whoever reads them: batchGet of every trace, and MLflow's client."""
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from mlflow import MlflowClient

    from mltrack.insights import _rest
    from mltrack.insights._load import iter_traces

    client = MlflowClient(tracking_uri=uri)
    reader = _rest.Reader(_rest.rest_store(client))
    ids = [info["trace_id"] for info in reader.infos(["0"], None)]

    def raw(batch: list[str]) -> int:
        return len(requests.get(uri + "/api/3.0/mlflow/traces/batchGet", params={"trace_ids": batch}).content)

    started = time.perf_counter()
    with ThreadPoolExecutor(_rest.THREADS) as pool:
        size = sum(pool.map(raw, [ids[i:i + _rest.BATCH] for i in range(0, len(ids), _rest.BATCH)]))
    floor = time.perf_counter() - started
    print(f"\nthe server's floor for span-reading filters: batchGet of all {len(ids)} traces ({_rest.BATCH} per call, "
          f"{_rest.THREADS} at once, {size / 2**20:.0f} MiB, not decoded): {floor:.2f} s")
    started = time.perf_counter()
    n = sum(1 for _ in iter_traces(client, ["0"], None, include_spans=True))  # pages of 500
    print(f"MLflow's own client reading them with spans (search_traces include_spans=True, {n} traces): "
          f"{time.perf_counter() - started:.2f} s")
    if not tune:
        return
    print("mltrack's reader, all spans read and decoded, by batch size and threads:")
    default = (_rest.BATCH, _rest.THREADS)
    for batch, threads in ((10, 1), (10, 4), (100, 1), (100, 2), (100, 4), (200, 4)):
        _rest.BATCH, _rest.THREADS = batch, threads
        started = time.perf_counter()
        spans = sum(len(_rest.spans_of(t)) for t in reader.traces(ids))
        print(f"  {batch:>3} per call, {threads} thread(s): {time.perf_counter() - started:.2f} s ({spans} spans)"
              f"{'   <- the default' if (batch, threads) == default else ''}")
    _rest.BATCH, _rest.THREADS = default


def _insights():
    """What ``mltrack insights`` computes: read every part of every trace once, rank the candidates."""
    from mltrack.insights._api import client_and_experiments
    from mltrack.insights._candidates import DEFAULT_TARGET, rank
    from mltrack.insights._load import load_views
    from mltrack.insights._parser import parse

    client, exp_ids = client_and_experiments(None, None)
    views = load_views(client, exp_ids, None, {"spans", "span_attributes", "tags", "metadata", "assessments"})
    return rank(views, parse(DEFAULT_TARGET), top=10)


def _count_only(filter_string: str) -> int:
    """How many traces match, without building Trace objects (the evaluation part of a search)."""
    from mltrack.insights._api import evaluate_many
    from mltrack.insights._parser import parse

    _, (matches,) = evaluate_many([parse(filter_string)], None, None, None)
    return sum(matches)


def server_store(n_traces: int):
    """Start PostgreSQL and ``mlflow server`` on it, fill it; returns (http URI, database URL, a function that stops
    both)."""
    from mltrack.testing._mlflow_server import MlflowServer
    from mltrack.testing._postgres import PostgresServer

    folder = Path(tempfile.mkdtemp(prefix="mltrack-bench-insights-server-"))
    postgres = PostgresServer().start()
    server = None
    try:
        url = postgres.create_database("mlflow")
        server = MlflowServer(url, folder / "artifacts", log_path=folder / "server.log", workers=4).start()
        started = time.perf_counter()
        populate(url, 0, n_traces)
    except BaseException:
        if server is not None:
            server.stop()
        postgres.close()
        raise
    print(f"store: mlflow server {server.uri} on PostgreSQL (port {postgres.port}), filled with {n_traces} "
          f"traces x 5 spans in {time.perf_counter() - started:.1f} s")

    def close() -> None:
        server.stop()
        postgres.close()

    return server.uri, url, close


def sqlite_server_store(n_traces: int, rebuild: bool):
    """``mlflow server`` (4 workers) on a copy of the cached SQLite store: MLflow's span filter is slow on SQLite,
    which is what mltrack's grace period for span questions is for. Returns (http URI, a function that stops it)."""
    import shutil

    from mltrack.testing._mlflow_server import MlflowServer

    source = build_store(n_traces, rebuild).removeprefix("sqlite:///")
    folder = Path(tempfile.mkdtemp(prefix="mltrack-bench-insights-sqlite-server-"))
    shutil.copy(source, folder / "mlflow.db")
    server = MlflowServer(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts", log_path=folder / "server.log",
                          workers=4).start()
    print(f"store: mlflow server {server.uri} on a copy of {source}")

    def close() -> None:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    return server.uri, close


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="build the cached store again")
    parser.add_argument("--store", choices=("sqlite", "server", "postgres", "both", "sqlite-server"), default="sqlite",
                        help="MLflow's SQLite store; a PostgreSQL-backed mlflow server over http://; that server's "
                             "database read directly (postgresql://); or all three; or an mlflow server on SQLite")
    parser.add_argument("--tracking-uri", help="an already filled store to measure instead")
    parser.add_argument("--tune", action="store_true", help="server: also time the reader's batch size and threads")
    parser.add_argument("--grace", type=float, help="seconds span questions are waited for after the trace infos "
                                                    "(default: mltrack's QUESTION_GRACE)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's SIGTERM still stops the servers started
    if args.grace is not None:
        from mltrack.insights import _remote

        _remote.QUESTION_GRACE = args.grace
    ok = True
    if args.tracking_uri:
        ok = measure(args.tracking_uri, args.repeat, args.tune)
    if not args.tracking_uri and args.store in ("sqlite", "both"):
        print("== SQLite store ==")
        ok &= measure(build_store(args.traces, args.rebuild), args.repeat)
    if not args.tracking_uri and args.store == "sqlite-server":
        uri, close = sqlite_server_store(args.traces, args.rebuild)
        try:
            print("\n== mlflow server on SQLite (http://) ==")
            ok &= measure(uri, args.repeat, args.tune)
        finally:
            close()
    if not args.tracking_uri and args.store in ("server", "postgres", "both"):
        uri, db_url, close = server_store(args.traces)
        try:
            if args.store in ("postgres", "both"):
                print("\n== the mlflow server's PostgreSQL database, read directly (postgresql://) ==")
                ok &= measure(db_url, args.repeat)
            if args.store in ("server", "both"):
                print("\n== PostgreSQL-backed mlflow server (http://) ==")
                ok &= measure(uri, args.repeat, args.tune)
        finally:
            close()
    print(f"\nsummary: {'PASS' if ok else 'FAIL'} (every timing <= {TARGET_S:.0f} s, counts equal to MLflow's)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
