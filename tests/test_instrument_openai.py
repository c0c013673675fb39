"""mltrack.instrument() over the real openai SDK talking HTTP to the package's fake server."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

import mltrack
from mltrack.testing import ScriptedReply, fake_usage

MINI = (Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))  # gpt-4o-mini input, cached input, output per 1M


def mini_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return ((prompt - cached) * MINI[0] + cached * MINI[1] + completion * MINI[2]) / 10**6


@pytest.fixture
def instrumented():
    mltrack.instrument("openai")
    yield
    mltrack.uninstrument("openai")


def _ask(client, text="Say hi", **kw):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **kw)


def test_instrument_is_idempotent_and_uninstrument_restores_exactly():
    from openai.resources.chat.completions.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import Embeddings

    before = (Completions.__dict__["create"], AsyncCompletions.__dict__["create"], Embeddings.__dict__["create"])
    assert mltrack.instrument("openai") == ["openai"]
    patched = Completions.__dict__["create"]
    assert patched is not before[0]
    mltrack.instrument("openai")
    assert Completions.__dict__["create"] is patched  # a second instrument() changes nothing
    mltrack.uninstrument("openai")
    after = (Completions.__dict__["create"], AsyncCompletions.__dict__["create"], Embeddings.__dict__["create"])
    assert after == before and all(a is b for a, b in zip(after, before))
    assert "openai" in mltrack.detect_frameworks() and "anthropic" in mltrack.detect_frameworks()


def test_chat_call_in_context_is_logged_exactly(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text="Hi there", usage={"prompt_tokens": 900, "completion_tokens": 30,
                                                         "total_tokens": 930,
                                                         "prompt_tokens_details": {"cached_tokens": 512}}))
    with mltrack.track_llm_context("ctx") as tracker:
        response = _ask(openai_client, temperature=0.3, max_tokens=50)
        assert tracker.totals["total_tokens"] == 930
    assert response.choices[0].message.content == "Hi there"
    mltrack.flush(timeout=30)
    run = store.run_named("ctx")
    m = run.data.metrics
    assert (m["llm.tokens.prompt"], m["llm.tokens.completion"]) == (900, 30)
    assert m["llm.cost.total"] == float(mini_cost(900, 30, cached=512))
    line = store.artifact_lines(run.info.run_id)[0]
    assert line["params"] == {"temperature": 0.3, "max_tokens": 50}
    assert line["prompt"] == [{"role": "user", "content": "Say hi"}] and line["response"] == "Hi there"
    assert "sk-test-not-a-real-key" not in str(line) and "Bearer" not in str(line)


def test_chat_loop_appending_to_the_sent_messages_logs_each_prompt_as_sent(store, fake_llm, openai_client,
                                                                         instrumented):
    messages = [{"role": "user", "content": "q0"}]
    with mltrack.track_llm_context("chat-loop"):
        for i in range(3):
            fake_llm.queue(ScriptedReply(text=f"a{i}"))
            reply = openai_client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            messages.append({"role": "assistant", "content": reply.choices[0].message.content})
            messages.append({"role": "user", "content": f"q{i + 1}"})
    mltrack.flush(timeout=30)
    lines = store.artifact_lines(store.run_named("chat-loop").info.run_id)
    assert [len(line["prompt"]) for line in lines] == [1, 3, 5]
    assert [line["prompt"][-1]["content"] for line in lines] == ["q0", "q1", "q2"]
    assert [line["response"] for line in lines] == ["a0", "a1", "a2"]


def test_call_outside_any_run_gets_a_short_run_of_its_own(store, fake_llm, openai_client, instrumented):
    _ask(openai_client, "one two three")
    _ask(openai_client, "four")
    mltrack.flush(timeout=30)
    runs = [r for r in store.runs() if r.info.run_name.startswith("chat-")]
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    prompts = sorted(r.data.metrics["llm.tokens.prompt"] for r in runs)
    assert prompts == sorted([fake_usage("one two three", "")[0], fake_usage("four", "")[0]])


def test_track_returning_instrumented_response_logs_it_once(store, fake_llm, openai_client, instrumented):
    @mltrack.track
    def ask():
        return _ask(openai_client)

    ask()
    mltrack.flush(timeout=30)
    run = store.run_named("ask")
    assert store.history(run.info.run_id, "llm.calls") == [(0, 1)]
    assert [r.info.run_name for r in store.runs()] == ["ask"]


def test_stream_gets_usage_and_caller_sees_the_same_chunks(store, fake_llm, openai_client):
    text = "alpha beta gamma delta"
    fake_llm.queue(ScriptedReply(text=text))
    plain = [c.model_dump(exclude={"id", "created"}) for c in _ask(openai_client, stream=True)]
    assert "stream_options" not in fake_llm.requests[-1].json
    mltrack.instrument("openai")
    try:
        fake_llm.queue(ScriptedReply(text=text))
        with mltrack.track_llm_context("stream") as tracker:
            seen = [c.model_dump(exclude={"id", "created"}) for c in _ask(openai_client, stream=True)]
            totals = tracker.totals
    finally:
        mltrack.uninstrument("openai")
    assert fake_llm.requests[-1].json["stream_options"] == {"include_usage": True}
    assert seen == plain  # the usage chunk mltrack asked for is hidden
    assert all(c["usage"] is None for c in seen)
    prompt, completion = fake_usage("Say hi", text)
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (prompt, completion)
    mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("stream").info.run_id)[0]
    assert line["response"] == text and line["tokens_estimated"] is False
    assert line["ttft_ms"] is not None and line["ttft_ms"] <= line["latency_ms"]


def test_stream_with_usage_asked_by_caller_keeps_usage_chunk(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text="one two", usage={"prompt_tokens": 40, "completion_tokens": 2,
                                                        "total_tokens": 42}))
    with mltrack.track_llm_context("asked"):
        chunks = list(_ask(openai_client, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.total_tokens == 42 and chunks[-1].choices == []
    mltrack.flush(timeout=30)
    assert store.run_named("asked").data.metrics["llm.cost.total"] == float(mini_cost(40, 2))


def test_stream_closed_early_is_estimated_and_tagged(store, fake_llm, openai_client, instrumented):
    from mltrack.engine.tokens import count_completion_tokens, count_prompt_tokens

    fake_llm.queue(ScriptedReply(text="one two three four five six"))
    with mltrack.track_llm_context("early"):
        stream = _ask(openai_client, "count please", stream=True)
        first = [next(stream).choices[0].delta.content for _ in range(3)]
        stream.close()
    received = "".join(p for p in first if p)
    mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("early").info.run_id)[0]
    assert line["metadata"]["stream_incomplete"] is True and line["tokens_estimated"] is True
    assert line["response"] == received
    assert line["completion_tokens"] == count_completion_tokens(received, "gpt-4o-mini")
    assert line["prompt_tokens"] == count_prompt_tokens([{"role": "user", "content": "count please"}], "gpt-4o-mini")


async def test_async_stream_and_async_create(store, fake_llm, instrumented):
    client = openai.AsyncOpenAI(base_url=fake_llm.openai_base_url, api_key="sk-test", max_retries=0)
    fake_llm.queue(ScriptedReply(text="a b c", usage={"prompt_tokens": 10, "completion_tokens": 3,
                                                      "total_tokens": 13}))
    fake_llm.queue(ScriptedReply(text="x", usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}))
    async with mltrack.track_llm_context("async") as tracker:
        stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                      messages=[{"role": "user", "content": "go"}])
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "go"}])
        assert tracker.totals == {"calls": 2, "prompt_tokens": 15, "completion_tokens": 4, "total_tokens": 19,
                                  "cost": float(mini_cost(10, 3) + mini_cost(5, 1))}
    assert "".join(p for p in pieces if p) == "a b c"


def test_stream_helper_get_final_completion(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text="helper text", usage={"prompt_tokens": 12, "completion_tokens": 2,
                                                            "total_tokens": 14}))
    with mltrack.track_llm_context("helper") as tracker:
        with openai_client.chat.completions.stream(model="gpt-4o-mini",
                                                   messages=[{"role": "user", "content": "hi"}]) as stream:
            for _ in stream:
                pass
            final = stream.get_final_completion()
        assert tracker.totals["total_tokens"] == 14
    assert final.choices[0].message.content == "helper text"
    assert final.usage is None  # the caller did not ask for usage: they see what they would see without mltrack


def test_responses_api_plain_and_stream(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text="resp one", usage={"input_tokens": 100, "output_tokens": 20,
                                                         "total_tokens": 120,
                                                         "input_tokens_details": {"cached_tokens": 50},
                                                         "output_tokens_details": {"reasoning_tokens": 5}}))
    fake_llm.queue(ScriptedReply(text="resp two", usage={"input_tokens": 30, "output_tokens": 2, "total_tokens": 32,
                                                         "input_tokens_details": {"cached_tokens": 0},
                                                         "output_tokens_details": {"reasoning_tokens": 0}}))
    with mltrack.track_llm_context("responses") as tracker:
        r = openai_client.responses.create(model="gpt-4o-mini", input="hello", instructions="be nice")
        events = list(openai_client.responses.create(model="gpt-4o-mini", input="again", stream=True))
        assert tracker.totals["total_tokens"] == 152
    assert r.output_text == "resp one" and events[-1].type == "response.completed"
    mltrack.flush(timeout=30)
    run = store.run_named("responses")
    lines = store.artifact_lines(run.info.run_id)
    assert lines[0]["cached_prompt_tokens"] == 50 and lines[0]["reasoning_tokens"] == 5
    assert lines[0]["prompt"][0] == {"role": "system", "content": "be nice"}
    assert lines[1]["response"] == "resp two"
    assert run.data.metrics["llm.cost.cumulative"] == float(mini_cost(100, 20, cached=50) + mini_cost(30, 2))


def test_embeddings(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(usage={"prompt_tokens": 8, "total_tokens": 8}))
    with mltrack.track_llm_context("embed"):
        openai_client.embeddings.create(model="text-embedding-3-small", input="some text to embed")
    mltrack.flush(timeout=30)
    m = store.run_named("embed").data.metrics
    assert (m["llm.tokens.prompt"], m["llm.tokens.completion"]) == (8, 0)
    assert m["llm.cost.total"] == float(Decimal(8) * Decimal("0.02") / 10**6)


def test_parse_with_pydantic_model(store, fake_llm, openai_client, instrumented):
    from pydantic import BaseModel

    class Answer(BaseModel):
        city: str

    fake_llm.queue(ScriptedReply(text='{"city": "Paris"}', usage={"prompt_tokens": 20, "completion_tokens": 6,
                                                                  "total_tokens": 26}))
    with mltrack.track_llm_context("parse") as tracker:
        parsed = openai_client.chat.completions.parse(model="gpt-4o-mini", response_format=Answer,
                                                      messages=[{"role": "user", "content": "capital?"}])
        assert tracker.totals["total_tokens"] == 26
    assert parsed.choices[0].message.parsed.city == "Paris"


def test_azure_calls_carry_deployment_version_and_host(store, fake_llm, instrumented):
    client = openai.AzureOpenAI(azure_endpoint=fake_llm.azure_endpoint, api_version="2024-10-21", api_key="az-key",
                                max_retries=0)
    fake_llm.queue(ScriptedReply(model="gpt-4o-2024-08-06", usage={"prompt_tokens": 10, "completion_tokens": 10,
                                                                  "total_tokens": 20}))
    with mltrack.track_llm_context("azure"):
        client.chat.completions.create(model="my-gpt4o-deployment", messages=[{"role": "user", "content": "hi"}])
    mltrack.flush(timeout=30)
    run = store.run_named("azure")
    line = store.artifact_lines(run.info.run_id)[0]
    assert line["provider"] == "azure" and line["model"] == "gpt-4o-2024-08-06"
    assert line["metadata"]["azure_deployment"] == "my-gpt4o-deployment"
    assert line["metadata"]["api_version"] == "2024-10-21"
    assert line["metadata"]["endpoint_host"] == "127.0.0.1"
    assert run.data.metrics["llm.cost.total"] == float((Decimal(10) * Decimal("2.50") + 10 * 10) / 10**6)
    assert "az-key" not in str(line)


def test_rate_limit_error_is_counted_and_reraised_unchanged(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(status=429))
    with mltrack.track_llm_context("errors") as tracker:
        with pytest.raises(openai.RateLimitError):
            _ask(openai_client)
        _ask(openai_client)
        assert tracker.totals["calls"] == 2
    mltrack.flush(timeout=30)
    run = store.run_named("errors")
    assert store.history(run.info.run_id, "llm.errors") == [(0, 1), (1, 1)]
    assert run.data.tags["llm.error.type"] == "RateLimitError"
    assert store.artifact_lines(run.info.run_id)[0]["total_tokens"] == 0


def test_sdk_retries_are_one_call(store, fake_llm, instrumented):
    client = openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="sk-test", max_retries=2)
    fake_llm.queue(ScriptedReply(status=500), ScriptedReply(status=500))
    before = len(fake_llm.requests)
    with mltrack.track_llm_context("retries") as tracker:
        _ask(client)
        assert tracker.totals["calls"] == 1
    assert len(fake_llm.requests) - before == 3


def test_dropped_stream_keeps_partial_accounting(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text="w1 w2 w3 w4 w5", drop_after_chunks=2))
    got = []
    with mltrack.track_llm_context("dropped"):
        with pytest.raises(Exception):
            for chunk in _ask(openai_client, stream=True):
                got.append(chunk.choices[0].delta.content if chunk.choices else None)
    mltrack.flush(timeout=30)
    run = store.run_named("dropped")
    line = store.artifact_lines(run.info.run_id)[0]
    assert line["error"] is not None and line["response"] == "".join(g for g in got if g)
    assert run.data.metrics["llm.errors"] == 1


def test_budget_error_before_any_request(store, fake_llm, openai_client, instrumented):
    mltrack.configure(llm_cost_limit_error=0.0001)
    fake_llm.queue(ScriptedReply(usage={"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}))
    with mltrack.track_llm_context("budget"):
        _ask(openai_client)  # $0.00021: over the limit
        sent = len(fake_llm.requests)
        with pytest.raises(mltrack.BudgetExceededError):
            _ask(openai_client)
        assert len(fake_llm.requests) == sent


def test_with_mlflow_autolog_nothing_counted_twice(store, fake_llm, openai_client, instrumented):
    import mlflow

    mlflow.set_tracking_uri(store.uri)
    mlflow.openai.autolog()
    try:
        fake_llm.queue(ScriptedReply(usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}))
        with mltrack.track_llm_context("autolog") as tracker:
            _ask(openai_client)
            assert tracker.totals == {"calls": 1, "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                                      "cost": float(mini_cost(7, 3))}
    finally:
        mlflow.openai.autolog(disable=True)
    mltrack.flush(timeout=30)
    assert store.history(store.run_named("autolog").info.run_id, "llm.calls") == [(0, 1)]


def test_api_keys_and_auth_headers_never_reach_the_store(store, fake_llm, tmp_path, instrumented):
    key = "sk-live-SECRET-0123456789abcdef"
    client = openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=key, max_retries=0,
                           default_headers={"X-Custom-Auth": "custom-secret-header"})

    @mltrack.track(log_args=True)
    def ask(question, api_key=key):
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}],
                                              extra_headers={"Authorization": f"Bearer {key}"})

    ask("hello")
    mltrack.flush(timeout=30)
    assert fake_llm.requests[-1].headers["authorization"] == f"Bearer {key}"  # it was really sent
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"hello" in stored  # prompts are logged by default...
    assert key.encode() not in stored and b"custom-secret-header" not in stored  # ...credentials never


def test_stream_timings_are_logged(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text="w1 w2 w3 w4", chunk_delay_s=0.05,
                                 usage={"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}))
    with mltrack.track_llm_context("timings"):
        list(_ask(openai_client, stream=True))
    mltrack.flush(timeout=30)
    run = store.run_named("timings")
    m = run.data.metrics
    line = store.artifact_lines(run.info.run_id)[0]
    assert m["llm.ttft_ms"] == line["ttft_ms"] >= 50  # the first chunk was held back 50 ms
    assert m["llm.inter_token_latency_ms"] >= 45  # so was every later one
    assert m["llm.tokens_per_second"] == pytest.approx(4 / ((line["latency_ms"] - line["ttft_ms"]) / 1000))
    assert m["llm.latency"] >= m["llm.ttft_ms"] + 3 * 45


def test_instrumenting_imports_no_part_of_the_sdk_the_app_does_not_use():
    """A module the app has not imported is patched when (if ever) it is imported; uninstrument before that leaves
    it untouched. (A subprocess: this one imported every part of openai already.)"""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys, openai, mltrack
        RESP = "openai.resources.responses.responses"
        mltrack.instrument("openai")
        assert RESP not in sys.modules, "instrument imported the Responses API"
        from openai.resources.responses.responses import Responses
        assert type(Responses.__dict__["create"]).__name__ == "FunctionWrapper"
        mltrack.uninstrument("openai")
        assert type(Responses.__dict__["create"]).__name__ == "function"
        from openai.resources.embeddings import Embeddings  # already imported by openai: patched and restored at once
        mltrack.instrument("openai")
        assert type(Embeddings.__dict__["create"]).__name__ == "FunctionWrapper"
        mltrack.uninstrument("openai")
        assert type(Embeddings.__dict__["create"]).__name__ == "function"
        import anthropic
        mltrack.instrument("anthropic")
        mltrack.uninstrument("anthropic")
        import anthropic.resources.messages.messages as m
        assert type(m.Messages.__dict__["create"]).__name__ == "function", "patched after uninstrument"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
