"""One provider response is one record, whichever entry points see it (instrumentation, track_llm_call,
log_prompt_response, @track's returned value): the real SDKs against the fake server, counted in MLflow."""

from __future__ import annotations

import gc
from decimal import Decimal

import openai
import pytest

import mltrack
from mltrack.testing import ScriptedReply

MESSAGES = [{"role": "user", "content": "Say hi"}]
USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
COST = float((120 * Decimal("0.15") + 30 * Decimal("0.60")) / 10**6)  # gpt-4o-mini, $0.000036
SONNET = "claude-3-5-sonnet-20241022"
COST_SONNET = float((40 * Decimal(3) + 12 * Decimal(15)) / 10**6)  # $0.000300


@pytest.fixture
def instrumented():
    mltrack.instrument("openai", "anthropic")
    yield
    mltrack.uninstrument("openai", "anthropic")


def _ask(client):
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def _assert_one_call(store, run_name, tokens=(120, 30), cost=COST):
    mltrack.flush(timeout=30)
    run = store.run_named(run_name)
    run_id = run.info.run_id
    assert store.history(run_id, "llm.calls") == [(0, 1)]
    assert store.history(run_id, "llm.tokens.prompt") == [(0, tokens[0])]
    assert store.history(run_id, "llm.tokens.completion") == [(0, tokens[1])]
    assert store.history(run_id, "llm.cost.total") == [(0, cost)]
    assert store.history(run_id, "llm.cost.cumulative") == [(0, cost)]
    assert len(store.artifact_lines(run_id)) == 1
    return run


def test_track_returning_a_track_llm_call_result_logs_it_once(store, fake_llm, openai_client):
    tracker = mltrack.LLMTracker()
    ask = tracker.track_llm_call()(openai_client.chat.completions.create)

    @mltrack.track
    def answer():
        return ask(model="gpt-4o-mini", messages=MESSAGES)

    fake_llm.queue(ScriptedReply(text="Hi", usage=USAGE))
    assert answer().choices[0].message.content == "Hi"
    _assert_one_call(store, "answer")
    assert [r.info.run_name for r in store.runs()] == ["answer"]


async def test_async_track_returning_a_track_llm_call_result_logs_it_once(store, fake_llm):
    client = openai.AsyncOpenAI(base_url=fake_llm.openai_base_url, api_key="sk-test", max_retries=0)
    tracker = mltrack.LLMTracker()

    @tracker.track_llm_call()
    async def ask():
        return await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    @mltrack.track
    async def answer():
        return await ask()

    fake_llm.queue(ScriptedReply(text="Hi", usage=USAGE))
    await answer()
    _assert_one_call(store, "answer")


def test_track_llm_call_around_an_instrumented_sdk_method_logs_it_once(store, fake_llm, openai_client,
                                                                      instrumented):
    fake_llm.queue(ScriptedReply(text="Hi", usage=USAGE))
    with mltrack.track_llm_context("ctx") as tracker:
        ask = tracker.track_llm_call()(openai_client.chat.completions.create)
        ask(model="gpt-4o-mini", messages=MESSAGES)
        assert tracker.totals == {"calls": 1, "prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
                                  "cost": COST}
    _assert_one_call(store, "ctx")


def test_track_llm_call_returning_text_of_an_instrumented_call_logs_it_once(store, fake_llm, openai_client,
                                                                           instrumented):
    tracker = mltrack.LLMTracker()  # outside any run: the tracker's own run, and no chat-* run besides

    @tracker.track_llm_call(model="gpt-4o-mini")
    def ask() -> str:
        return _ask(openai_client).choices[0].message.content

    fake_llm.queue(ScriptedReply(text="Hi", usage=USAGE))
    assert ask() == "Hi"
    assert tracker.totals["calls"] == 1 and tracker.totals["cost"] == COST
    mltrack.flush(timeout=30)
    runs = store.runs()
    assert len(runs) == 1 and runs[0].info.run_name.startswith("llm-tracker-")
    _assert_one_call(store, runs[0].info.run_name)


def test_log_prompt_response_on_an_instrumented_response_returns_that_record(store, fake_llm, openai_client,
                                                                            instrumented):
    fake_llm.queue(ScriptedReply(text="Hi", usage=USAGE))
    with mltrack.track_llm_context("tour") as tracker:  # the README tour, with auto_instrument on
        response = _ask(openai_client)
        call = tracker.log_prompt_response(MESSAGES, response)
        again = tracker.log_prompt_response(MESSAGES, response)
        assert (call.prompt_tokens, call.completion_tokens, call.total_cost) == (120, 30, COST)
        assert again.total_tokens == 150 and tracker.totals["calls"] == 1
    _assert_one_call(store, "tour")


def test_log_prompt_response_on_an_instrumented_anthropic_message(store, fake_llm, anthropic_client, instrumented):
    fake_llm.queue(ScriptedReply(text="Hello!", usage={"input_tokens": 40, "output_tokens": 12}))
    messages = [{"role": "user", "content": "Hello"}]
    with mltrack.track_llm_context("claude") as tracker:
        message = anthropic_client.messages.create(model=SONNET, max_tokens=64, messages=messages)
        call = tracker.log_prompt_response(messages, message)
        assert (call.prompt_tokens, call.completion_tokens, call.total_cost) == (40, 12, COST_SONNET)
        assert tracker.totals["calls"] == 1
    _assert_one_call(store, "claude", tokens=(40, 12), cost=COST_SONNET)


def test_log_prompt_response_then_track_returning_it_is_one_call(store, fake_llm, openai_client):
    @mltrack.track
    def answer():
        response = _ask(openai_client)
        mltrack.LLMTracker().log_prompt_response(MESSAGES, response)
        return response

    fake_llm.queue(ScriptedReply(text="Hi", usage=USAGE))
    answer()
    _assert_one_call(store, "answer")


def test_two_different_responses_are_two_calls(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text="a", usage=USAGE), ScriptedReply(text="b", usage=USAGE))
    with mltrack.track_llm_context("two") as tracker:
        first, second = _ask(openai_client), _ask(openai_client)
        tracker.log_prompt_response(MESSAGES, first)
        tracker.log_prompt_response(MESSAGES, second)
        tracker.log_prompt_response(MESSAGES, "a plain string is never taken for another call")
        assert tracker.totals["calls"] == 3


def test_remembered_responses_are_not_kept_alive_and_never_match_a_successor():
    from openai.types.chat import ChatCompletion

    from mltrack.entry import _seen

    response = ChatCompletion.model_construct(id="x")
    _seen.remember(response, lambda: "record")
    assert _seen.logged(response) and len(_seen._weak) >= 1
    key = id(response)
    del response
    gc.collect()
    assert key not in _seen._weak  # dropped with its object
    fresh = ChatCompletion.model_construct(id="y")
    assert not _seen.logged(fresh)

    class NoWeakref:
        __slots__ = ()

    kept = [NoWeakref() for _ in range(_seen.STRONG_MAX + 5)]
    for item in kept:
        _seen.remember(item, lambda: "record")
    assert _seen.logged(kept[-1]) and not _seen.logged(kept[0])  # bounded: the oldest are forgotten
    assert len(_seen._strong) == _seen.STRONG_MAX
    assert not _seen.logged(NoWeakref())
