"""Calls whose record nobody receives (instrumentation, @track's returned response, track_llm_call) are priced
after the caller's thread has moved on: totals, steps, budgets and errors must still come out exact."""

from __future__ import annotations

import contextvars
import threading
import warnings
from decimal import Decimal

import openai
import pytest

import mltrack
from mltrack._safety import TrackingWarning
from mltrack.testing import ScriptedReply

MINI_IN, MINI_OUT = Decimal("0.15"), Decimal("0.60")  # gpt-4o-mini, USD per 1M tokens


def mini_cost(prompt: int, completion: int) -> Decimal:
    return (prompt * MINI_IN + completion * MINI_OUT) / 10**6


@pytest.fixture
def instrumented():
    mltrack.instrument("openai")
    yield
    mltrack.uninstrument("openai")


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def test_instrumented_calls_and_logged_calls_keep_their_order_steps_and_totals(store, fake_llm, openai_client,
                                                                              instrumented):
    fake_llm.queue(ScriptedReply(text="one", usage=_usage(100, 10)), ScriptedReply(text="three", usage=_usage(300, 30)))
    with mltrack.track_llm_context("mixed") as tracker:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "1"}])
        logged = tracker.log_prompt_response("2", "two", model="gpt-4o-mini",
                                             token_usage={"prompt_tokens": 200, "completion_tokens": 20})
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "3"}])
        totals = tracker.totals
    # the logged call was priced after the instrumented one before it, and the totals include the one after it
    assert logged.step == 1 and logged.total_tokens == 220
    assert totals == {"calls": 3, "prompt_tokens": 600, "completion_tokens": 60, "total_tokens": 660,
                      "cost": float(mini_cost(600, 60))}
    assert mltrack.flush(timeout=30) is True
    run_id = store.run_named("mixed").info.run_id
    assert store.history(run_id, "llm.tokens.total") == [(0, 110), (1, 220), (2, 330)]
    assert store.history(run_id, "llm.tokens.cumulative.total") == [(0, 110), (1, 330), (2, 660)]
    cumulative = [mini_cost(100, 10), mini_cost(300, 30), mini_cost(600, 60)]
    assert store.history(run_id, "llm.cost.cumulative") == [(i, float(c)) for i, c in enumerate(cumulative)]
    assert [line["response"] for line in store.artifact_lines(run_id)] == ["one", "two", "three"]


def test_threads_reading_totals_while_calls_are_priced_see_every_earlier_call(store):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")

    @tracker.track_llm_call(extract_token_usage=lambda r: {"prompt_tokens": r, "completion_tokens": 1})
    def call(prompt_tokens):
        return prompt_tokens

    seen: list[int] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.append(tracker.totals["calls"])

    def worker(n):
        for i in range(100):
            call(n * 100 + i + 1)
            # this thread's own call is always in the totals right after it returns
            assert tracker.totals["calls"] >= i + 1

    with mltrack.track_llm_context("shared"):  # each thread runs in a copy of this context, so in this run
        watcher = threading.Thread(target=contextvars.copy_context().run, args=(reader,))
        watcher.start()
        workers = [threading.Thread(target=contextvars.copy_context().run, args=(worker, n)) for n in range(8)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        stop.set()
        watcher.join()
        totals = tracker.totals
    prompt_tokens = sum(range(1, 801))
    assert totals == {"calls": 800, "prompt_tokens": prompt_tokens, "completion_tokens": 800,
                      "total_tokens": prompt_tokens + 800, "cost": float(mini_cost(prompt_tokens, 800))}
    assert seen == sorted(seen) and seen[-1] <= 800
    assert mltrack.flush(timeout=60) is True
    run_id = store.run_named("shared").info.run_id
    calls = store.history(run_id, "llm.calls")
    assert sorted(step for step, _ in calls) == list(range(800)) and max(v for _, v in calls) == 800
    assert store.run(run_id).data.metrics["llm.tokens.cumulative.prompt"] == prompt_tokens


def test_a_budget_warning_from_an_instrumented_call_is_raised_in_the_callers_code(store, fake_llm, openai_client,
                                                                                 instrumented):
    mltrack.configure(llm_token_limit_warning=150)
    fake_llm.queue(ScriptedReply(text="a", usage=_usage(100, 0)), ScriptedReply(text="b", usage=_usage(100, 0)))
    with mltrack.track_llm_context("budget-instrumented"):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
        with pytest.warns(mltrack.BudgetWarning, match="200 tokens"):
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "b"}])
    mltrack.flush(timeout=30)
    assert store.run_named("budget-instrumented").data.tags["mltrack.budget.exceeded"] == "tokens"


