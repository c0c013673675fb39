"""The fake LLM server, driven by the real openai and anthropic SDKs over HTTP."""

from __future__ import annotations

import base64
import importlib
import json
import struct
import time
from typing import Iterator

import anthropic
import openai
import pydantic
import pytest

from mltrack.testing import (
    FakeLLMServer,
    ScriptedReply,
    ToolCall,
    fake_embedding,
    fake_reply,
    fake_usage,
    minimal_json,
    split_chunks,
)

MODEL = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku-latest"
SYSTEM = "You are terse."
QUESTION = "What is the capital of France?"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
REPLY = "Fake reply to: What is the capital of France?"
# prompt: 3 + 6 words + 3 overhead; completion: 9 words
PROMPT_TOKENS, COMPLETION_TOKENS = 12, 9


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What an SDK raises when the connection dies mid-body (anthropic lets httpx's error through)."""
    errors: list[type[BaseException]] = [openai.APIConnectionError, anthropic.APIConnectionError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).HTTPError)
        except ImportError:
            pass
    return tuple(errors)


TRANSPORT_ERRORS = _transport_errors()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def srv(server: FakeLLMServer) -> FakeLLMServer:
    server.clear()
    return server


@pytest.fixture(scope="module")
def _oai(server: FakeLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)


@pytest.fixture(scope="module")
def _claude(server: FakeLLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test", max_retries=0)


@pytest.fixture
def oai(_oai: openai.OpenAI, srv: FakeLLMServer) -> openai.OpenAI:
    return _oai


@pytest.fixture
def claude(_claude: anthropic.Anthropic, srv: FakeLLMServer) -> anthropic.Anthropic:
    return _claude


# ---------------------------------------------------------------- rules


def test_default_rules_are_pure_functions() -> None:
    assert fake_reply(QUESTION) == REPLY
    assert fake_reply("  The quick brown fox jumps over the lazy dog again  ") == (
        "Fake reply to: The quick brown fox jumps over the lazy"
    )
    assert fake_reply("") == "Fake reply to:"
    assert fake_usage(f"{SYSTEM}\n{QUESTION}", REPLY) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert split_chunks(REPLY) == ["Fake", " reply", " to:", " What", " is", " the", " capital", " of", " France?"]
    assert "".join(split_chunks(" a  b \n")) == " a  b \n"
    assert split_chunks("") == []


def test_minimal_json_follows_required_refs_and_enums() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"$ref": "#/$defs/Kind"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "number"}]},
            "optional": {"type": "string"},
        },
        "required": ["name", "age", "tags", "kind", "maybe"],
        "$defs": {"Kind": {"enum": ["a", "b"]}},
    }
    assert minimal_json(schema) == {"name": "fake", "age": 1, "tags": [], "kind": "a", "maybe": 0.0}


# ---------------------------------------------------------------- OpenAI chat completions


