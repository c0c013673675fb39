"""search_traces and calculate_trace_filter_correlation against a real PostgreSQL-backed ``mlflow server`` over
http:// (tests/server_fixtures.py): traces of known composition written with MLflow's own tracing API."""

from __future__ import annotations

import math

import pytest
from _insights_traces import ONLY_MLTRACK_COUNTS, build

import mltrack

pytestmark = pytest.mark.server

EXPECTED = {
    "count(span.type = 'LLM') > 3": {"agent-c"},
    "count(span.type = 'LLM') >= 3 AND tags.env = 'prod'": {"chat-b"},
    "count(span.type = 'LLM' AND span.status = 'ERROR') = 1": {"chat-b"},
    "trace.execution_time_ms > 5000 OR trace.status = 'ERROR'": {"chat-b", "agent-d"},
    "trace.status = 'OK' AND NOT tags.env = 'prod'": {"agent-c", "batch-e"},
    "trace.total_cost > 0.005": {"chat-b", "agent-c", "agent-d"},
    "trace.total_cost = 0.006": {"chat-b"},
    "trace.total_tokens > 100": {"chat-b", "agent-c", "agent-d"},
    "feedback.rating < 3": {"chat-b", "agent-d"},
    "span.attributes['mlflow.llm.model'] = 'gpt-4o'": {"chat-a", "chat-b"},
    "tags.retries > 0": {"chat-b", "agent-d"},
}
BOTH_ACCEPT = [
    ("span.type = 'TOOL'", "trace.status = 'ERROR'", None),
    ("tags.env = 'prod'", "trace.execution_time_ms > 5000", None),
    ("trace.name LIKE 'chat%'", "tags.env = 'dev'", None),  # never together: -1
    ("tags.env = 'qa'", "trace.status = 'ERROR'", None),  # matches nothing: NaN
    ("span.type = 'LLM'", "trace.status = 'ERROR'", "trace.execution_time_ms > 60"),
]


def _same(a: float, b: float | None) -> bool:
    if b is None:  # MLflow's REST answer leaves NaN out (None); in-process it is NaN, as ours always is
        b = math.nan
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


@pytest.fixture
def built(server_store):
    experiment_id = server_store.client.create_experiment(server_store.experiment)
    build(server_store.uri, experiment_id=experiment_id)
    return server_store, experiment_id


def test_search_on_the_server(built):
    for filter_string, names in EXPECTED.items():
        found = mltrack.search_traces(filter_string)
        assert {t.info.tags["mlflow.traceName"] for t in found} == names, filter_string
    newest_first = mltrack.search_traces("count(span.type = 'LLM') >= 1")
    assert [t.info.tags["mlflow.traceName"] for t in newest_first] == ["batch-e", "agent-d", "agent-c", "chat-b",
                                                                        "chat-a"]
    assert len(newest_first[2].data.spans) == 6  # full traces: the root and its five children


def test_correlation_on_the_server_equals_mlflows(built):
    from mlflow.tracing.client import TracingClient

    store, experiment_id = built
    theirs_client = TracingClient(tracking_uri=store.uri)
    for first, second, base in BOTH_ACCEPT:
        ours = mltrack.calculate_trace_filter_correlation(first, second, base_filter=base)
        theirs = theirs_client.calculate_trace_filter_correlation([experiment_id], first, second, base_filter=base)
        assert (ours.filter_string1_count, ours.filter_string2_count, ours.joint_count, ours.total_count) == \
            (theirs.filter1_count, theirs.filter2_count, theirs.joint_count, theirs.total_count), (first, second)
        assert _same(ours.npmi, theirs.npmi) and _same(ours.npmi_smoothed, theirs.npmi_smoothed), (first, second)
    for (first, second, base), counts in ONLY_MLTRACK_COUNTS.items():
        r = mltrack.calculate_trace_filter_correlation(first, second, base_filter=base)
        assert (r.filter_string1_count, r.filter_string2_count, r.joint_count, r.total_count) == counts, first
    r = mltrack.calculate_trace_filter_correlation("tags.retries > 0", "trace.status = 'ERROR'")
    assert (r.joint_count, r.total_count, r.npmi) == (2, 6, 1.0)


