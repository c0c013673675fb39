"""Every supported response shape, as SDK objects from the real SDKs and as plain dicts, with exact usage."""

from __future__ import annotations

from decimal import Decimal

import pytest

import mltrack
from mltrack.testing import ScriptedReply


def per_million(tokens: int, rate: str) -> Decimal:
    return Decimal(tokens) * Decimal(rate) / 10**6


DICT_SHAPES = [
    pytest.param({"object": "chat.completion", "model": "gpt-4o-mini",
                  "choices": [{"message": {"role": "assistant", "content": "dict chat"}}],
                  "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110,
                            "prompt_tokens_details": {"cached_tokens": 40}}},
                 ("gpt-4o-mini", "openai", 100, 10, 40, "dict chat",
                  per_million(60, "0.15") + per_million(40, "0.075") + per_million(10, "0.60")), id="chat-dict"),
    pytest.param({"object": "text_completion", "model": "gpt-3.5-turbo-instruct",
                  "choices": [{"text": "legacy text"}],
                  "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}},
                 ("gpt-3.5-turbo-instruct", "openai", 20, 5, 0, "legacy text",
                  per_million(20, "1.50") + per_million(5, "2.00")), id="completion-dict"),
    pytest.param({"object": "response", "model": "gpt-4.1",
                  "output": [{"type": "message", "content": [{"type": "output_text", "text": "resp dict"}]}],
                  "usage": {"input_tokens": 300, "output_tokens": 30, "total_tokens": 330,
                            "input_tokens_details": {"cached_tokens": 100},
                            "output_tokens_details": {"reasoning_tokens": 12}}},
                 ("gpt-4.1", "openai", 300, 30, 100, "resp dict",
                  per_million(200, "2.00") + per_million(100, "0.50") + per_million(30, "8.00")), id="responses-dict"),
    pytest.param({"object": "list", "model": "text-embedding-3-large",
                  "data": [{"object": "embedding", "embedding": [0.1, 0.2], "index": 0}],
                  "usage": {"prompt_tokens": 50, "total_tokens": 50}},
                 ("text-embedding-3-large", "openai", 50, 0, 0, None, per_million(50, "0.13")), id="embedding-dict"),
    pytest.param({"type": "message", "model": "claude-3-haiku-20240307", "role": "assistant",
                  "content": [{"type": "text", "text": "claude dict"}],
                  "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 90,
                            "cache_creation_input_tokens": 0}},
                 ("claude-3-haiku-20240307", "anthropic", 100, 4, 90, "claude dict",
                  per_million(10, "0.25") + per_million(90, "0.03") + per_million(4, "1.25")), id="anthropic-dict"),
]


@pytest.mark.parametrize("response,expected", DICT_SHAPES)
def test_track_returning_dict_shaped_response(store, response, expected):
    model, provider, prompt, completion, cached, text, cost = expected

    @mltrack.track(name="dict-shape")
    def call():
        return response

    assert call() is response
    mltrack.flush(timeout=30)
    run = store.run_named("dict-shape")
    line = store.artifact_lines(run.info.run_id)[0]
    assert (line["model"], line["provider"], line["prompt_tokens"], line["completion_tokens"],
            line["cached_prompt_tokens"]) == (model, provider, prompt, completion, cached)
    assert line["response"] == text
    assert Decimal(line["total_cost"]) == cost
    assert run.data.metrics["llm.cost.total"] == float(cost)


def test_sdk_objects_returned_from_track(store, fake_llm, openai_client):
    fake_llm.queue(ScriptedReply(text="legacy", usage={"prompt_tokens": 7, "completion_tokens": 1,
                                                       "total_tokens": 8}),
                   ScriptedReply(usage={"prompt_tokens": 9, "total_tokens": 9}),
                   ScriptedReply(text="resp", usage={"input_tokens": 11, "output_tokens": 2, "total_tokens": 13,
                                                     "input_tokens_details": {"cached_tokens": 0,
                                                                              "cache_write_tokens": 0},
                                                     "output_tokens_details": {"reasoning_tokens": 0}}))

    @mltrack.track
    def legacy():
        return openai_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say")

    @mltrack.track
    def embed():
        return openai_client.embeddings.create(model="text-embedding-3-small", input="embed me")

    @mltrack.track
    def responses():
        return openai_client.responses.create(model="gpt-4o-mini", input="hi")

    legacy(), embed(), responses()
    mltrack.flush(timeout=30)
    got = {name: store.run_named(name).data.metrics for name in ("legacy", "embed", "responses")}
    assert (got["legacy"]["llm.tokens.total"], got["legacy"]["llm.cost.total"]) == (
        8, float(per_million(7, "1.50") + per_million(1, "2.00")))
    assert (got["embed"]["llm.tokens.prompt"], got["embed"]["llm.tokens.completion"]) == (9, 0)
    assert got["embed"]["llm.cost.total"] == float(per_million(9, "0.02"))
    assert got["responses"]["llm.cost.total"] == float(per_million(11, "0.15") + per_million(2, "0.60"))


def test_model_passed_positionally_is_known_from_the_response(store, fake_llm, openai_client):
    fake_llm.queue(ScriptedReply(model="gpt-4o-mini-2024-07-18", usage={"prompt_tokens": 3, "completion_tokens": 3,
                                                                       "total_tokens": 6}))

    def ask(model, question):
        return openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])

    tracked = mltrack.track(name="positional")(ask)
    tracked("gpt-4o-mini", "hello")
    mltrack.flush(timeout=30)
    run = store.run_named("positional")
    assert run.data.tags["llm.model"] == "gpt-4o-mini-2024-07-18"  # priced as its base model
    assert run.data.metrics["llm.cost.total"] == float(per_million(3, "0.15") + per_million(3, "0.60"))