def test_chat_json(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    resp = oai.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert resp.object == "chat.completion"
    assert resp.model == MODEL
    assert resp.choices[0].message.content == REPLY
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (12, 9, 21)
    assert resp.usage.prompt_tokens_details.cached_tokens == 0
    req = srv.requests[-1]
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == "Bearer test"
    assert req.json["messages"] == MESSAGES


def test_chat_stream_without_include_usage_sends_no_usage(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    chunks = list(oai.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert all(c.object == "chat.completion.chunk" and c.choices for c in chunks)
    assert all(c.usage is None and "usage" not in c.model_fields_set for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == REPLY
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert sum(1 for c in chunks if c.choices[0].delta.content) == COMPLETION_TOKENS
    assert "stream_options" not in srv.requests[-1].json


def test_chat_stream_include_usage_adds_final_usage_chunk(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    stream = oai.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    *content, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (12, 9, 21)
    assert all(c.usage is None and c.choices for c in content)
    assert content[-1].choices[0].finish_reason == "stop"
    assert srv.requests[-1].json["stream_options"] == {"include_usage": True}


def test_chat_stream_raw_wire(oai: openai.OpenAI) -> None:
    with oai.chat.completions.with_streaming_response.create(model=MODEL, messages=MESSAGES, stream=True) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in raw.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert all('"usage"' not in line for line in lines)


def test_chat_stream_helper(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(model=MODEL, messages=MESSAGES, stream_options={"include_usage": True}) as s:
        deltas = [e.delta for e in s if e.type == "content.delta"]
        final = s.get_final_completion()
    assert "".join(deltas) == REPLY
    assert final.choices[0].message.content == REPLY
    assert final.usage is not None and final.usage.total_tokens == 21


def test_chat_scripted_usage_passthrough(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    srv.queue(ScriptedReply(text="ok", usage=usage, model="o3-mini-2025-01-31"), ScriptedReply(usage=usage))
    resp = oai.chat.completions.create(model="o3-mini", messages=MESSAGES)
    assert resp.model == "o3-mini-2025-01-31"
    assert resp.choices[0].message.content == "ok"
    assert resp.usage.prompt_tokens_details.cached_tokens == 40
    assert resp.usage.completion_tokens_details.reasoning_tokens == 30
    assert resp.usage.total_tokens == 150
    chunks = list(
        oai.chat.completions.create(
            model="o3-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 40
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 30


def test_chat_tool_calls_json_and_stream(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    call = ToolCall("get_weather", {"city": "Paris", "unit": "celsius"}, id="call_1")
    srv.queue(
        ScriptedReply(tool_calls=[call]),
        ScriptedReply(tool_calls=[{"name": "get_weather", "arguments": '{"city":"Paris"}'}]),
    )
    resp = oai.chat.completions.create(model=MODEL, messages=MESSAGES)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls[0].id == "call_1"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris", "unit": "celsius"}
    assert resp.usage.completion_tokens == fake_usage("", 'get_weather {"city":"Paris","unit":"celsius"}')[1] == 2

    with oai.chat.completions.stream(model=MODEL, messages=MESSAGES) as s:
        final = s.get_final_completion()
    tool = final.choices[0].message.tool_calls[0]
    assert tool.function.name == "get_weather"
    assert tool.function.arguments == '{"city":"Paris"}'
    assert final.choices[0].finish_reason == "tool_calls"


def test_chat_parse_with_pydantic_model(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    class City(pydantic.BaseModel):
        name: str
        population: int
        capital: bool
        districts: list[str]

    resp = oai.chat.completions.parse(model=MODEL, messages=MESSAGES, response_format=City)
    parsed = resp.choices[0].message.parsed
    assert parsed == City(name="fake", population=0, capital=False, districts=[])
    assert srv.requests[-1].json["response_format"]["type"] == "json_schema"
    assert resp.usage.completion_tokens == len(resp.choices[0].message.content.split())


def test_chat_json_object_mode(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(model=MODEL, messages=MESSAGES, response_format={"type": "json_object"})
    assert json.loads(resp.choices[0].message.content) == {"reply": REPLY}


def test_queue_is_fifo_then_default(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    srv.queue(ScriptedReply(text="one"), ScriptedReply(text="two two"))
    assert srv.pending == 2
    texts = [oai.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content for _ in range(3)]
    assert texts == ["one", "two two", REPLY]
    assert srv.pending == 0


def test_finish_reason_is_translated(oai: openai.OpenAI, claude: anthropic.Anthropic, srv: FakeLLMServer) -> None:
    srv.queue(ScriptedReply(finish_reason="max_tokens"), ScriptedReply(finish_reason="length"))
    assert oai.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].finish_reason == "length"
    msg = claude.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": QUESTION}])
    assert msg.stop_reason == "max_tokens"


# ---------------------------------------------------------------- OpenAI legacy completions


def test_completions_json_and_stream(oai: openai.OpenAI) -> None:
    resp = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello to the world")
    assert resp.object == "text_completion"
    assert resp.choices[0].text == "Fake reply to: Say hello to the world"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (8, 8, 16)

    plain = list(oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", stream=True))
    assert "".join(c.choices[0].text for c in plain) == "Fake reply to: Say hello"
    assert all(c.usage is None for c in plain)
    assert plain[-1].choices[0].finish_reason == "stop"

    counted = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say hello", stream=True, stream_options={"include_usage": True}
        )
    )
    assert counted[-1].choices == []
    assert (counted[-1].usage.prompt_tokens, counted[-1].usage.completion_tokens) == (5, 5)


# ---------------------------------------------------------------- OpenAI Responses API


def test_responses_json(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    resp = oai.responses.create(model=MODEL, instructions=SYSTEM, input=QUESTION)
    assert resp.object == "response"
    assert resp.status == "completed"
    assert resp.output_text == REPLY
    assert resp.output[0].type == "message"
    u = resp.usage
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (12, 9, 21)
    assert u.input_tokens_details.cached_tokens == 0
    assert u.output_tokens_details.reasoning_tokens == 0
    assert srv.requests[-1].path == "/v1/responses"


def test_responses_message_list_input(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": SYSTEM},
            {"role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
        ],
    )
    assert resp.output_text == REPLY
    assert resp.usage.input_tokens == 12


def test_responses_stream_events_and_final_usage(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model=MODEL, instructions=SYSTEM, input=QUESTION, stream=True))
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types.count("response.output_text.delta") == COMPLETION_TOKENS
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.usage is None
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    final = events[-1].response
    assert final.output_text == REPLY
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (12, 9, 21)


def test_responses_stream_helper(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model=MODEL, input=QUESTION) as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert text == REPLY
    assert final.output_text == REPLY
    assert final.usage.output_tokens == 9


def test_responses_scripted_usage_and_tool_call(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    usage = {
        "input_tokens": 200,
        "input_tokens_details": {"cached_tokens": 150},
        "output_tokens": 80,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 280,
    }
    srv.queue(ScriptedReply(usage=usage), ScriptedReply(tool_calls=[ToolCall("lookup", {"q": "x"})]))
    resp = oai.responses.create(model="o4-mini", input=QUESTION, stream=True)
    final = [e for e in resp][-1].response
    assert final.usage.input_tokens_details.cached_tokens == 150
    assert final.usage.output_tokens_details.reasoning_tokens == 64
    resp = oai.responses.create(model=MODEL, input=QUESTION)
    assert resp.output[0].type == "function_call"
    assert (resp.output[0].name, json.loads(resp.output[0].arguments)) == ("lookup", {"q": "x"})


def test_responses_parse_with_pydantic_model(oai: openai.OpenAI) -> None:
    class Answer(pydantic.BaseModel):
        city: str
        sure: bool

    resp = oai.responses.parse(model=MODEL, input=QUESTION, text_format=Answer)
    assert resp.output_parsed == Answer(city="fake", sure=False)


# ---------------------------------------------------------------- embeddings


def test_embeddings_default_base64_is_decoded_by_sdk(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    resp = oai.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert srv.requests[-1].json["encoding_format"] == "base64"  # what the SDK asks for by default
    assert [d.embedding for d in resp.data] == [fake_embedding("hello world"), fake_embedding("bye")]
    assert (resp.usage.prompt_tokens, resp.usage.total_tokens) == (6, 6)


def test_embeddings_float_and_dimensions(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    resp = oai.embeddings.create(model="text-embedding-3-small", input="hi", encoding_format="float", dimensions=40)
    assert resp.data[0].embedding == fake_embedding("hi", 40)
    assert len(resp.data[0].embedding) == 40

    raw = oai.embeddings.with_raw_response.create(model="m", input="hi", encoding_format="base64")
    encoded = json.loads(raw.text)["data"][0]["embedding"]
    assert list(struct.unpack("<8f", base64.b64decode(encoded))) == fake_embedding("hi")


# ---------------------------------------------------------------- Azure OpenAI


def test_azure_chat_and_embeddings(srv: FakeLLMServer) -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint=srv.azure_endpoint, api_version="2024-10-21", api_key="test", max_retries=0
    )
    resp = azure.chat.completions.create(model="my-gpt4o", messages=MESSAGES)
    assert resp.choices[0].message.content == REPLY
    assert resp.model == "my-gpt4o"
    assert resp.usage.total_tokens == 21
    req = srv.requests[-1]
    assert req.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert req.query == {"api-version": "2024-10-21"}
    assert req.headers["api-key"] == "test"

    chunks = list(
        azure.chat.completions.create(
            model="my-gpt4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage.total_tokens == 21

    emb = azure.embeddings.create(model="my-embedder", input="hello world")
    assert emb.data[0].embedding == fake_embedding("hello world")
    assert srv.requests[-1].path == "/openai/deployments/my-embedder/embeddings"


# ---------------------------------------------------------------- Anthropic


def test_anthropic_json(claude: anthropic.Anthropic, srv: FakeLLMServer) -> None:
    msg = claude.messages.create(
        model=CLAUDE, max_tokens=64, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}]
    )
    assert msg.type == "message"
    assert msg.model == CLAUDE
    assert msg.content[0].type == "text" and msg.content[0].text == REPLY
    assert msg.stop_reason == "end_turn"
    u = msg.usage
    assert (u.input_tokens, u.output_tokens) == (12, 9)
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (0, 0)
    req = srv.requests[-1]
    assert req.path == "/v1/messages"
    assert req.headers.get("x-api-key") == "test" or req.headers.get("authorization") == "Bearer test"
    assert "anthropic-version" in req.headers


def test_anthropic_content_blocks_input(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=CLAUDE,
        max_tokens=64,
        system=[{"type": "text", "text": SYSTEM}],
        messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
    )
    assert msg.content[0].text == REPLY
    assert msg.usage.input_tokens == 12


def test_anthropic_raw_stream_events(claude: anthropic.Anthropic) -> None:
    events = list(
        claude.messages.create(
            model=CLAUDE, max_tokens=64, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}], stream=True
        )
    )
    types = [e.type for e in events]
    assert types == (
        ["message_start", "content_block_start"]
        + ["content_block_delta"] * COMPLETION_TOKENS
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    assert events[0].message.usage.input_tokens == 12
    assert events[0].message.usage.output_tokens == 1  # like the real API: a small running count
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].usage.output_tokens == 9
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == REPLY


def test_anthropic_raw_wire_has_named_events_and_ping(claude: anthropic.Anthropic) -> None:
    with claude.messages.with_streaming_response.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": QUESTION}], stream=True
    ) as raw:
        lines = [line for line in raw.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert len(names) == sum(1 for line in lines if line.startswith("data: "))


def test_anthropic_stream_helper(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=CLAUDE, max_tokens=64, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == REPLY
    assert len(pieces) == COMPLETION_TOKENS
    assert final.content[0].text == REPLY
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 9)


def test_anthropic_scripted_cache_usage(claude: anthropic.Anthropic, srv: FakeLLMServer) -> None:
    usage = {"input_tokens": 10, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 50, "output_tokens": 7}
    srv.queue(ScriptedReply(usage=usage), ScriptedReply(usage=usage, text="cached answer"))
    msg = claude.messages.create(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": QUESTION}])
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (
        10,
        300,
        50,
    )
    assert msg.usage.output_tokens == 7
    with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": QUESTION}]) as s:
        final = s.get_final_message()
    assert final.content[0].text == "cached answer"
    u = final.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens) == (
        10,
        300,
        50,
        7,
    )


def test_anthropic_tool_use(claude: anthropic.Anthropic, srv: FakeLLMServer) -> None:
    call = ToolCall("get_weather", {"city": "Paris"}, id="toolu_1")
    srv.queue(ScriptedReply(tool_calls=[call]), ScriptedReply(text="Let me check.", tool_calls=[call]))
    msg = claude.messages.create(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": QUESTION}])
    assert msg.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in msg.content] == [("tool_use", "get_weather", {"city": "Paris"})]
    with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": QUESTION}]) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_anthropic_count_tokens(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(
        model=CLAUDE, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}]
    )
    assert counted.input_tokens == 12


# ---------------------------------------------------------------- errors


def test_openai_rate_limit(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    srv.queue(ScriptedReply(status=429))
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model=MODEL, messages=MESSAGES)
    err = info.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "1"
    assert err.code == "rate_limit_exceeded"
    assert isinstance(err.body, dict) and err.body["type"] == "requests"
    assert srv.pending == 0


def test_openai_server_and_auth_errors(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    srv.queue(ScriptedReply(status=500), ScriptedReply(status=401, error_message="bad key"))
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(openai.AuthenticationError, match="bad key"):
        oai.responses.create(model=MODEL, input="x")


def test_anthropic_errors(claude: anthropic.Anthropic, srv: FakeLLMServer) -> None:
    srv.queue(ScriptedReply(status=429, retry_after_s=2), ScriptedReply(status=500), ScriptedReply(status=529))
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model=CLAUDE, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert info.value.body["type"] == "error"
    assert info.value.response.headers["retry-after"] == "2"
    with pytest.raises(anthropic.InternalServerError):
        claude.messages.create(model=CLAUDE, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        with claude.messages.stream(model=CLAUDE, max_tokens=8, messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()
    assert overloaded.value.status_code == 529


def test_invalid_requests_and_unknown_urls(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        oai.post("/nope", cast_to=object, body={})
    with pytest.raises(openai.BadRequestError, match="messages"):
        oai.post("/chat/completions", cast_to=object, body={"model": MODEL})
    assert srv.requests[-1].path == "/v1/chat/completions"


# ---------------------------------------------------------------- drops and delays


def test_drop_mid_stream_raises_openai(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    srv.queue(ScriptedReply(drop_after_chunks=3))
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["Fake", " reply", " to:"]
    # the server is still fine afterwards
    assert oai.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content == REPLY


def test_drop_non_stream_raises_connection_error(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    srv.queue(ScriptedReply(drop_after_chunks=0))
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model=MODEL, messages=MESSAGES)


def test_drop_mid_stream_raises_anthropic(claude: anthropic.Anthropic, srv: FakeLLMServer) -> None:
    srv.queue(ScriptedReply(drop_after_chunks=2))
    received: list[str] = []
    with pytest.raises(TRANSPORT_ERRORS):
        with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": QUESTION}]) as s:
            for text in s.text_stream:
                received.append(text)
    assert received == ["Fake", " reply"]


def test_delays_are_honoured(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    srv.queue(ScriptedReply(delay_s=0.15), ScriptedReply(chunk_delay_s=0.02))
    start = time.perf_counter()
    oai.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert time.perf_counter() - start >= 0.15

    start = time.perf_counter()
    stamps = [time.perf_counter() for c in oai.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)]
    assert stamps[-1] - start >= 0.02 * COMPLETION_TOKENS * 0.9


# ---------------------------------------------------------------- async clients


@pytest.mark.asyncio
async def test_async_openai_chat_and_stream(srv: FakeLLMServer) -> None:
    client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="test", max_retries=0)
    resp = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert resp.usage.total_tokens == 21
    stream = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].usage.completion_tokens == 9
    srv.queue(ScriptedReply(status=429))
    with pytest.raises(openai.RateLimitError):
        await client.responses.create(model=MODEL, input="x")
    await client.close()


@pytest.mark.asyncio
async def test_async_anthropic_stream_helper_and_drop(srv: FakeLLMServer) -> None:
    client = anthropic.AsyncAnthropic(base_url=srv.anthropic_base_url, api_key="test", max_retries=0)
    async with client.messages.stream(
        model=CLAUDE, max_tokens=64, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == REPLY
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 9)
    srv.queue(ScriptedReply(drop_after_chunks=1))
    with pytest.raises(TRANSPORT_ERRORS):
        async with client.messages.stream(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            async for _ in s.text_stream:
                pass
    await client.close()


# ---------------------------------------------------------------- server object and CLI


def test_server_addresses_and_lifecycle() -> None:
    srv = FakeLLMServer()
    with pytest.raises(RuntimeError):
        srv.url
    srv.start()
    try:
        assert srv.url.startswith("http://127.0.0.1:")
        assert srv.openai_base_url == srv.url + "/v1"
        assert srv.anthropic_base_url == srv.azure_endpoint == srv.url
        with pytest.raises(TypeError):
            srv.queue("not a reply")  # type: ignore[arg-type]
    finally:
        srv.stop()
    srv.stop()  # idempotent


def test_main_prints_base_urls(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mltrack.testing import __main__ as cli

    served: list[FakeLLMServer] = []
    monkeypatch.setattr(cli.FakeLLMServer, "serve_forever", lambda self: served.append(self))
    assert cli.main(["--port", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert served and "OPENAI_BASE_URL=http://127.0.0.1:" in out and "/v1" in out
    assert "ANTHROPIC_BASE_URL=" in out