def test_the_servers_database_read_directly_gives_the_same_answers(built, postgres, monkeypatch):
    """docs/insights.md: pointing mltrack at the server's PostgreSQL database takes the bulk SQL path."""
    from mltrack import config
    from mltrack.insights import _load
    from mltrack.insights._api import client_and_experiments

    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres.url("mlflow"))
    config.reset()
    client, _ = client_and_experiments(None, None)
    assert _load.sql_store(client) is not None
    for filter_string in ("count(span.type = 'LLM') > 3", "trace.total_cost = 0.006", "feedback.rating < 3",
                          "trace.status = 'OK' AND NOT tags.env = 'prod'"):
        found = mltrack.search_traces(filter_string)
        assert {t.info.tags["mlflow.traceName"] for t in found} == EXPECTED[filter_string], filter_string
    r = mltrack.calculate_trace_filter_correlation("count(span.type = 'LLM') > 2", "trace.status = 'ERROR'")
    assert (r.filter_string1_count, r.filter_string2_count, r.joint_count, r.total_count) == (2, 2, 1, 6)
    config.reset()


def test_views_read_as_json_equal_the_views_of_mlflows_traces(built):
    """The REST reader decodes trace infos, assessments and OTLP span attributes itself; every field a filter
    can read must equal what MLflow's own client builds from the same traces."""
    from mlflow import MlflowClient

    from mltrack.insights import _remote, _rest
    from mltrack.insights._views import view_of_trace

    store, experiment_id = built
    client = MlflowClient(tracking_uri=store.uri)
    reader = _rest.Reader(_rest.rest_store(client))
    ours = [_rest.view_of_info(i) for i in reader.infos([experiment_id], None)]
    _remote.fill_spans(reader, store.uri, ours)
    theirs = {t.info.trace_id: view_of_trace(t) for t in client.search_traces(locations=[experiment_id])}
    assert len(ours) == len(theirs) == 6
    for view in ours:
        ref = theirs[view.trace_id]
        assert (view.status, view.timestamp_ms, view.execution_time_ms, view.name, dict(view.tags)) == \
            (ref.status, ref.timestamp_ms, ref.execution_time_ms, ref.name, dict(ref.tags)), ref.name
        assert dict(view.metadata) == dict(ref.metadata), ref.name
        assert sorted(view.assessments, key=repr) == sorted(ref.assessments, key=repr), ref.name
        assert [(s.name, s.type, s.status, dict(s.attributes)) for s in view.spans] == \
            [(s.name, s.type, s.status, dict(s.attributes)) for s in ref.spans], ref.name
        assert (view.total_cost, view.total_tokens) == (ref.total_cost, ref.total_tokens), ref.name
    assert sum(len(v.spans) for v in ours) == 2 + 4 + 6 + 4 + 2 + 2  # the compositions built, roots included


def test_spans_are_read_only_for_traces_the_server_cannot_decide(built, monkeypatch):
    """Span clauses MLflow answers exactly become trace-id sets; spans are fetched only where a filter's answer
    still depends on them (count above 1, span attributes, cost and tokens)."""
    from mltrack.insights import _remote, _rest

    monkeypatch.setattr(_remote, "QUESTION_GRACE", 60.0)  # a loaded machine must not give questions up here
    fetched: list[str] = []
    original = _rest.Reader.traces

    def counting(self, trace_ids):
        fetched.extend(trace_ids)
        return original(self, trace_ids)

    monkeypatch.setattr(_rest.Reader, "traces", counting)
    r = mltrack.calculate_trace_filter_correlation("span.type = 'TOOL'", "trace.status = 'ERROR'")
    assert (r.filter_string1_count, r.joint_count, r.total_count, fetched) == (2, 1, 6, [])
    r = mltrack.calculate_trace_filter_correlation("count(span.type = 'LLM' AND span.status = 'ERROR') >= 1",
                                                   "NOT span.name = 'search'")
    assert (r.filter_string1_count, r.filter_string2_count, r.joint_count, fetched) == (1, 4, 1, [])
    by_name = {t.info.trace_id: t.info.tags["mlflow.traceName"] for t in mltrack.search_traces()}
    fetched.clear()
    assert {t.info.tags["mlflow.traceName"] for t in mltrack.search_traces("count(span.type = 'LLM') > 3")} == \
        {"agent-c"}
    assert {by_name[i] for i in fetched} == {"chat-a", "chat-b", "agent-c", "agent-d", "batch-e"}  # not plain-f
    fetched.clear()
    found = mltrack.search_traces("count(span.type = 'LLM') > 3 AND tags.env = 'prod'")
    assert (found, {by_name[i] for i in fetched}) == ([], {"chat-a", "chat-b"})


