"""OpenAI (and Azure OpenAI) wire formats: chat, legacy completions, Responses, embeddings, errors."""

from __future__ import annotations

import base64
import struct
from typing import Any, Mapping

from ._extract import chat_texts, completions_texts, embedding_inputs, responses_texts
from ._rules import DEFAULT_EMBEDDING_DIMENSIONS, fake_embedding, fake_usage, split_chunks, split_fixed
from ._script import ScriptedReply
from ._wire import Answer, Context, JsonReply, SseEvent, StreamReply, dumps, make_answer, openai_finish

__all__ = ["chat_completions", "completions", "responses", "embeddings", "error_reply", "not_found", "bad_request"]

FINGERPRINT = "fp_fake"


def _headers(ctx: Context, script: ScriptedReply) -> dict[str, str]:
    """Response headers OpenAI sends, plus the script's own."""
    return {"x-request-id": ctx.ident("req_"), "openai-processing-ms": "1", **(script.headers or {})}


def _model(body: Mapping[str, Any], ctx: Context) -> str:
    """The request's model (Azure: else the deployment name)."""
    return str(body.get("model") or ctx.deployment or "fake-model")


def _service_tier(body: Mapping[str, Any]) -> str:
    """The tier OpenAI reports having used: the requested flex / priority / scale, else default (for auto too)."""
    tier = body.get("service_tier")
    return tier if tier in ("flex", "priority", "scale", "default") else "default"


def _include_usage(body: Mapping[str, Any]) -> bool:
    """Whether a stream must end with a usage chunk (stream_options.include_usage)."""
    options = body.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


