"""Evaluate filters against an ``mlflow server``: trace infos in pages, span questions as id sets, spans last.

1. The trace infos (status, times, tags, metadata, assessments) of the experiment, narrowed by the part of the
   base filter the server answers exactly, span clauses left out.
2. Each "some span matches ..." question of the filters, asked of the server once, at the same time
   (``_partial``).
3. Spans only for the traces the answers above leave undecided, then the whole filter on those.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from mltrack.insights._ast import Node
from mltrack.insights._evaluate import compile_filter, needs
from mltrack.insights._load import refused_filter
from mltrack.insights._partial import decide, span_questions
from mltrack.insights._pushdown import native_filter, native_parts
from mltrack.insights._rest import Reader, Stopped, rest_store, spans_of, view_of_info
from mltrack.insights._views import TraceView, view_of_trace

_IN_THE_DATABASE = "TRACKING_STORE"  # spans kept in the server's database: batchGet returns them
QUESTION_GRACE = 1.0  # s; bench_insights.py --store sqlite-server: search 12.4 s, with --grace 600 610 s


def _split_by_location(views: list[TraceView]) -> tuple[list[str], list[str]]:
    """Trace ids whose spans the server keeps in its database, and the others (artifacts, archives, and older
    traces without the tag, which MLflow's client reads from artifacts too)."""
    in_db, elsewhere = [], []
    for view in views:
        in_database = view.tags.get("mlflow.trace.spansLocation") == _IN_THE_DATABASE
        (in_db if in_database else elsewhere).append(view.trace_id)
    return in_db, elsewhere


def _infos(reader: Reader, experiment_ids: list[str], native: str | None) -> list[TraceView]:
    """The views of the traces ``native`` keeps (all of them from a server that refuses the filter)."""
    try:
        return [view_of_info(i) for i in reader.infos(experiment_ids, native)]
    except Exception as exc:
        if native is None or not refused_filter(exc):
            raise
        return [view_of_info(i) for i in reader.infos(experiment_ids, None)]


def _ids_or_none(reader: Reader, experiment_ids: list[str], filter_string: str,
                 stop: threading.Event) -> set[str] | None:
    """The ids of the traces matching ``filter_string``; None when the server refuses the question or it was given
    up (then the spans answer it)."""
    try:
        return reader.trace_ids(experiment_ids, filter_string, stop)
    except Stopped:
        return None
    except Exception as exc:
        if not refused_filter(exc):
            raise
        return None


def _read(reader: Reader, experiment_ids: list[str], base: Node | None,
          questions: set[str]) -> tuple[list[TraceView], dict[str, set[str]]]:
    """The trace views ``base`` narrows to and the trace ids per span question, asked of the server at once.

    A question still unanswered ``QUESTION_GRACE`` after the infos are read (or as long again as they took, if
    longer) is given up and answered from spans: a server on SQLite runs MLflow's span filter for seconds per page.
    """
    native = native_filter(base, spans=False)
    scope = native_parts(base, spans=False)
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=min(1 + len(questions), 8), thread_name_prefix="mltrack-insights")
    sets: dict[str, set[str]] = {}
    try:
        started = time.monotonic()
        views_read = pool.submit(_infos, reader, experiment_ids, native)
        answers = {q: pool.submit(_ids_or_none, reader, experiment_ids, " AND ".join(scope + [q]), stop)
                   for q in sorted(questions)}
        views = views_read.result()
        deadline = time.monotonic() + max(QUESTION_GRACE, time.monotonic() - started)
        for question, answer in answers.items():
            try:
                found = answer.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                continue
            if found is not None:
                sets[question] = found
    finally:
        stop.set()  # questions still running stop after their current page
        pool.shutdown(wait=False, cancel_futures=True)
    return views, sets


def fill_spans(reader: Reader, store_uri: str, views: list[TraceView]) -> None:
    """Read the spans of ``views`` (batchGet where the server keeps them in its database, else MLflow's client)."""
    by_id = {v.trace_id: v for v in views}
    in_db, elsewhere = _split_by_location(views)
    for trace in reader.traces(in_db):
        by_id[trace["trace_info"]["trace_id"]].spans = spans_of(trace)
    if elsewhere:
        from mlflow.tracing.client import TracingClient

        for trace in TracingClient(tracking_uri=store_uri).batch_get_traces(elsewhere):
            by_id[trace.info.trace_id].spans = view_of_trace(trace).spans


def evaluate(client: Any, experiment_ids: list[str], nodes: list[Node],
             base: Node | None) -> tuple[list[TraceView], list[list[bool]]]:
    """The traces matching ``base`` and, per node, whether each matches (as ``_api.evaluate_many``); the client's
    store is a REST store (``_rest.rest_store``)."""
    reader = Reader(rest_store(client))
    every = nodes + ([base] if base is not None else [])
    questions: set[str] = set()
    if any("spans" in needs(n) for n in every):
        for node in every:
            questions |= span_questions(node)
    views, sets = _read(reader, experiment_ids, base, questions)
    deciders = [decide(n, sets) for n in every]
    in_db = set(_split_by_location(views)[0])  # the server's span questions see only spans in its database
    answers = [[d(v) for d in deciders] if v.trace_id in in_db else [None] * len(every) for v in views]
    undecided = [v for v, row in zip(views, answers) if None in row]
    fill_spans(reader, client.tracking_uri, undecided)
    full = [compile_filter(n) for n in every]
    for view, row in zip(views, answers):
        for i, value in enumerate(row):
            if value is None:
                row[i] = full[i](view)
    if base is not None:
        kept = [(v, row) for v, row in zip(views, answers) if row[-1]]
        views, answers = [k[0] for k in kept], [k[1] for k in kept]
    return views, [[row[i] for row in answers] for i in range(len(nodes))]


def full_traces(client: Any, views: list[TraceView]) -> dict[str, Any]:
    """MLflow ``Trace`` objects (spans included) of the given traces, by id, decoded by MLflow's own client."""
    from mlflow.tracing.client import TracingClient

    from mltrack.insights._rest import BATCH, THREADS

    in_db, elsewhere = _split_by_location(views)
    store = rest_store(client)
    found: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="mltrack-insights") as pool:
        batches = [in_db[i:i + BATCH] for i in range(0, len(in_db), BATCH)]
        for traces in pool.map(store.batch_get_traces, batches):
            found.update((t.info.trace_id, t) for t in traces)
    if elsewhere:  # spans kept as artifacts: MLflow's client knows where to read them
        found.update((t.info.trace_id, t) for t in TracingClient(tracking_uri=client.tracking_uri)
                     .batch_get_traces(elsewhere))
    return found
