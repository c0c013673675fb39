"""LLMTracker and track_llm_context: every prompt / response / usage form of the contract, totals, metrics."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import mltrack
from mltrack.testing import ScriptedReply

MINI_IN, MINI_CACHED, MINI_OUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")  # gpt-4o-mini per 1M


def mini_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return ((prompt - cached) * MINI_IN + cached * MINI_CACHED + completion * MINI_OUT) / 10**6


def test_context_logs_per_call_and_cumulative_metrics(store):
    with mltrack.track_llm_context("rag-query", model="gpt-4o-mini", tags={"feature": "rag"}) as tracker:
        a = tracker.log_prompt_response("What is MLflow?", "A platform.",
                                        token_usage={"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120})
        b = tracker.log_prompt_response([{"role": "user", "content": "And tracking?"}], "Runs and metrics.",
                                        token_usage={"input_tokens": 300, "output_tokens": 40}, latency_ms=123.5)
        assert tracker.totals == {"calls": 2, "prompt_tokens": 400, "completion_tokens": 60, "total_tokens": 460,
                                  "cost": float(mini_cost(100, 20) + mini_cost(300, 40))}
    assert (a.model, a.provider, a.prompt_tokens, a.total_tokens, a.tokens_estimated) == (
        "gpt-4o-mini", "openai", 100, 120, False)
    assert a.cost.total == mini_cost(100, 20)
    assert b.total_cost == float(mini_cost(300, 40)) and b.latency_ms == 123.5
    mltrack.flush(timeout=30)
    run = store.run_named("rag-query")
    rid = run.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["feature"] == "rag"
    assert store.history(rid, "llm.tokens.prompt") == [(0, 100), (1, 300)]
    assert store.history(rid, "llm.tokens.cumulative.total") == [(0, 120), (1, 460)]
    assert store.history(rid, "llm.cost.cumulative") == [
        (0, float(mini_cost(100, 20))), (1, float(mini_cost(100, 20) + mini_cost(300, 40)))]
    assert store.history(rid, "llm.calls") == [(0, 1), (1, 2)]
    assert store.history(rid, "llm.latency") == [(1, 123.5)]
    assert "execution_time_seconds" in run.data.metrics
    assert run.data.params == {}  # prompts never go to params


def test_artifacts_hold_prompt_and_response_with_timestamps(store):
    with mltrack.track_llm_context("artifacts", model="gpt-4o-mini") as tracker:
        tracker.log_prompt_response("first prompt", "first answer", token_usage={"prompt_tokens": 3,
                                                                                 "completion_tokens": 2})
        tracker.log_prompt_response([{"role": "user", "content": "second"}], "second answer",
                                    token_usage={"prompt_tokens": 4, "completion_tokens": 2},
                                    params={"temperature": 0.2}, metadata={"user": "u1"})
    mltrack.flush(timeout=30)
    lines = store.artifact_lines(store.run_named("artifacts").info.run_id)
    assert [line["prompt"] for line in lines] == ["first prompt", [{"role": "user", "content": "second"}]]
    assert [line["response"] for line in lines] == ["first answer", "second answer"]
    assert all(line["timestamp"].startswith("20") for line in lines)
    assert lines[1]["params"] == {"temperature": 0.2} and lines[1]["metadata"] == {"user": "u1"}
    assert lines[0]["total_cost"] == str(mini_cost(3, 2))


def test_prompt_is_kept_as_it_was_when_chat_code_appends_to_it_afterwards(store):
    # The chat-loop pattern: the same messages list is sent again after the reply is appended to it.
    messages = [{"role": "user", "content": [{"type": "text", "text": "q0"}]}]
    with mltrack.track_llm_context("chat-loop", model="gpt-4o-mini") as tracker:
        for i in range(3):
            tracker.log_prompt_response(messages, f"a{i}", token_usage={"prompt_tokens": 5, "completion_tokens": 1})
            messages.append({"role": "assistant", "content": f"a{i}"})
            messages.append({"role": "user", "content": f"q{i + 1}"})
            messages[0]["content"].append({"type": "text", "text": "edited later"})
    mltrack.flush(timeout=30)
    lines = store.artifact_lines(store.run_named("chat-loop").info.run_id)
    assert [len(line["prompt"]) for line in lines] == [1, 3, 5]
    assert [len(line["prompt"][0]["content"]) for line in lines] == [1, 2, 3]
    assert lines[2]["prompt"][-1] == {"role": "user", "content": "q2"}


def test_prompt_logging_off_keeps_text_out_of_mlflow(store, tmp_path):
    mltrack.configure(llm_log_prompts=False, llm_log_responses=False)
    secret_prompt, secret_answer = "my private medical question", "a private answer"
    with mltrack.track_llm_context("private", model="gpt-4o-mini") as tracker:
        tracker.log_prompt_response(secret_prompt, secret_answer, token_usage={"prompt_tokens": 5,
                                                                               "completion_tokens": 4})
    mltrack.flush(timeout=30)
    run = store.run_named("private")
    lines = store.artifact_lines(run.info.run_id)
    assert lines and "prompt" not in lines[0] and "response" not in lines[0]
    assert lines[0]["total_tokens"] == 9
    everything = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert secret_prompt.encode() not in everything and secret_answer.encode() not in everything


def test_plain_text_is_counted_locally_and_flagged(store):
    from mltrack.engine.tokens import count_completion_tokens, count_prompt_tokens

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    with mltrack.track_llm_context("estimate") as tracker:
        call = tracker.log_prompt_response(messages, "Blue.", model="gpt-4o")
    expected_prompt = count_prompt_tokens(messages, "gpt-4o")
    expected_completion = count_completion_tokens("Blue.", "gpt-4o")
    assert expected_prompt > 10 and expected_completion >= 1
    assert (call.prompt_tokens, call.completion_tokens, call.tokens_estimated) == (
        expected_prompt, expected_completion, True)
    assert call.cost.prompt == Decimal(expected_prompt) * Decimal("2.50") / 10**6


def test_sdk_objects_as_prompt_response_and_usage(store, fake_llm, openai_client, anthropic_client):
    fake_llm.queue(ScriptedReply(text="four", usage={"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12}))
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0}
    response = openai_client.chat.completions.create(**request)
    fake_llm.queue(ScriptedReply(text="hi", usage={"input_tokens": 9, "output_tokens": 2}))
    message = anthropic_client.messages.create(model="claude-3-haiku-20240307", max_tokens=10,
                                               messages=[{"role": "user", "content": "hello"}])
    with mltrack.track_llm_context("sdk-objects") as tracker:
        c1 = tracker.log_prompt_response(request, response)
        c2 = tracker.log_prompt_response("hello", message, token_usage=message.usage)
        c3 = tracker.log_prompt_response("hello", "hi", model="gpt-4o-mini", token_usage=response.usage)
    assert (c1.model, c1.provider, c1.prompt_tokens, c1.completion_tokens, c1.tokens_estimated) == (
        "gpt-4o-mini", "openai", 11, 1, False)
    assert c1.cost.total == mini_cost(11, 1)
    assert (c2.model, c2.provider, c2.prompt_tokens, c2.completion_tokens) == ("claude-3-haiku-20240307",
                                                                              "anthropic", 9, 2)
    assert c2.cost.total == (Decimal(9) * Decimal("0.25") + Decimal(2) * Decimal("1.25")) / 10**6
    assert (c3.prompt_tokens, c3.completion_tokens) == (11, 1)
    mltrack.flush(timeout=30)
    run = store.run_named("sdk-objects")
    assert run.data.tags["llm.model"] == "claude-3-haiku-20240307,gpt-4o-mini"
    assert run.data.tags["llm.provider"] == "anthropic,openai"
    lines = store.artifact_lines(run.info.run_id)
    assert lines[0]["prompt"] == request["messages"] and lines[0]["response"] == "four"
    assert lines[0]["params"] == {"temperature": 0}


def test_usage_dict_with_cache_and_reasoning_details(store):
    with mltrack.track_llm_context("details") as tracker:
        call = tracker.log_prompt_response("p", "r", model="o3-mini", token_usage={
            "prompt_tokens": 2000, "completion_tokens": 500, "total_tokens": 2500,
            "prompt_tokens_details": {"cached_tokens": 1500},
            "completion_tokens_details": {"reasoning_tokens": 400}})
    assert (call.cached_prompt_tokens, call.reasoning_tokens, call.completion_tokens) == (1500, 400, 500)
    # o3-mini: $1.10 input, $0.55 cached, $4.40 output per 1M; reasoning tokens are inside completion tokens
    assert call.cost.prompt == (Decimal(500) * Decimal("1.10") + Decimal(1500) * Decimal("0.55")) / 10**6
    assert call.cost.completion == Decimal(500) * Decimal("4.40") / 10**6


def test_default_model_from_config(store):
    mltrack.configure(llm_providers={"openai": {"default_model": "gpt-4o-mini"}})
    with mltrack.track_llm_context("defaults", provider="openai") as tracker:
        call = tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 10, "completion_tokens": 10})
    assert call.model == "gpt-4o-mini" and call.total_cost == float(mini_cost(10, 10))


def test_unknown_model_logs_tokens_not_cost_and_warns_once(store):
    with mltrack.track_llm_context("unknown") as tracker:
        with pytest.warns(Warning, match="my-secret-model") as record:
            first = tracker.log_prompt_response("p", "r", model="my-secret-model", token_usage={"prompt_tokens": 10,
                                                                                                 "completion_tokens": 5})
            second = tracker.log_prompt_response("p", "r", model="my-secret-model", token_usage={"prompt_tokens": 1,
                                                                                                  "completion_tokens": 1})
            # the calls are priced off this thread; reading a record prices it (and warns) here at the latest
            assert (first.total_tokens, first.total_cost, second.total_tokens, second.total_cost) == (15, None, 2, None)
        assert sum("my-secret-model" in str(w.message) for w in record) == 1
        assert tracker.totals["cost"] == 0.0
    mltrack.flush(timeout=30)
    m = store.run_named("unknown").data.metrics
    assert m["llm.tokens.cumulative.total"] == 17
    assert not any(k.startswith("llm.cost") for k in m)


def test_user_pricing_override(store):
    mltrack.configure(pricing={"my-finetune": {"input": 1.00, "output": 2.00, "cached_input": 0.10}})
    with mltrack.track_llm_context("finetune") as tracker:
        call = tracker.log_prompt_response("p", "r", model="my-finetune", token_usage={
            "prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 400}})
    assert call.cost.prompt == (Decimal(600) * 1 + Decimal(400) * Decimal("0.10")) / 10**6
    assert call.cost.completion == Decimal(200) / 10**6


def test_track_llm_call_with_custom_extractors(store):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")

    @tracker.track_llm_call(extract_prompt=lambda args, kwargs: args[0],
                            extract_response=lambda result: result["text"],
                            extract_token_usage=lambda result: {"prompt_tokens": result["in"],
                                                                "completion_tokens": result["out"]})
    def my_llm(prompt):
        return {"text": prompt[::-1], "in": 30, "out": 12}

    with mltrack.track_llm_context("custom"):
        assert my_llm("abc") == {"text": "cba", "in": 30, "out": 12}
        assert tracker.totals["total_tokens"] == 42
    mltrack.flush(timeout=30)
    run = store.run_named("custom")
    assert run.data.metrics["llm.cost.total"] == float(mini_cost(30, 12))
    assert store.artifact_lines(run.info.run_id)[0]["response"] == "cba"


def test_ready_extractors_with_real_sdks(store, fake_llm, openai_client, anthropic_client):
    tracker = mltrack.LLMTracker()
    fake_llm.queue(ScriptedReply(text="ok", usage={"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}))
    fake_llm.queue(ScriptedReply(text="yes", usage={"input_tokens": 6, "output_tokens": 1}))

    @tracker.track_llm_call(extract_prompt=mltrack.openai_prompt_extractor,
                            extract_response=mltrack.openai_response_extractor,
                            extract_token_usage=mltrack.openai_token_extractor)
    def ask_openai(**kwargs):
        return openai_client.chat.completions.create(**kwargs)

    @tracker.track_llm_call(extract_prompt=mltrack.anthropic_prompt_extractor,
                            extract_response=mltrack.anthropic_response_extractor,
                            extract_token_usage=mltrack.anthropic_token_extractor)
    def ask_claude(**kwargs):
        return anthropic_client.messages.create(**kwargs)

    with mltrack.track_llm_context("ready"):
        ask_openai(model="gpt-4o-mini", messages=[{"role": "user", "content": "ok?"}])
        ask_claude(model="claude-3-5-haiku-20241022", max_tokens=5, system="terse",
                   messages=[{"role": "user", "content": "yes?"}])
    mltrack.flush(timeout=30)
    run = store.run_named("ready")
    lines = store.artifact_lines(run.info.run_id)
    assert [(l["model"], l["prompt_tokens"], l["completion_tokens"], l["response"]) for l in lines] == [
        ("gpt-4o-mini", 8, 1, "ok"), ("claude-3-5-haiku-20241022", 6, 1, "yes")]
    assert lines[1]["prompt"][0] == {"role": "system", "content": "terse"}
    haiku = (Decimal(6) * Decimal("0.80") + Decimal(1) * 4) / 10**6
    assert run.data.metrics["llm.cost.cumulative"] == float(mini_cost(8, 1) + haiku)


def test_track_llm_call_counts_errors_and_reraises(store):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")

    @tracker.track_llm_call()
    def flaky():
        raise TimeoutError("upstream timed out")

    with mltrack.track_llm_context("errors"):
        with pytest.raises(TimeoutError):
            flaky()
        tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 1, "completion_tokens": 1})
    mltrack.flush(timeout=30)
    run = store.run_named("errors")
    assert store.history(run.info.run_id, "llm.errors") == [(0, 1), (1, 1)]
    assert store.history(run.info.run_id, "llm.calls") == [(0, 1), (1, 2)]
    assert run.data.tags["llm.error.type"] == "TimeoutError"


async def test_async_context_and_async_track_llm_call(store):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")

    @tracker.track_llm_call(extract_token_usage=lambda r: {"prompt_tokens": 5, "completion_tokens": 5})
    async def call(i):
        await asyncio.sleep(0)
        return f"answer {i}"

    async with mltrack.track_llm_context("async-ctx") as ctx_tracker:
        await asyncio.gather(*(call(i) for i in range(50)))
        assert ctx_tracker.totals["calls"] == 50
    mltrack.flush(timeout=30)
    run = store.run_named("async-ctx")
    assert run.data.metrics["llm.tokens.cumulative.total"] == 500
    assert run.data.metrics["llm.cost.cumulative"] == float(mini_cost(5, 5) * 50)
    assert sorted(s for s, _ in store.history(run.info.run_id, "llm.calls")) == list(range(50))


def test_explicit_run_id(store):
    from mlflow import MlflowClient

    client = MlflowClient(store.uri)
    run = client.create_run("0", run_name="mine")
    tracker = mltrack.LLMTracker(model="gpt-4o-mini", run_id=run.info.run_id)
    tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 2, "completion_tokens": 3})
    mltrack.flush(timeout=30)
    assert store.run(run.info.run_id).data.metrics["llm.tokens.total"] == 5
    assert tracker.run_id == run.info.run_id


def test_tracker_outside_any_run_gets_its_own(store):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")
    tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 2, "completion_tokens": 3})
    tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 2, "completion_tokens": 3})
    mltrack.flush(timeout=30)
    run = store.run(tracker.run_id)
    assert run.info.run_name.startswith("llm-tracker-")
    assert run.data.metrics["llm.tokens.cumulative.total"] == 10
