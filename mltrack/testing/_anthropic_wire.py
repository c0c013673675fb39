"""Anthropic wire formats: Messages (JSON and SSE), count_tokens, errors."""

from __future__ import annotations

from typing import Any, Mapping

from ._extract import anthropic_texts
from ._rules import fake_usage, split_chunks, split_fixed
from ._script import ScriptedReply
from ._wire import Answer, Context, JsonReply, SseEvent, StreamReply, anthropic_stop, dumps, make_answer

__all__ = ["messages", "count_tokens", "error_reply", "bad_request"]


def _headers(ctx: Context, script: ScriptedReply) -> dict[str, str]:
    """Response headers Anthropic sends, plus the script's own."""
    return {"request-id": ctx.ident("req_"), **(script.headers or {})}


def _schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The JSON schema asked for by `output_config.format` (or the older `output_format`)."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, Mapping) else body.get("output_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        return fmt.get("schema") or {}
    return None


def _usage(a: Answer) -> dict[str, Any]:
    """Message usage (or the scripted one, verbatim)."""
    if a.usage_override is not None:
        return dict(a.usage_override)
    return {
        "input_tokens": a.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": a.completion_tokens,
        "service_tier": "standard",
    }


def _tool_id(a: Answer, ctx: Context, i: int) -> str:
    """Id of the i-th tool_use block."""
    return a.tool_calls[i].id or f"{ctx.ident('toolu_')}_{i}"


def _blocks(a: Answer, ctx: Context) -> list[dict[str, Any]]:
    """Content blocks: text (when there is text or no tool call), then tool_use blocks."""
    blocks: list[dict[str, Any]] = []
    if a.text or not a.tool_calls:
        blocks.append({"type": "text", "text": a.text})
    for i, call in enumerate(a.tool_calls):
        blocks.append({"type": "tool_use", "id": _tool_id(a, ctx, i), "name": call.name, "input": call.arguments_dict})
    return blocks


def _message(a: Answer, ctx: Context, content: list[dict[str, Any]], stop: str | None, usage: Any) -> dict[str, Any]:
    """A Message object."""
    return {
        "id": ctx.ident("msg_"),
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def messages(body: Mapping[str, Any], script: ScriptedReply, ctx: Context) -> JsonReply | StreamReply:
    """POST /v1/messages."""
    prompt, user = anthropic_texts(body)
    schema = _schema(body)
    a = make_answer(
        script, str(body.get("model") or "fake-model"), prompt, user, schema=schema, json_mode=schema is not None
    )
    if not body.get("stream"):
        return JsonReply(200, _message(a, ctx, _blocks(a, ctx), anthropic_stop(a), _usage(a)), _headers(ctx, script))
    return StreamReply(tuple(_events(a, ctx)), _headers(ctx, script))


def _events(a: Answer, ctx: Context) -> list[SseEvent]:
    """message_start, content blocks (with a ping after the first start), message_delta, message_stop."""
    events: list[SseEvent] = []

    def emit(kind: str, content: bool = False, **fields: Any) -> None:
        events.append(SseEvent(dumps({"type": kind, **fields}), kind, content))

    usage = _usage(a)
    output_tokens = usage.get("output_tokens", a.completion_tokens)
    start_usage = {**usage, "output_tokens": min(1, output_tokens)}
    emit("message_start", message=_message(a, ctx, [], None, start_usage))
    for index, block in enumerate(_blocks(a, ctx)):
        if block["type"] == "text":
            emit("content_block_start", index=index, content_block={"type": "text", "text": ""})
        else:
            emit("content_block_start", index=index, content_block={**block, "input": {}})
        if index == 0:
            emit("ping")
        if block["type"] == "text":
            for piece in split_chunks(block["text"]):
                emit("content_block_delta", True, index=index, delta={"type": "text_delta", "text": piece})
        else:
            for piece in split_fixed(dumps(block["input"])):
                emit(
                    "content_block_delta", True, index=index, delta={"type": "input_json_delta", "partial_json": piece}
                )
        emit("content_block_stop", index=index)
    emit(
        "message_delta",
        delta={"stop_reason": anthropic_stop(a), "stop_sequence": None},
        usage={**usage, "output_tokens": output_tokens},  # cumulative counts, as the real API sends
    )
    emit("message_stop")
    return events


def count_tokens(body: Mapping[str, Any], script: ScriptedReply, ctx: Context) -> JsonReply:
    """POST /v1/messages/count_tokens: the prompt tokens a messages call would report."""
    prompt, _ = anthropic_texts(body)
    return JsonReply(200, {"input_tokens": fake_usage(prompt, "")[0]}, _headers(ctx, script))


_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error_reply(status: int, script: ScriptedReply, ctx: Context) -> JsonReply:
    """An error in Anthropic's format: {"type": "error", "error": {type, message}, "request_id"}."""
    kind, message = _ERRORS.get(status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}."))
    error = {"type": script.error_type or kind, "message": script.error_message or message}
    headers = _headers(ctx, script)
    if status == 429:
        retry = script.retry_after_s
        headers = {"retry-after": str(int(retry)) if float(retry).is_integer() else repr(float(retry)), **headers}
    return JsonReply(status, {"type": "error", "error": error, "request_id": headers["request-id"]}, headers)


def bad_request(message: str) -> JsonReply:
    """A 400 in Anthropic's format."""
    return JsonReply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": message}})
