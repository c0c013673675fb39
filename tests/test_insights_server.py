"""search_traces and calculate_trace_filter_correlation against a real PostgreSQL-backed ``mlflow server`` over
http:// (tests/server_fixtures.py): traces of known composition written with MLflow's own tracing API."""

from __future__ import annotations

import math

import pytest
from _insights_traces import build

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
    only_ours = {
        ("count(span.type = 'LLM') > 2", "trace.status = 'ERROR'", None): (2, 2, 1, 6),
        ("trace.execution_time_ms > 5000 OR trace.status = 'ERROR'", "tags.env = 'prod'", None): (2, 3, 1, 6),
        ("trace.total_cost > 0.005", "feedback.rating < 3", None): (3, 2, 2, 6),
        ("count(span.type = 'LLM') >= 1", "trace.total_tokens > 100", "tags.env IN ('prod', 'dev')"): (4, 3, 3, 5),
    }
    for (first, second, base), counts in only_ours.items():
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
