"""Each LLM call is an MLflow span of type LLM with tokens and cost; @track is its parent span, linked to the run."""

from __future__ import annotations

from decimal import Decimal

import pytest

import mltrack
from mltrack.testing import ScriptedReply


def _traces(store, run_id):
    return store.client.search_traces(locations=["0"], run_id=run_id)


def _per_million(tokens, rate):
    return Decimal(tokens) * Decimal(rate) / 10**6


def test_track_function_is_the_root_span_of_its_calls(store, fake_llm, openai_client):
    mltrack.instrument("openai")
    try:
        fake_llm.queue(ScriptedReply(text="first", usage={"prompt_tokens": 100, "completion_tokens": 10,
                                                          "total_tokens": 110}),
                       ScriptedReply(text="second", usage={"prompt_tokens": 50, "completion_tokens": 5,
                                                           "total_tokens": 55}))

        @mltrack.track(name="agent")
        def agent():
            for q in ("a", "b"):
                openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": q}])
            return "done"

        agent()
    finally:
        mltrack.uninstrument("openai")
    mltrack.flush(timeout=60)
    run = store.run_named("agent")
    traces = _traces(store, run.info.run_id)
    assert len(traces) == 1
    spans = traces[0].data.spans
    root = next(s for s in spans if s.parent_id is None)
    llm = sorted((s for s in spans if s.span_type == "LLM"), key=lambda s: s.start_time_ns)
    assert root.name == "agent" and len(llm) == 2 and all(s.parent_id == root.span_id for s in llm)
    assert llm[0].attributes["mlflow.chat.tokenUsage"] == {"input_tokens": 100, "output_tokens": 10,
                                                          "total_tokens": 110}
    assert llm[0].attributes["mlflow.llm.cost"]["total_cost"] == float(_per_million(100, "0.15") + _per_million(10, "0.60"))
    assert llm[1].attributes["mlflow.llm.model"] == "gpt-4o-mini"
    assert llm[1].attributes["mlflow.llm.provider"] == "openai"
    assert llm[0].outputs == {"text": "first"}


def test_tracker_calls_are_traces_of_their_own_without_text_when_logging_is_off(store):
    mltrack.configure(llm_log_prompts=False, llm_log_responses=False)
    tracker = mltrack.LLMTracker(model="claude-3-5-haiku-20241022")
    tracker.log_prompt_response("secret prompt", "secret answer", latency_ms=250.0,
                                token_usage={"input_tokens": 20, "output_tokens": 8})
    mltrack.flush(timeout=60)
    traces = _traces(store, tracker.run_id)
    assert len(traces) == 1
    (span,) = traces[0].data.spans
    assert span.span_type == "LLM" and span.inputs is None and span.outputs is None
    assert span.attributes["mlflow.llm.cost"]["total_cost"] == float(_per_million(20, "0.80") + _per_million(8, "4"))
    assert (span.end_time_ns - span.start_time_ns) / 1e6 == pytest.approx(250.0, abs=0.001)  # ns from float ms
    assert "secret" not in str(traces[0].to_dict())


def test_traces_can_be_turned_off(store):
    mltrack.configure(llm_log_traces=False)
    with mltrack.track_llm_context("quiet", model="gpt-4o-mini") as tracker:
        tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 1, "completion_tokens": 1})
        run_id = tracker.run_id
    mltrack.flush(timeout=60)
    assert _traces(store, run_id) == []


def test_a_run_with_more_calls_than_the_span_cap_keeps_the_first_ones_and_says_how_many_have_none(store):
    from mltrack.writer.spans import MAX_CHILDREN

    extra = 7
    with mltrack.track_llm_context("many-calls", model="gpt-4o-mini") as tracker:
        for i in range(MAX_CHILDREN + extra):
            tracker.log_prompt_response(f"p{i}", f"r{i}", token_usage={"prompt_tokens": 2, "completion_tokens": 1})
    mltrack.flush(timeout=120)
    run = store.run_named("many-calls")
    assert run.data.metrics["llm.calls"] == MAX_CHILDREN + extra  # metrics are complete
    (trace,) = _traces(store, run.info.run_id)
    root = next(s for s in trace.data.spans if s.parent_id is None)
    llm = [s for s in trace.data.spans if s.span_type == "LLM"]
    assert len(llm) == MAX_CHILDREN and root.attributes["mltrack.llm_calls_without_span"] == extra
    assert sorted(s.outputs["text"] for s in llm) == sorted(f"r{i}" for i in range(MAX_CHILDREN))  # the first ones


def test_the_runs_tags_are_on_its_traces_so_trace_search_finds_them(store):
    """``track_llm_context(tags=...)`` / ``@track(tags=...)``: the user's run tags are copied onto the run's trace
    (not mltrack's or MLflow's own run tags), so ``tags.env = 'prod'`` finds the calls of production runs."""
    with mltrack.track_llm_context("prod-block", model="gpt-4o-mini", tags={"env": "prod", "team": "search"}) as t:
        t.log_prompt_response("p", "r", token_usage={"prompt_tokens": 1000, "completion_tokens": 10})
        prod_run = t.run_id

    @mltrack.track(name="dev-fn", tags={"env": "dev"})
    def dev():
        mltrack.LLMTracker(model="gpt-4o-mini").log_prompt_response(
            "p", "r", token_usage={"prompt_tokens": 2000, "completion_tokens": 20})

    dev()
    mltrack.flush(timeout=60)
    (trace,) = _traces(store, prod_run)
    assert {k: v for k, v in trace.info.tags.items() if not k.startswith("mlflow.")} == {"env": "prod",
                                                                                          "team": "search"}
    found = mltrack.search_traces("tags.env = 'prod'")
    assert [t.info.trace_id for t in found] == [trace.info.trace_id]
    assert found[0].info.tags["mlflow.traceName"] == "prod-block"
    (dev_trace,) = mltrack.search_traces("tags.env = 'dev'")
    assert dev_trace.info.tags["mlflow.traceName"] == "dev-fn"
    r = mltrack.calculate_trace_filter_correlation("tags.env = 'prod'", "trace.total_tokens > 1500")
    assert (r.filter_string1_count, r.filter_string2_count, r.joint_count, r.total_count) == (1, 1, 0, 2)