def _chat_usage(a: Answer) -> Any:
    """Chat completions usage object (or the scripted one, verbatim)."""
    if a.usage_override is not None:
        return a.usage_override
    return {
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "total_tokens": a.prompt_tokens + a.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _legacy_usage(a: Answer) -> Any:
    """Legacy completions usage object (or the scripted one, verbatim)."""
    if a.usage_override is not None:
        return a.usage_override
    total = a.prompt_tokens + a.completion_tokens
    return {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens, "total_tokens": total}


def _call_id(a: Answer, ctx: Context, i: int) -> str:
    """Id of the i-th tool call."""
    call = a.tool_calls[i]
    return call.id or f"{ctx.ident('call_')}_{i}"


def _chat_schema(body: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, bool]:
    """(JSON schema, json mode) asked for by a chat `response_format`."""
    fmt = body.get("response_format")
    if not isinstance(fmt, Mapping):
        return None, False
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return spec.get("schema") or {}, True
    return None, fmt.get("type") == "json_object"


def _sse(value: Any, content: bool = False, event: str | None = None) -> SseEvent:
    """An SSE event carrying JSON."""
    return SseEvent(data=dumps(value), event=event, content=content)


# ---------------------------------------------------------------- chat completions


def chat_completions(body: Mapping[str, Any], script: ScriptedReply, ctx: Context) -> JsonReply | StreamReply:
    """POST /v1/chat/completions (and Azure's deployments/{d}/chat/completions)."""
    prompt, user = chat_texts(body)
    schema, json_mode = _chat_schema(body)
    a = make_answer(script, _model(body, ctx), prompt, user, schema=schema, json_mode=json_mode)
    if body.get("stream"):
        return StreamReply(tuple(_chat_events(a, ctx, _include_usage(body), _service_tier(body))),
                           _headers(ctx, script))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": a.text if (a.text or not a.tool_calls) else None,
        "refusal": None,
        "annotations": [],
    }
    if a.tool_calls:
        message["tool_calls"] = [
            {"id": _call_id(a, ctx, i), "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            for i, c in enumerate(a.tool_calls)
        ]
    payload = {
        "id": ctx.ident("chatcmpl-"),
        "object": "chat.completion",
        "created": ctx.created,
        "model": a.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": openai_finish(a)}],
        "usage": _chat_usage(a),
        "service_tier": _service_tier(body),
        "system_fingerprint": FINGERPRINT,
    }
    return JsonReply(200, payload, _headers(ctx, script))


def _chat_events(a: Answer, ctx: Context, include_usage: bool, tier: str = "default") -> list[SseEvent]:
    """chat.completion.chunk events, the optional usage chunk, then [DONE]."""
    base = {
        "id": ctx.ident("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": a.model,
        "service_tier": tier,
        "system_fingerprint": FINGERPRINT,
    }

    def chunk(delta: Mapping[str, Any], finish: str | None = None, content: bool = False) -> SseEvent:
        data: dict[str, Any] = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return _sse(data, content)

    has_text = bool(a.text) or not a.tool_calls
    events = [chunk({"role": "assistant", "content": "" if has_text else None, "refusal": None})]
    events += [chunk({"content": piece}, content=True) for piece in split_chunks(a.text)]
    for i, call in enumerate(a.tool_calls):
        head = {
            "index": i,
            "id": _call_id(a, ctx, i),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        events.append(chunk({"tool_calls": [head]}))
        events += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, content=True)
            for piece in split_fixed(call.arguments_json)
        ]
    events.append(chunk({}, openai_finish(a)))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": _chat_usage(a)}))
    events.append(SseEvent("[DONE]"))
    return events


# ---------------------------------------------------------------- legacy completions


def completions(body: Mapping[str, Any], script: ScriptedReply, ctx: Context) -> JsonReply | StreamReply:
    """POST /v1/completions (legacy text completions)."""
    prompt, user = completions_texts(body)
    a = make_answer(script, _model(body, ctx), prompt, user)
    finish = openai_finish(a)
    base = {"id": ctx.ident("cmpl-"), "object": "text_completion", "created": ctx.created, "model": a.model}
    if not body.get("stream"):
        choice = {"text": a.text, "index": 0, "logprobs": None, "finish_reason": finish}
        payload = {**base, "choices": [choice], "usage": _legacy_usage(a), "system_fingerprint": FINGERPRINT}
        return JsonReply(200, payload, _headers(ctx, script))
    include_usage = _include_usage(body)

    def chunk(text: str, finish_reason: str | None, content: bool) -> SseEvent:
        data: dict[str, Any] = {
            **base,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            data["usage"] = None
        return _sse(data, content)

    events = [chunk(piece, None, True) for piece in split_chunks(a.text)]
    events.append(chunk("", finish, False))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": _legacy_usage(a)}))
    events.append(SseEvent("[DONE]"))
    return StreamReply(tuple(events), _headers(ctx, script))


# ---------------------------------------------------------------- Responses API


def _responses_schema(body: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, bool]:
    """(JSON schema, json mode) asked for by Responses `text.format`."""
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping):
        return None, False
    if fmt.get("type") == "json_schema":
        return fmt.get("schema") or {}, True
    return None, fmt.get("type") == "json_object"


def _responses_usage(a: Answer) -> Any:
    """Responses API usage object (or the scripted one, verbatim)."""
    if a.usage_override is not None:
        return a.usage_override
    return {
        "input_tokens": a.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": a.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": a.prompt_tokens + a.completion_tokens,
    }


def _status(a: Answer) -> tuple[str, Any]:
    """(status, incomplete_details) of a finished response."""
    finish = openai_finish(a)
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _text_part(text: str) -> dict[str, Any]:
    """An output_text content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _output_items(a: Answer, ctx: Context, done: bool) -> list[dict[str, Any]]:
    """Output items: a message (when there is text or no tool call), then function calls."""
    state = "completed" if done else "in_progress"
    items: list[dict[str, Any]] = []
    if a.text or not a.tool_calls:
        content = [_text_part(a.text)] if done else []
        items.append(
            {"id": ctx.ident("msg_"), "type": "message", "status": state, "role": "assistant", "content": content}
        )
    for i, call in enumerate(a.tool_calls):
        items.append(
            {
                "id": f"{ctx.ident('fc_')}_{i}",
                "type": "function_call",
                "status": state,
                "call_id": _call_id(a, ctx, i),
                "name": call.name,
                "arguments": call.arguments_json if done else "",
            }
        )
    return items


def _response_obj(body: Mapping[str, Any], a: Answer, ctx: Context, done: bool) -> dict[str, Any]:
    """A Response object, in progress (no output, no usage) or finished."""
    status, incomplete = _status(a) if done else ("in_progress", None)
    return {
        "id": ctx.ident("resp_"),
        "object": "response",
        "created_at": ctx.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": a.model,
        "output": _output_items(a, ctx, True) if done else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": _service_tier(body),
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": _responses_usage(a) if done else None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def responses(body: Mapping[str, Any], script: ScriptedReply, ctx: Context) -> JsonReply | StreamReply:
    """POST /v1/responses."""
    prompt, user = responses_texts(body)
    schema, json_mode = _responses_schema(body)
    a = make_answer(script, _model(body, ctx), prompt, user, schema=schema, json_mode=json_mode)
    if not body.get("stream"):
        return JsonReply(200, _response_obj(body, a, ctx, True), _headers(ctx, script))
    return StreamReply(tuple(_responses_events(body, a, ctx)), _headers(ctx, script))


def _responses_events(body: Mapping[str, Any], a: Answer, ctx: Context) -> list[SseEvent]:
    """response.created ... response.completed, each as `event: TYPE` + data with a sequence_number."""
    seq = iter(range(1_000_000))
    events: list[SseEvent] = []

    def emit(kind: str, content: bool = False, **fields: Any) -> None:
        events.append(_sse({"type": kind, "sequence_number": next(seq), **fields}, content, kind))

    emit("response.created", response=_response_obj(body, a, ctx, False))
    emit("response.in_progress", response=_response_obj(body, a, ctx, False))
    started = _output_items(a, ctx, False)
    finished = _output_items(a, ctx, True)
    for index, (item, final) in enumerate(zip(started, finished)):
        emit("response.output_item.added", output_index=index, item=item)
        ref: dict[str, Any] = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            emit("response.content_part.added", **ref, content_index=0, part=_text_part(""))
            for piece in split_chunks(a.text):
                emit("response.output_text.delta", True, **ref, content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", **ref, content_index=0, text=a.text, logprobs=[])
            emit("response.content_part.done", **ref, content_index=0, part=_text_part(a.text))
        else:
            for piece in split_fixed(final["arguments"]):
                emit("response.function_call_arguments.delta", True, **ref, delta=piece)
            emit("response.function_call_arguments.done", **ref, name=final["name"], arguments=final["arguments"])
        emit("response.output_item.done", output_index=index, item=final)
    done = _response_obj(body, a, ctx, True)
    emit("response.completed" if done["status"] == "completed" else "response.incomplete", response=done)
    return events


# ---------------------------------------------------------------- embeddings


def embeddings(body: Mapping[str, Any], script: ScriptedReply, ctx: Context) -> JsonReply:
    """POST /v1/embeddings: fake vectors, as floats or as base64 float32 when encoding_format is base64."""
    texts = embedding_inputs(body)
    dims = int(body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS)
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = fake_embedding(text, dims)
        value: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = fake_usage("\n".join(texts), "")[0]
    usage = dict(script.usage) if script.usage is not None else {"prompt_tokens": tokens, "total_tokens": tokens}
    payload = {"object": "list", "data": data, "model": script.model or _model(body, ctx), "usage": usage}
    return JsonReply(200, payload, _headers(ctx, script))


# ---------------------------------------------------------------- errors

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "permission_denied", "You are not allowed to sample from this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def error_reply(status: int, script: ScriptedReply, ctx: Context) -> JsonReply:
    """An error in OpenAI's format: {"error": {message, type, param, code}}."""
    kind, code, message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}.")
    )
    body = {
        "error": {
            "message": script.error_message or message,
            "type": script.error_type or kind,
            "param": None,
            "code": code,
        }
    }
    headers = _headers(ctx, script)
    if status == 429:
        headers = {"retry-after": _seconds(script.retry_after_s), **headers}
    return JsonReply(status, body, headers)


def not_found(method: str, path: str) -> JsonReply:
    """OpenAI's answer to an unknown URL."""
    message = f"Invalid URL ({method} {path})"
    return JsonReply(404, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})


def bad_request(message: str, param: str | None = None) -> JsonReply:
    """A 400 in OpenAI's format."""
    return JsonReply(
        400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    )


def _seconds(value: float) -> str:
    """A retry-after value: whole seconds as an integer, else a decimal."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