def test_a_malformed_returned_response_is_one_warning_and_the_function_still_returns(store, monkeypatch):
    monkeypatch.delenv("MLTRACK_STRICT", raising=False)
    broken = openai.types.chat.ChatCompletion.model_construct(object="chat.completion", model="gpt-4o-mini",
                                                              choices=[], usage={"prompt_tokens": "many"})

    @mltrack.track
    def ask():
        return broken

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ask() is broken
        assert mltrack.flush(timeout=30) is True
    assert [w for w in caught if issubclass(w.category, TrackingWarning)]
    run = store.run_named("ask")
    assert run.info.status == "FINISHED" and "llm.calls" not in run.data.metrics
    assert "execution_time_seconds" in run.data.metrics


def test_strict_mode_surfaces_the_error_of_a_deferred_call_at_flush(store):
    broken = openai.types.chat.ChatCompletion.model_construct(object="chat.completion", model="gpt-4o-mini",
                                                              choices=[], usage={"prompt_tokens": "many"})

    @mltrack.track
    def ask():
        return broken

    assert ask() is broken
    with pytest.raises((TypeError, ValueError)):
        mltrack.flush(timeout=30)


def test_track_llm_call_logs_each_prompt_as_sent_when_the_caller_appends_to_it(store, fake_llm, openai_client):
    tracker = mltrack.LLMTracker()

    @tracker.track_llm_call()
    def ask(**kwargs):
        return openai_client.chat.completions.create(**kwargs)

    messages = [{"role": "user", "content": "q0"}]
    with mltrack.track_llm_context("decorated-loop"):
        for i in range(3):
            fake_llm.queue(ScriptedReply(text=f"a{i}", usage=_usage(10 * (i + 1), 2)))
            reply = ask(model="gpt-4o-mini", messages=messages, temperature=0.5)
            messages.append({"role": "assistant", "content": reply.choices[0].message.content})
            messages.append({"role": "user", "content": f"q{i + 1}"})
    assert mltrack.flush(timeout=30) is True
    run_id = store.run_named("decorated-loop").info.run_id
    lines = store.artifact_lines(run_id)
    assert [len(line["prompt"]) for line in lines] == [1, 3, 5]
    assert [line["prompt"][-1]["content"] for line in lines] == ["q0", "q1", "q2"]
    assert [(line["prompt_tokens"], line["response"]) for line in lines] == [(10, "a0"), (20, "a1"), (30, "a2")]
    assert all(line["params"] == {"temperature": 0.5} for line in lines)  # read from the kwargs, as instrument() does
    assert store.run(run_id).data.metrics["llm.cost.cumulative"] == float(mini_cost(60, 6))


def test_threads_sharing_a_tracker_outside_any_run_share_its_one_run(store):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")
    start = threading.Barrier(8)

    def worker():
        start.wait()
        for _ in range(10):
            tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 3, "completion_tokens": 1})

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracker.totals["calls"] == 80
    assert mltrack.flush(timeout=60) is True
    runs = [r for r in store.runs() if r.info.run_name.startswith("llm-tracker-")]
    assert len(runs) == 1 and runs[0].data.metrics["llm.tokens.cumulative.total"] == 320


def test_a_response_returned_through_a_nested_run_of_a_track_function_is_logged_once(store, fake_llm, openai_client,
                                                                                    instrumented):
    fake_llm.queue(ScriptedReply(text="inner", usage=_usage(40, 4)))

    @mltrack.track
    def outer():
        with mltrack.track_llm_context("inner"):
            return openai_client.chat.completions.create(model="gpt-4o-mini",
                                                         messages=[{"role": "user", "content": "x"}])

    assert outer().choices[0].message.content == "inner"
    assert mltrack.flush(timeout=30) is True
    inner, outer_run = store.run_named("inner"), store.run_named("outer")
    assert store.history(inner.info.run_id, "llm.calls") == [(0, 1)]
    assert inner.data.metrics["llm.tokens.total"] == 44
    assert "llm.calls" not in outer_run.data.metrics  # the returned response was not logged a second time


