"""A stream the consumer leaves early (``break``, kept in a variable or a global) is recorded no later than the
end of its run, or at interpreter exit, once, timed by its last chunk: real SDKs against the fake server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import openai
import pytest

import mltrack
from mltrack.engine.tokens import count_completion_tokens, count_prompt_tokens
from mltrack.testing import ScriptedReply

MESSAGES = [{"role": "user", "content": "count please"}]
TEXT = "one two three four five six seven eight"
PLAIN = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
SONNET = "claude-3-5-sonnet-20241022"
DELAY = 0.05  # per content chunk
LINGER = 0.6  # the block goes on this long after the break


@pytest.fixture
def instrumented():
    mltrack.instrument("openai", "anthropic")
    yield
    mltrack.uninstrument("openai", "anthropic")


def _mini_cost(prompt: int, completion: int) -> float:
    return float((prompt * Decimal("0.15") + completion * Decimal("0.60")) / 10**6)


def _check_run(store, name, received, tracker_totals, prompt_tokens, cost):
    """Step 0: the plain call made after the break; step 1: the stream, recorded at the block's end."""
    mltrack.flush(timeout=30)
    run = store.run_named(name)
    run_id = run.info.run_id
    completion = count_completion_tokens(received, "gpt-4o-mini")
    assert tracker_totals == {"calls": 2, "prompt_tokens": 100 + prompt_tokens, "completion_tokens": 10 + completion,
                              "total_tokens": 110 + prompt_tokens + completion, "cost": cost}
    assert store.history(run_id, "llm.calls") == [(0, 1), (1, 2)]
    lines = store.artifact_lines(run_id)
    assert [line["response"] for line in lines] == ["plain", received]
    stream = lines[1]
    assert stream["metadata"]["stream_incomplete"] is True and stream["tokens_estimated"] is True
    assert (stream["prompt_tokens"], stream["completion_tokens"]) == (prompt_tokens, completion)
    # timed by its last chunk (two chunks of 50 ms), not by the block's end (>= 600 ms later)
    assert 2 * DELAY * 1000 * 0.9 <= stream["latency_ms"] < LINGER * 1000
    assert store.run(run_id).info.status == "FINISHED"
    return stream


def _take_two(stream):
    received = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)
            if len(received) == 2:
                break
    return "".join(received)


def test_sync_stream_left_with_break_is_in_the_totals_at_the_block_end(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text=TEXT, chunk_delay_s=DELAY), ScriptedReply(text="plain", usage=PLAIN))
    with mltrack.track_llm_context("left") as tracker:
        stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        received = _take_two(stream)
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        time.sleep(LINGER)
    totals = tracker.totals
    prompt = count_prompt_tokens(MESSAGES, "gpt-4o-mini")
    completion = count_completion_tokens(received, "gpt-4o-mini")
    _check_run(store, "left", received, totals, prompt, _mini_cost(100, 10) + _mini_cost(prompt, completion))
    del stream  # collecting it later records nothing more
    mltrack.flush(timeout=30)
    assert store.history(store.run_named("left").info.run_id, "llm.calls") == [(0, 1), (1, 2)]


async def test_async_stream_left_with_break_in_a_track_function(store, fake_llm, instrumented):
    client = openai.AsyncOpenAI(base_url=fake_llm.openai_base_url, api_key="sk-test", max_retries=0)
    fake_llm.queue(ScriptedReply(text=TEXT, chunk_delay_s=DELAY), ScriptedReply(text="plain", usage=PLAIN))
    kept = {}

    @mltrack.track
    async def work():
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        received = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
                if len(received) == 2:
                    break
        kept["stream"] = stream  # still held after the run
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        time.sleep(LINGER)
        return "".join(received)

    received = await work()
    mltrack.flush(timeout=30)
    run_id = store.run_named("work").info.run_id
    assert store.history(run_id, "llm.calls") == [(0, 1), (1, 2)]
    line = store.artifact_lines(run_id)[1]
    assert line["response"] == received and line["metadata"]["stream_incomplete"] is True
    assert line["completion_tokens"] == count_completion_tokens(received, "gpt-4o-mini")
    assert 2 * DELAY * 1000 * 0.9 <= line["latency_ms"] < LINGER * 1000


