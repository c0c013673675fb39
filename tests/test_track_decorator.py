"""@track: one run per call, nesting, failure status, every function kind, returned responses logged."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import mltrack
from mltrack.testing import ScriptedReply


def test_bare_decorator_opens_a_finished_run_with_execution_time(store):
    @mltrack.track
    def answer(x):
        return x * 2

    assert answer(21) == 42
    assert mltrack.flush(timeout=30)
    run = store.run_named("answer")
    assert run.info.status == "FINISHED"
    assert run.data.tags["mltrack.version"] == mltrack.__version__
    assert run.data.metrics["execution_time_seconds"] >= 0
    assert run.info.end_time >= run.info.start_time


def test_called_decorator_name_tags_and_log_args(store):
    @mltrack.track(name="custom", tags={"team": "search", "tier": 2}, log_args=True)
    def work(query, api_key=None):
        return query.upper()

    assert work("hello", api_key="sk-secret") == "HELLO"
    mltrack.flush(timeout=30)
    run = store.run_named("custom")
    assert run.data.tags["team"] == "search" and run.data.tags["tier"] == "2"
    assert run.data.params == {"query": "'hello'"}  # api_key is never logged


def test_exception_fails_run_and_reaches_caller_unchanged(store):
    class Boom(Exception):
        pass

    err = Boom("it broke")

    @mltrack.track
    def explode():
        raise err

    with pytest.raises(Boom) as caught:
        explode()
    assert caught.value is err
    mltrack.flush(timeout=30)
    run = store.run_named("explode")
    assert run.info.status == "FAILED"
    assert run.data.tags["mltrack.error.type"] == "Boom"
    assert run.data.tags["mltrack.error.message"] == "it broke"


def test_nested_track_creates_child_run(store):
    @mltrack.track
    def inner():
        return 1

    @mltrack.track
    def outer():
        return inner() + inner()

    assert outer() == 2
    mltrack.flush(timeout=30)
    parent = store.run_named("outer")
    children = [r for r in store.runs() if r.info.run_name == "inner"]
    assert len(children) == 2
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)


def test_nested_under_users_mlflow_run(store):
    import mlflow

    mlflow.set_tracking_uri(store.uri)

    @mltrack.track
    def step():
        return "ok"

    with mlflow.start_run(run_name="users-run") as parent:
        step()
    mltrack.flush(timeout=30)
    child = store.run_named("step")
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_returned_openai_response_is_logged_and_returned_as_is(store, fake_llm, openai_client):
    fake_llm.queue(ScriptedReply(text="Paris.", usage={"prompt_tokens": 1200, "completion_tokens": 80,
                                                       "total_tokens": 1280,
                                                       "prompt_tokens_details": {"cached_tokens": 1024}}))
    seen = {}

    @mltrack.track
    def ask():
        seen["response"] = openai_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Capital of France?"}])
        return seen["response"]

    result = ask()
    assert result is seen["response"]
    mltrack.flush(timeout=30)
    run = store.run_named("ask")
    m = run.data.metrics
    assert (m["llm.tokens.prompt"], m["llm.tokens.completion"], m["llm.tokens.total"]) == (1200, 80, 1280)
    # gpt-4o: $2.50 / 1M input, $1.25 / 1M cached input, $10.00 / 1M output
    expected_prompt = Decimal(176) * Decimal("2.50") / 10**6 + Decimal(1024) * Decimal("1.25") / 10**6
    assert m["llm.cost.prompt"] == float(expected_prompt)
    assert m["llm.cost.completion"] == float(Decimal(80) * Decimal("10.00") / 10**6)
    assert m["llm.cost.cumulative"] == float(expected_prompt + Decimal("0.0008"))
    assert run.data.tags["llm.model"] == "gpt-4o" and run.data.tags["llm.provider"] == "openai"
    assert m["llm.calls"] == 1 and m["llm.errors"] == 0


def test_returned_anthropic_message_counts_cache_tokens(store, fake_llm, anthropic_client):
    fake_llm.queue(ScriptedReply(text="Bonjour", usage={"input_tokens": 100, "output_tokens": 50,
                                                        "cache_read_input_tokens": 2000,
                                                        "cache_creation_input_tokens": 500}))

    @mltrack.track(name="claude")
    def ask():
        return anthropic_client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=100,
                                                messages=[{"role": "user", "content": "Hi"}])

    ask()
    mltrack.flush(timeout=30)
    m = store.run_named("claude").data.metrics
    assert m["llm.tokens.prompt"] == 2600 and m["llm.tokens.completion"] == 50 and m["llm.tokens.total"] == 2650
    # $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M
    prompt_cost = (Decimal(100) * 3 + Decimal(2000) * Decimal("0.30") + Decimal(500) * Decimal("3.75")) / 10**6
    assert m["llm.cost.prompt"] == float(prompt_cost)
    assert m["llm.cost.completion"] == float(Decimal(50) * 15 / 10**6)


def test_object_with_iter_is_returned_untouched(store):
    class Iterable:
        def __iter__(self):
            raise AssertionError("mltrack must not iterate a returned object")

    obj = Iterable()

    @mltrack.track
    def give():
        return obj

    assert give() is obj


async def test_async_function(store):
    @mltrack.track(name="async-job")
    async def job(x):
        await asyncio.sleep(0.01)
        return x + 1

    assert await job(1) == 2
    mltrack.flush(timeout=30)
    run = store.run_named("async-job")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["execution_time_seconds"] >= 0.01


def test_generator_run_spans_iteration(store):
    tracker_calls = []

    @mltrack.track(name="gen")
    def produce(n):
        tracker = mltrack.LLMTracker(model="gpt-4o-mini")
        for i in range(n):
            tracker_calls.append(tracker.log_prompt_response("q", "a", token_usage={"prompt_tokens": 10,
                                                                                     "completion_tokens": 5}))
            yield i

    assert list(produce(3)) == [0, 1, 2]
    mltrack.flush(timeout=30)
    run = store.run_named("gen")
    assert run.info.status == "FINISHED"
    assert store.history(run.info.run_id, "llm.tokens.cumulative.total") == [(0, 15), (1, 30), (2, 45)]


def test_generator_closed_early_finishes_run(store):
    @mltrack.track(name="early")
    def produce():
        yield 1
        yield 2

    gen = produce()
    assert next(gen) == 1
    gen.close()
    mltrack.flush(timeout=30)
    assert store.run_named("early").info.status == "FINISHED"


def test_generator_error_fails_run(store):
    @mltrack.track(name="bad-gen")
    def produce():
        yield 1
        raise KeyError("missing")

    with pytest.raises(KeyError):
        list(produce())
    mltrack.flush(timeout=30)
    run = store.run_named("bad-gen")
    assert run.info.status == "FAILED" and run.data.tags["mltrack.error.type"] == "KeyError"


async def test_async_generator(store):
    @mltrack.track(name="agen")
    async def produce(n):
        tracker = mltrack.LLMTracker(model="gpt-4o-mini")
        for i in range(n):
            tracker.log_prompt_response("q", "a", token_usage={"input_tokens": 7, "output_tokens": 3})
            await asyncio.sleep(0)
            yield i

    assert [i async for i in produce(2)] == [0, 1]
    mltrack.flush(timeout=30)
    run = store.run_named("agen")
    assert run.info.status == "FINISHED"
    assert store.history(run.info.run_id, "llm.tokens.cumulative.total") == [(0, 10), (1, 20)]


def test_generator_send_and_return_value_pass_through(store):
    @mltrack.track(name="echo")
    def echo():
        received = yield "ready"
        yield f"got {received}"
        return "done"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("x") == "got x"
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"