def test_totals_wait_for_a_call_another_thread_is_pricing():
    from mltrack.record import Usage
    from mltrack.run_state import RunHandle

    handle = RunHandle("r")
    started, release = threading.Event(), threading.Event()

    class SlowCall:  # a deferred call whose pricing takes a while (as on a busy writer thread)
        def resolve(self):
            started.set()
            release.wait(10)
            handle.add(Usage(7, 3, 10), None, "m", "p", False)

    handle.defer(SlowCall())
    pricer = threading.Thread(target=handle.settle)
    pricer.start()
    assert started.wait(10)  # the call left the queue and is being priced
    seen: list[dict] = []
    reader = threading.Thread(target=lambda: seen.append(handle.totals()))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and seen == []  # not a total without the call being priced
    release.set()
    reader.join(10)
    pricer.join(10)
    assert seen == [{"calls": 1, "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "cost": 0.0}]


# log_prompt_response returns its record before the call is priced -----------------------------------------------
def test_records_read_from_many_threads_are_exact_and_match_what_was_written(store):
    """Threads log and read their records at once while the writer prices the same run: each record is the
    final one (its own tokens and exact cost, a step no other call has), whoever priced it."""
    records: dict[int, mltrack.LLMCall] = {}
    lock = threading.Lock()

    def worker(tracker, n):
        for i in range(150):
            prompt_tokens = n * 1000 + i + 1
            call = tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": prompt_tokens,
                                                                      "completion_tokens": 2})
            if i % 2:  # half are read at once, half only after the writer had them
                assert (call.prompt_tokens, call.cost.prompt) == (prompt_tokens, prompt_tokens * MINI_IN / 10**6)
            with lock:
                records[prompt_tokens] = call

    with mltrack.track_llm_context("read-at-once", model="gpt-4o-mini") as tracker:
        threads = [threading.Thread(target=worker, args=(tracker, n)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert mltrack.flush(timeout=60) is True
    assert sorted(call.step for call in records.values()) == list(range(900))
    for prompt_tokens, call in records.items():
        assert call.total_cost == float(mini_cost(prompt_tokens, 2)) and call.cost.total == mini_cost(prompt_tokens, 2)
    lines = store.artifact_lines(store.run_named("read-at-once").info.run_id)
    assert {line["step"]: line["prompt_tokens"] for line in lines} == {
        call.step: prompt_tokens for prompt_tokens, call in records.items()}


def test_a_record_not_read_yet_behaves_as_the_priced_record(store):
    import copy
    import dataclasses
    import pickle

    usage = {"prompt_tokens": 1200, "completion_tokens": 300}
    with mltrack.track_llm_context("pending", model="gpt-4o-mini") as tracker:
        calls = [tracker.log_prompt_response("p", "r", token_usage=usage) for _ in range(5)]
        # each way of looking at a record that has not been read yet gives the priced record
        unpickled = pickle.loads(pickle.dumps(calls[0]))
        copied = copy.copy(calls[1])
        as_dict = dataclasses.asdict(calls[2])
        text = repr(calls[3])
        replaced = dataclasses.replace(calls[4], latency_ms=5.0)
    expected = float(mini_cost(1200, 300))
    assert (unpickled.total_cost, unpickled.step) == (expected, 0)
    assert copied == calls[1] and copied.step == 1
    assert as_dict["total_cost"] == expected and as_dict["step"] == 2 and as_dict["total_tokens"] == 1500
    assert "total_tokens=1500" in text and "step=3" in text and "_pending" not in text
    assert (replaced.total_cost, replaced.step, replaced.latency_ms) == (expected, 4, 5.0)
    with pytest.raises(AttributeError, match="no_such_field"):
        calls[0].no_such_field  # noqa: B018


def test_a_record_priced_by_the_writer_keeps_nothing_of_the_call(store):
    """Once the writer priced it, the record is a plain LLMCall: the response and prompt it waited on are gone."""
    with mltrack.track_llm_context("settled", model="gpt-4o-mini") as tracker:
        call = tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 10, "completion_tokens": 5})
    assert mltrack.flush(timeout=30) is True
    assert "_pending" not in vars(call) and vars(call)["total_tokens"] == 15  # priced by the writer, not by a read
    assert call.total_cost == float(mini_cost(10, 5))


def test_with_a_budget_limit_the_record_comes_back_priced_and_warns_at_the_call(store):
    mltrack.configure(llm_cost_limit_warning=0.0001)
    with mltrack.track_llm_context("budget", model="gpt-4o-mini") as tracker:
        first = tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 100, "completion_tokens": 10})
        assert vars(first)["total_tokens"] == 110  # priced on this thread, before the call returned
        with pytest.warns(mltrack.BudgetWarning):
            tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 1000, "completion_tokens": 1000})
