"""mltrack.instrument() over the real anthropic SDK: create, stream=True, and the messages.stream helper."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import pytest

import mltrack
from mltrack.testing import ScriptedReply

# claude-3-5-sonnet-20241022: $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M
SONNET = "claude-3-5-sonnet-20241022"


def sonnet_cost(uncached: int, read: int, write: int, output: int) -> Decimal:
    return (uncached * Decimal(3) + read * Decimal("0.30") + write * Decimal("3.75") + output * 15) / 10**6


USAGE = {"input_tokens": 40, "output_tokens": 12, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}


@pytest.fixture
def instrumented():
    mltrack.instrument("anthropic")
    yield
    mltrack.uninstrument("anthropic")


def _create(client, **kw):
    return client.messages.create(model=SONNET, max_tokens=64, system="be brief",
                                  messages=[{"role": "user", "content": "Hello"}], **kw)


def test_uninstrument_restores_exactly():
    from anthropic.lib.streaming._messages import MessageStream
    from anthropic.resources.messages.messages import Messages

    before = (Messages.__dict__["create"], Messages.__dict__["stream"], MessageStream.__dict__["__init__"])
    mltrack.instrument("anthropic")
    mltrack.instrument("anthropic")
    mltrack.uninstrument("anthropic")
    after = (Messages.__dict__["create"], Messages.__dict__["stream"], MessageStream.__dict__["__init__"])
    assert all(a is b for a, b in zip(after, before))


def test_create_counts_cache_reads_and_writes(store, fake_llm, anthropic_client, instrumented):
    fake_llm.queue(ScriptedReply(text="Hi!", usage=USAGE))
    with mltrack.track_llm_context("claude") as tracker:
        message = _create(anthropic_client, stop_sequences=["END"])
        assert tracker.totals["prompt_tokens"] == 1240 and tracker.totals["completion_tokens"] == 12
    assert message.content[0].text == "Hi!"
    mltrack.flush(timeout=30)
    run = store.run_named("claude")
    assert run.data.metrics["llm.cost.total"] == float(sonnet_cost(40, 1000, 200, 12))
    line = store.artifact_lines(run.info.run_id)[0]
    assert line["prompt"][0] == {"role": "system", "content": "be brief"}
    assert (line["cached_prompt_tokens"], line["cache_write_tokens"]) == (1000, 200)
    assert line["params"] == {"max_tokens": 64, "stop_sequences": ["END"]}
    assert "sk-ant-test-not-real" not in str(line)


def test_create_stream_true(store, fake_llm, anthropic_client, instrumented):
    fake_llm.queue(ScriptedReply(text="one two three", usage=USAGE))
    with mltrack.track_llm_context("claude-stream") as tracker:
        events = list(_create(anthropic_client, stream=True))
        assert tracker.totals["total_tokens"] == 1252
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("claude-stream").info.run_id)[0]
    assert line["response"] == "one two three" and line["tokens_estimated"] is False
    assert line["total_cost"] == str(sonnet_cost(40, 1000, 200, 12))


def test_messages_stream_helper_sync(store, fake_llm, anthropic_client, instrumented):
    fake_llm.queue(ScriptedReply(text="streamed words here", usage=USAGE))
    with mltrack.track_llm_context("helper") as tracker:
        with anthropic_client.messages.stream(model=SONNET, max_tokens=64,
                                              messages=[{"role": "user", "content": "Hello"}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert tracker.totals["calls"] == 1 and tracker.totals["total_tokens"] == 1252
    assert text == "streamed words here" and final.usage.output_tokens == 12
    mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("helper").info.run_id)[0]
    assert line["response"] == "streamed words here" and line["metadata"]["stream_helper"] is True


async def test_messages_stream_helper_async_and_create(store, fake_llm, instrumented):
    client = anthropic.AsyncAnthropic(base_url=fake_llm.anthropic_base_url, api_key="sk-ant-x", max_retries=0)
    fake_llm.queue(ScriptedReply(text="async words", usage=USAGE))
    fake_llm.queue(ScriptedReply(text="plain", usage={"input_tokens": 10, "output_tokens": 2}))
    async with mltrack.track_llm_context("async-helper") as tracker:
        async with client.messages.stream(model=SONNET, max_tokens=64,
                                          messages=[{"role": "user", "content": "Hi"}]) as stream:
            pieces = [piece async for piece in stream.text_stream]
        await client.messages.create(model=SONNET, max_tokens=8, messages=[{"role": "user", "content": "x"}])
        assert tracker.totals["total_tokens"] == 1252 + 12
        assert tracker.totals["cost"] == float(sonnet_cost(40, 1000, 200, 12) + sonnet_cost(10, 0, 0, 2))
    assert "".join(pieces) == "async words"


def test_stream_helper_left_early_is_finished_on_exit(store, fake_llm, anthropic_client, instrumented):
    fake_llm.queue(ScriptedReply(text="a b c d e f g", usage=USAGE))
    with mltrack.track_llm_context("early-exit") as tracker:
        with anthropic_client.messages.stream(model=SONNET, max_tokens=64,
                                              messages=[{"role": "user", "content": "Hi"}]) as stream:
            for _text in stream.text_stream:
                break
        totals = tracker.totals
    assert totals["calls"] == 1 and totals["prompt_tokens"] == 1240  # input usage arrived in message_start
    mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("early-exit").info.run_id)[0]
    assert line["metadata"]["stream_incomplete"] is True and line["tokens_estimated"] is True


def test_overloaded_error(store, fake_llm, anthropic_client, instrumented):
    fake_llm.queue(ScriptedReply(status=529, error_type="overloaded_error"))
    with mltrack.track_llm_context("overloaded"):
        with pytest.raises(anthropic.APIStatusError) as caught:
            _create(anthropic_client)
    assert caught.value.status_code == 529
    mltrack.flush(timeout=30)
    run = store.run_named("overloaded")
    assert run.data.metrics["llm.errors"] == 1
