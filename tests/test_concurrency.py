"""Run association through contextvars: concurrent tracked work logs into its own runs, totals add up exactly."""

from __future__ import annotations

import asyncio
import threading

import mltrack


def _usage(n: int) -> dict:
    return {"prompt_tokens": n, "completion_tokens": 1}


async def test_two_tracked_coroutines_in_gather_keep_their_runs(store):
    @mltrack.track
    async def alpha():
        tracker = mltrack.LLMTracker(model="gpt-4o-mini")
        for _ in range(5):
            tracker.log_prompt_response("p", "r", token_usage=_usage(10))
            await asyncio.sleep(0)

    @mltrack.track
    async def beta():
        tracker = mltrack.LLMTracker(model="gpt-4o-mini")
        for _ in range(3):
            tracker.log_prompt_response("p", "r", token_usage=_usage(100))
            await asyncio.sleep(0)

    await asyncio.gather(alpha(), beta())
    mltrack.flush(timeout=30)
    assert store.run_named("alpha").data.metrics["llm.tokens.cumulative.total"] == 55
    assert store.run_named("beta").data.metrics["llm.tokens.cumulative.total"] == 303


def test_two_threads_keep_their_runs(store):
    @mltrack.track
    def worker(n):
        tracker = mltrack.LLMTracker(model="gpt-4o-mini")
        for _ in range(20):
            tracker.log_prompt_response("p", "r", token_usage=_usage(n))

    threads = [threading.Thread(target=worker, args=(n,), name=f"t{n}") for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mltrack.flush(timeout=30)
    totals = sorted(r.data.metrics["llm.tokens.cumulative.total"] for r in store.runs() if r.info.run_name == "worker")
    assert totals == [40, 60]


async def test_fifty_tasks_in_one_context_add_up(store):
    async with mltrack.track_llm_context("shared", model="gpt-4o-mini") as tracker:
        async def one(i):
            await asyncio.sleep(0)
            tracker.log_prompt_response("p", "r", token_usage=_usage(i))

        await asyncio.gather(*(one(i) for i in range(50)))
    mltrack.flush(timeout=30)
    run = store.run_named("shared")
    expected_total = sum(range(50)) + 50
    assert run.data.metrics["llm.tokens.cumulative.total"] == expected_total
    history = store.history(run.info.run_id, "llm.tokens.cumulative.total")
    assert [step for step, _ in history] == list(range(50))
    assert history[-1][1] == expected_total
    values = [v for _, v in history]
    assert values == sorted(values)