def test_anthropic_stream_left_with_break(store, fake_llm, anthropic_client, instrumented):
    fake_llm.queue(ScriptedReply(text=TEXT, chunk_delay_s=DELAY))
    with mltrack.track_llm_context("claude") as tracker:
        stream = anthropic_client.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES, stream=True)
        received = []
        for event in stream:
            if event.type == "content_block_delta":
                received.append(event.delta.text)
                if len(received) == 2:
                    break
        time.sleep(LINGER)
    totals = tracker.totals
    assert totals["calls"] == 1
    mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("claude").info.run_id)[0]
    assert line["response"] == "".join(received) and line["metadata"]["stream_incomplete"] is True
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (line["prompt_tokens"], line["completion_tokens"])
    assert line["completion_tokens"] == count_completion_tokens("".join(received), SONNET)
    assert 2 * DELAY * 1000 * 0.9 <= line["latency_ms"] < LINGER * 1000


def test_a_stream_returned_by_a_track_function_is_recorded_when_consumed(store, fake_llm, openai_client,
                                                                         instrumented):
    fake_llm.queue(ScriptedReply(text="a b c", usage={"prompt_tokens": 9, "completion_tokens": 3,
                                                      "total_tokens": 12}))

    @mltrack.track
    def start():
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    pieces = [c.choices[0].delta.content for c in start() if c.choices]
    assert "".join(p for p in pieces if p) == "a b c"
    mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("start").info.run_id)[0]
    assert (line["prompt_tokens"], line["completion_tokens"]) == (9, 3) and "stream_incomplete" not in line["metadata"]


EXIT_SCRIPT = textwrap.dedent("""
    import asyncio, sys, time
    import anthropic, openai
    import mltrack

    mltrack.instrument()
    base = sys.argv[1]
    messages = [{"role": "user", "content": "count please"}]
    KEPT = []

    def take(stream, n, content):
        got = []
        for item in stream:
            text = content(item)
            if text:
                got.append(text)
                if len(got) == n:
                    break
        return got

    client = openai.OpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    KEPT.append(stream)
    take(stream, 2, lambda c: c.choices[0].delta.content if c.choices else None)

    claude = anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0)
    events = claude.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=64, messages=messages, stream=True)
    KEPT.append(events)
    take(events, 2, lambda e: e.delta.text if e.type == "content_block_delta" else None)

    async def agen():
        aclient = openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0)
        astream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        KEPT.append(astream)
        got = []
        async for chunk in astream:
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
                if len(got) == 3:
                    break

    asyncio.run(agen())
    time.sleep(0.5)
""")


def test_global_streams_left_early_are_recorded_at_exit(store, fake_llm, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRACK_STRICT")}
    env.update({"MLFLOW_TRACKING_URI": store.uri, "PYTHONPATH": str(Path(mltrack.__file__).parent.parent),
                "MLTRACK_JOURNAL_DIR": str(tmp_path / "journal")})
    fake_llm.queue(ScriptedReply(text=TEXT, chunk_delay_s=DELAY), ScriptedReply(text=TEXT, chunk_delay_s=DELAY),
                   ScriptedReply(text=TEXT, chunk_delay_s=DELAY))
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, fake_llm.url], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs = store.runs()
    assert [r.info.run_name.startswith("chat-") for r in runs] == [True, True, True]
    assert all(r.info.status == "FINISHED" for r in runs)
    lines = [store.artifact_lines(r.info.run_id) for r in runs]
    assert all(len(run_lines) == 1 for run_lines in lines)
    by_provider = sorted((line[0]["provider"], line[0]["response"]) for line in lines)
    assert by_provider == [("anthropic", "one two"), ("openai", "one two"),
                           ("openai", "one two three")]
    for run, run_lines in zip(runs, lines):
        assert run.data.metrics["llm.calls"] == 1
        line = run_lines[0]
        assert line["metadata"]["stream_incomplete"] is True
        assert line["latency_ms"] < 500  # its last chunk, not the exit 0.5 s later
        assert line["completion_tokens"] == count_completion_tokens(line["response"], line["model"])
