"""Instrumented calls inside the user's own MLflow trace are child LLM spans of it (one trace), carrying the
same token and cost attributes as mltrack's own spans, and open no run of their own."""

from __future__ import annotations

import json
from decimal import Decimal

import mlflow
import pytest

import mltrack
from mltrack.testing import ScriptedReply

USAGES = [{"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
          {"prompt_tokens": 1000, "completion_tokens": 7, "total_tokens": 1007,
           "prompt_tokens_details": {"cached_tokens": 512}}]


def mini(prompt: int, completion: int, cached: int = 0) -> tuple[float, float, float]:
    """gpt-4o-mini input / output / total cost in USD ($0.15, $0.075 cached, $0.60 per 1M)."""
    inp = ((prompt - cached) * Decimal("0.15") + cached * Decimal("0.075")) / 10**6
    out = completion * Decimal("0.60") / 10**6
    return float(inp), float(out), float(inp + out)


@pytest.fixture
def instrumented():
    mltrack.instrument("openai")
    yield
    mltrack.uninstrument("openai")


def _ask(client, text):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])


def _traces(store):
    flush = getattr(mlflow, "flush_trace_async_logging", None)
    if callable(flush):
        flush()
    return store.client.search_traces(locations=["0"], max_results=100)


def _attr(span, key):
    value = span.attributes.get(key)
    return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value


def _check_llm_span(span, usage, cached=0):
    assert span.span_type == "LLM" and span.name == "gpt-4o-mini"
    assert _attr(span, "mlflow.chat.tokenUsage")["input_tokens"] == usage["prompt_tokens"]
    assert _attr(span, "mlflow.chat.tokenUsage")["output_tokens"] == usage["completion_tokens"]
    assert _attr(span, "mlflow.chat.tokenUsage")["total_tokens"] == usage["total_tokens"]
    inp, out, total = mini(usage["prompt_tokens"], usage["completion_tokens"], cached)
    assert _attr(span, "mlflow.llm.cost") == {"input_cost": inp, "output_cost": out, "total_cost": total}
    assert _attr(span, "mlflow.llm.model") == "gpt-4o-mini" and _attr(span, "mlflow.llm.provider") == "openai"


def test_calls_in_an_mlflow_trace_function_are_its_child_spans(store, fake_llm, openai_client, instrumented):
    @mlflow.trace(name="pipeline")
    def pipeline():
        return [_ask(openai_client, "one").choices[0].message.content,
                _ask(openai_client, "two").choices[0].message.content]

    fake_llm.queue(ScriptedReply(text="a", usage=USAGES[0]), ScriptedReply(text="b", usage=USAGES[1]))
    assert pipeline() == ["a", "b"]
    assert mltrack.flush(timeout=30) is True
    traces = _traces(store)
    assert len(traces) == 1  # one trace, not one per call
    spans = traces[0].data.spans
    root = [s for s in spans if s.parent_id is None]
    assert [s.name for s in root] == ["pipeline"]
    children = sorted((s for s in spans if s.parent_id == root[0].span_id), key=lambda s: s.start_time_ns)
    assert len(spans) == 3 and len(children) == 2
    _check_llm_span(children[0], USAGES[0])
    _check_llm_span(children[1], USAGES[1], cached=512)
    assert children[0].inputs == {"messages": [{"role": "user", "content": "one"}]}
    assert children[1].outputs == {"text": "b"}
    assert root[0].start_time_ns <= children[0].start_time_ns < children[0].end_time_ns <= children[1].start_time_ns
    assert children[1].end_time_ns <= root[0].end_time_ns
    assert store.runs() == []  # no chat-* run


def test_calls_in_start_span_inside_the_users_run_log_metrics_there_and_no_second_span(store, fake_llm,
                                                                                        openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text="a", usage=USAGES[0]))
    with mlflow.start_run(run_name="mine") as run:
        with mlflow.start_span(name="step") as span:
            _ask(openai_client, "one")
            span.set_outputs("done")
    assert mltrack.flush(timeout=30) is True
    traces = _traces(store)
    assert len(traces) == 1
    spans = traces[0].data.spans
    assert sorted(s.name for s in spans) == ["gpt-4o-mini", "step"]
    llm = next(s for s in spans if s.name == "gpt-4o-mini")
    assert llm.parent_id == next(s for s in spans if s.name == "step").span_id
    _check_llm_span(llm, USAGES[0])
    assert [r.info.run_name for r in store.runs()] == ["mine"]  # the user's run only
    assert store.history(run.info.run_id, "llm.calls") == [(0, 1)]
    assert store.history(run.info.run_id, "llm.cost.total") == [(0, mini(120, 30)[2])]


def test_a_user_span_inside_track_holds_the_call(store, fake_llm, openai_client, instrumented):
    @mltrack.track
    def work():
        with mlflow.start_span(name="inner"):
            _ask(openai_client, "one")
        _ask(openai_client, "two")  # outside the user's span: a child of the @track run's own root span

    fake_llm.queue(ScriptedReply(text="a", usage=USAGES[0]), ScriptedReply(text="b", usage=USAGES[0]))
    work()
    assert mltrack.flush(timeout=30) is True
    run = store.run_named("work")
    assert store.history(run.info.run_id, "llm.calls") == [(0, 1), (1, 2)]
    traces = _traces(store)
    names = sorted(sorted(s.name for s in t.data.spans) for t in traces)
    assert names == [["gpt-4o-mini", "inner"], ["gpt-4o-mini", "work"]]  # each call spanned exactly once


def test_a_stream_in_a_user_trace_is_one_child_span_with_its_usage(store, fake_llm, openai_client, instrumented):
    @mlflow.trace(name="streaming")
    def streaming():
        stream = openai_client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                       messages=[{"role": "user", "content": "go"}])
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    fake_llm.queue(ScriptedReply(text="x y z", usage=USAGES[0]))
    assert streaming() == "x y z"
    assert mltrack.flush(timeout=30) is True
    traces = _traces(store)
    assert len(traces) == 1
    spans = traces[0].data.spans
    assert sorted(s.name for s in spans) == ["gpt-4o-mini", "streaming"]
    llm = next(s for s in spans if s.name == "gpt-4o-mini")
    _check_llm_span(llm, USAGES[0])
    assert llm.outputs == {"text": "x y z"} and _attr(llm, "mltrack.ttft_ms") is not None
    assert store.runs() == []
