"""search_traces over traces written with MLflow's own tracing API: every result set, on both ways of reading
(the SQL store's tables directly, and MlflowClient.search_traces as for a remote server)."""

from __future__ import annotations

from decimal import Decimal

import pytest

import mltrack
from _insights_traces import build

# filter -> the names of the traces it must return (order-insensitive)
EXPECTED = {
    "count(span.type = 'LLM') > 3": {"agent-c"},
    "count(span.type = 'LLM') >= 3": {"chat-b", "agent-c"},
    "count(span.type = 'LLM') = 0": {"plain-f"},
    "count(span.type = 'LLM' AND span.status = 'ERROR') = 1": {"chat-b"},
    "span.type = 'LLM' AND span.status = 'ERROR'": {"chat-b", "agent-d"},  # each clause on any span
    "(trace.execution_time_ms > 5000 OR trace.status = 'ERROR') AND tags.env = 'prod'": {"chat-b"},
    "trace.execution_time_ms > 5000 OR trace.status = 'ERROR'": {"chat-b", "agent-d"},
    "trace.execution_time_ms <= 100": {"chat-a", "batch-e", "plain-f"},
    "trace.status = 'OK' AND NOT tags.env = 'prod'": {"agent-c", "batch-e"},
    "tags.env != 'prod'": {"agent-c", "agent-d"},  # a missing tag matches no comparison
    "NOT tags.env = 'prod'": {"agent-c", "agent-d", "batch-e"},
    "tags.env IN ('dev', 'qa')": {"agent-c", "agent-d"},
    "tags.env NOT IN ('dev')": {"chat-a", "chat-b", "plain-f"},
    "tags.retries > 0": {"chat-b", "agent-d"},  # numbers compare as numbers, even in tags
    "tags.retries >= 2": {"chat-b"},
    "trace.name LIKE 'chat%'": {"chat-a", "chat-b"},
    "trace.name IN ('agent-c', 'plain-f')": {"agent-c", "plain-f"},
    "trace.total_cost > 0.005": {"chat-b", "agent-c", "agent-d"},
    "trace.total_cost = 0.006": {"chat-b"},  # exact: summed in Decimal
    "trace.total_cost < 0.005": {"chat-a"},  # unpriced traces have no cost
    "trace.total_tokens > 100": {"chat-b", "agent-c", "agent-d"},
    "trace.total_tokens = 5": {"batch-e"},
    "feedback.rating < 3": {"chat-b", "agent-d"},
    "feedback.rating >= 4": {"chat-a", "agent-c"},
    "feedback.rating = '5'": {"chat-a"},
    "feedback.tone = 'good'": {"plain-f"},
    "expectation.answer = 'yes'": {"agent-c"},
    "assessment.answer = 'yes'": {"agent-c"},
    "feedback.answer = 'yes'": set(),
    "span.attributes['mlflow.llm.model'] = 'gpt-4o'": {"chat-a", "chat-b"},
    "span.attributes.mlflow.llm.model LIKE 'gpt-4o%'": {"chat-a", "chat-b"},
    "span.attributes.mlflow.llm.model ILIKE 'CLAUDE%'": {"agent-c", "agent-d"},
    "span.attributes.mlflow.llm.model LIKE 'CLAUDE%'": set(),  # LIKE is case-sensitive
    "span.attributes.k >= 3": {"plain-f"},
    "span.attributes.query = 'weather'": {"agent-c"},
    "span.name = 'search'": {"agent-c", "agent-d"},
    "span.status = 'ERROR'": {"chat-b", "agent-d"},
    "NOT span.status = 'ERROR'": {"chat-a", "agent-c", "batch-e", "plain-f"},
    "count(span.type = 'TOOL') >= 1 AND trace.status = 'OK'": {"agent-c"},
    "span.type = 'LLM' AND feedback.rating < 3 AND span.attributes.mlflow.llm.provider = 'anthropic'": {"agent-d"},
}


@pytest.fixture(params=["sql-tables", "mlflow-client"])
def traces(request, store, monkeypatch):
    if request.param == "mlflow-client":  # read through MlflowClient.search_traces, as for any non-SQL store
        from mltrack.insights import _load

        monkeypatch.setattr(_load, "sql_store", lambda client: None)
    return build(store.uri)


def _names(found) -> set[str]:
    return {t.info.tags["mlflow.traceName"] for t in found}


def test_every_filter_returns_exactly_its_traces(traces):
    got = {f: _names(mltrack.search_traces(f)) for f in EXPECTED}
    assert got == EXPECTED
    everything = mltrack.search_traces()
    assert len(everything) == 6
    assert all(t.data.spans for t in everything)  # MLflow Trace objects, spans included


def test_order_by_and_max_results(traces):
    slowest = mltrack.search_traces(order_by=["execution_time_ms DESC"], max_results=2)
    assert [t.info.tags["mlflow.traceName"] for t in slowest] == ["agent-d", "chat-b"]
    newest = mltrack.search_traces("tags.env = 'prod'")
    assert [t.info.tags["mlflow.traceName"] for t in newest] == ["plain-f", "chat-b", "chat-a"]
    oldest = mltrack.search_traces("tags.env = 'prod'", order_by=["trace.timestamp_ms ASC"], max_results=1)
    assert [t.info.tags["mlflow.traceName"] for t in oldest] == ["chat-a"]
    assert [t.info.execution_duration for t in slowest] == [7000, 6000]