def test_run_tags_reach_traces_written_to_the_server(server_store):
    """mltrack writes traces to a server as OTLP (its REST client): the run's tags must land as trace tags there
    too, so ``tags.env`` finds the calls of a ``track_llm_context(tags=...)`` block over http://."""
    with mltrack.track_llm_context("prod-block", model="gpt-4o-mini", tags={"env": "prod"}) as tracker:
        tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 1000, "completion_tokens": 10})
    with mltrack.track_llm_context("dev-block", model="gpt-4o-mini", tags={"env": "dev"}) as tracker:
        tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 3000, "completion_tokens": 10})
    mltrack.flush(timeout=60)
    (found,) = mltrack.search_traces("tags.env = 'prod'")
    assert (found.info.tags["mlflow.traceName"], found.info.tags["env"]) == ("prod-block", "prod")
    r = mltrack.calculate_trace_filter_correlation("tags.env = 'dev'", "trace.total_tokens > 2000")
    assert (r.filter_string1_count, r.filter_string2_count, r.joint_count, r.total_count) == (1, 1, 1, 2)


def test_span_questions_given_up_are_answered_from_spans(built, monkeypatch):
    """A server on SQLite runs MLflow's span filter for seconds per page; mltrack gives such a question up after
    a grace period and reads the spans instead. The answers must not change (here every question is given up)."""
    from mltrack.insights import _rest

    def given_up(self, experiment_ids, filter_string, stop=None):
        raise _rest.Stopped(filter_string)

    monkeypatch.setattr(_rest.Reader, "trace_ids", given_up)
    for filter_string in ("count(span.type = 'LLM') > 3", "count(span.type = 'LLM') >= 3 AND tags.env = 'prod'",
                          "span.attributes['mlflow.llm.model'] = 'gpt-4o'"):
        found = mltrack.search_traces(filter_string)
        assert {t.info.tags["mlflow.traceName"] for t in found} == EXPECTED[filter_string], filter_string
    r = mltrack.calculate_trace_filter_correlation("span.type = 'TOOL'", "trace.status = 'ERROR'")
    assert (r.filter_string1_count, r.filter_string2_count, r.joint_count, r.total_count) == (2, 2, 1, 6)


def test_a_server_without_the_v3_trace_search_is_read_through_mlflows_client(built, monkeypatch):
    """An MLflow server older than the v3 trace API answers 404 to mltrack's JSON reader: the filters still work,
    through MLflow's own client (which falls back to the older search). A real proxy in front of the server plays
    the old server by refusing that one endpoint."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import mlflow
    import requests

    from mltrack import config

    store, _ = built
    refused: list[str] = []

    class OldServer(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/api/3.0/mlflow/traces/search"):
                refused.append(self.path)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            reply = requests.request(self.command, store.uri + self.path, data=body or None,
                                     headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
            self.send_response(reply.status_code)
            self.send_header("Content-Type", reply.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        do_GET = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, *args) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), OldServer)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{proxy.server_address[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        config.reset()
        for filter_string in ("count(span.type = 'LLM') > 3", "feedback.rating < 3", "trace.total_cost = 0.006"):
            found = mltrack.search_traces(filter_string)
            assert {t.info.tags["mlflow.traceName"] for t in found} == EXPECTED[filter_string], filter_string
        r = mltrack.calculate_trace_filter_correlation("count(span.type = 'LLM') > 2", "trace.status = 'ERROR'")
        assert (r.filter_string1_count, r.filter_string2_count, r.joint_count, r.total_count) == (2, 2, 1, 6)
        assert refused  # mltrack's reader asked first, and was refused
    finally:
        proxy.shutdown()
        mlflow.set_tracking_uri(store.uri)
        config.reset()