def test_experiment_by_name_and_ids(store):
    from mlflow import MlflowClient

    other = MlflowClient(tracking_uri=store.uri).create_experiment("other")
    build(store.uri, experiment_id=other)
    assert len(mltrack.search_traces("count(span.type = 'LLM') > 3", experiment="other")) == 1
    assert len(mltrack.search_traces(experiment_ids=[other])) == 6
    assert mltrack.search_traces() == []  # the default experiment has none
    mltrack.configure(experiment_name="other")
    assert len(mltrack.search_traces("trace.status = 'ERROR'")) == 2
    with pytest.raises(ValueError, match="no experiment named 'nope'"):
        mltrack.search_traces(experiment="nope")


def test_bad_input_is_named(store):
    with pytest.raises(mltrack.FilterError, match="position 13"):
        mltrack.search_traces("trace.status IS NULL")
    with pytest.raises(ValueError, match="order_by clause 'cost DESC'"):
        mltrack.search_traces(order_by=["cost DESC"])
    with pytest.raises(ValueError, match="max_results must be a positive number, got 0"):
        mltrack.search_traces(max_results=0)


def test_trace_totals_come_from_the_spans(traces):
    from mltrack.insights._views import view_of_trace

    views = {v.name: v for v in map(view_of_trace, mltrack.search_traces())}
    assert {n: v.total_cost for n, v in views.items()} == {
        "chat-a": Decimal("0.001"), "chat-b": Decimal("0.006"), "agent-c": Decimal("0.04"),
        "agent-d": Decimal("0.02"), "batch-e": None, "plain-f": None}
    assert {n: v.total_tokens for n, v in views.items()} == {
        "chat-a": 10, "chat-b": 300, "agent-c": 200, "agent-d": 120, "batch-e": 5, "plain-f": None}


def test_pushed_part_is_accepted_by_mlflow_and_keeps_every_match(store):
    from mlflow import MlflowClient

    from mltrack.insights._parser import parse
    from mltrack.insights._pushdown import conjuncts, native_clause, native_filter

    build(store.uri)
    client = MlflowClient(tracking_uri=store.uri)
    pushed = {}
    for text, expected in EXPECTED.items():
        native = native_filter(parse(text))
        if native is None:
            continue
        found = _names(client.search_traces(locations=["0"], filter_string=native, max_results=100))
        assert expected <= found, (text, native)
        clauses = [native_clause(c) for c in conjuncts(parse(text))]
        if None not in clauses and native == " AND ".join(clauses):
            pushed[text] = native
            assert found == expected, (text, native)  # wholly pushed: MLflow's answer is ours
    assert pushed == {
        "tags.env != 'prod'": "tags.`env` != 'prod'",
        "trace.execution_time_ms <= 100": "trace.execution_time_ms <= 100",
        "trace.name LIKE 'chat%'": "trace.name LIKE 'chat%'",
        "span.name = 'search'": "span.name = 'search'",
        "span.status = 'ERROR'": "span.status = 'ERROR'",
    }
    assert native_filter(parse("trace.status = 'ERROR' AND span.type = 'LLM' AND span.name = 'x' OR tags.a = 'b'")) \
        is None
    assert native_filter(parse("trace.status = 'ERROR' AND span.type = 'LLM' AND span.name = 'x' AND "
                               "count(span.type = 'LLM') > 2 AND trace.total_cost > 1")) == \
        "trace.status = 'ERROR' AND span.type = 'LLM'"


def test_traces_that_mltrack_itself_writes(store):
    """What mltrack's writer puts on its LLM spans (tokens, cost, model) is what trace.total_* and
    span.attributes read; gpt-4o-mini costs $0.15 / $0.60 per 1M tokens."""
    with mltrack.track_llm_context("agent", model="gpt-4o-mini") as tracker:
        for prompt_tokens in (1000, 2000, 3000):
            tracker.log_prompt_response("q", "a", token_usage={"prompt_tokens": prompt_tokens,
                                                                "completion_tokens": 100})
    with mltrack.track_llm_context("single", model="gpt-4o-mini") as tracker:
        tracker.log_prompt_response("q", "a", token_usage={"prompt_tokens": 10, "completion_tokens": 1})
    assert mltrack.flush(timeout=60)
    cost = (Decimal(6000) * Decimal("0.15") + Decimal(300) * Decimal("0.60")) / 10**6  # 0.00108
    assert _names(mltrack.search_traces("count(span.type = 'LLM') = 3")) == {"agent"}
    assert _names(mltrack.search_traces(f"trace.total_cost = {cost}")) == {"agent"}
    assert _names(mltrack.search_traces("trace.total_tokens = 6300")) == {"agent"}  # run tags stay on the run
    assert _names(mltrack.search_traces("span.attributes['mlflow.llm.model'] = 'gpt-4o-mini'")) == {"agent", "single"}
    assert _names(mltrack.search_traces("trace.total_cost < 0.00001")) == {"single"}
