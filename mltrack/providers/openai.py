"""OpenAI adapter: Chat Completions, legacy Completions, Responses API and Embeddings (SDK objects or dicts)."""

from __future__ import annotations

import json
from typing import Any

from mltrack.providers._base import (
    Extracted,
    ProviderAdapter,
    Request,
    as_int,
    class_name,
    fill_parts,
    first,
    get,
    sampling_params,
    sdk_package,
    text_or_none,
    total_of,
)
from mltrack.record import Usage

_KIND_BY_CLASS = {
    "ChatCompletion": "chat",
    "ParsedChatCompletion": "chat",
    "Completion": "completion",
    "Response": "responses",
    "ParsedResponse": "responses",
    "CreateEmbeddingResponse": "embedding",
}
_kind_by_type: dict[type, str | None] = {}  # per SDK class, filled on first sight
_KIND_BY_OBJECT = {"chat.completion": "chat", "text_completion": "completion", "response": "responses"}
OPERATIONS = {"chat": "chat", "completion": "text_completion", "responses": "responses", "embedding": "embeddings"}
"""mltrack's response kind -> the OpenTelemetry GenAI operation name (``gen_ai.operation.name``)."""


def _kind(obj: Any) -> str | None:
    if isinstance(obj, dict):
        kind = _KIND_BY_OBJECT.get(obj.get("object"))  # type: ignore[arg-type]
        if kind is None and obj.get("object") == "list" and _looks_like_embeddings(obj.get("data")):
            kind = "embedding"
        return kind
    cls = type(obj)
    try:
        return _kind_by_type[cls]
    except KeyError:
        kind = _kind_by_type[cls] = _KIND_BY_CLASS.get(class_name(obj)) if sdk_package(obj) == "openai" else None
        return kind


def _looks_like_embeddings(data: Any) -> bool:
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "embedding" in data[0]


def is_response(obj: Any) -> bool:
    return _kind(obj) is not None


def _tool_calls_text(message: Any) -> str | None:
    calls = get(message, "tool_calls")
    if not calls:
        return None
    out = []
    for call in calls:
        fn = get(call, "function")
        out.append({"name": get(fn, "name"), "arguments": get(fn, "arguments")})
    return json.dumps(out)


def _responses_text(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        text = getattr(obj, "output_text", None)
        if isinstance(text, str):
            return text
    parts = []
    for item in get(obj, "output") or ():
        for content in get(item, "content") or ():
            if get(content, "type") == "output_text":
                parts.append(get(content, "text") or "")
    return "".join(parts) if parts else None


def extract_response(obj: Any) -> Extracted:
    kind = _kind(obj)
    text: str | None = None
    if kind == "chat":
        choice = first(get(obj, "choices"))
        if choice is not None:
            message = get(choice, "message")
            text = get(message, "content")
            if text is None:
                text = _tool_calls_text(message) or get(message, "refusal")
    elif kind == "completion":
        text = get(first(get(obj, "choices")), "text")
    elif kind == "responses":
        text = _responses_text(obj)
    raw_usage = get(obj, "usage")
    usage = extract_usage(raw_usage) if raw_usage is not None else None
    kind = kind or "chat"
    return Extracted(provider="openai", model=text_or_none(get(obj, "model")), text=text_or_none(text), usage=usage,
                     kind=kind, operation=OPERATIONS.get(kind, "chat"),
                     service_tier=text_or_none(get(obj, "service_tier")))


def is_usage(obj: Any) -> bool:
    if isinstance(obj, dict):
        return any(k in obj for k in ("prompt_tokens", "completion_tokens", "input_tokens_details", "output_tokens_details"))
    return sdk_package(obj) == "openai" and class_name(obj) in ("CompletionUsage", "ResponseUsage", "Usage")


def extract_usage(obj: Any) -> Usage:
    """Normalize CompletionUsage (prompt_/completion_tokens) or ResponseUsage (input_/output_tokens).

    OpenAI's prompt/input tokens already include cached tokens; reasoning tokens are inside completion tokens.
    """
    prompt_raw, completion_raw = get(obj, "prompt_tokens"), get(obj, "completion_tokens")
    if prompt_raw is not None or completion_raw is not None:
        prompt, completion = as_int(prompt_raw), as_int(completion_raw)
        in_details, out_details = get(obj, "prompt_tokens_details"), get(obj, "completion_tokens_details")
    else:
        prompt, completion = as_int(get(obj, "input_tokens")), as_int(get(obj, "output_tokens"))
        in_details, out_details = get(obj, "input_tokens_details"), get(obj, "output_tokens_details")
    total = as_int(get(obj, "total_tokens"))
    if completion is None and prompt is not None and total is not None and total == prompt:
        completion = 0  # embeddings report prompt and total only
    prompt, completion = fill_parts(prompt, completion, total)
    cached = as_int(get(in_details, "cached_tokens")) if in_details is not None else None
    writes = as_int(get(in_details, "cache_write_tokens")) if in_details is not None else None
    reasoning = as_int(get(out_details, "reasoning_tokens")) if out_details is not None else None
    if isinstance(obj, dict):  # mltrack's own flat names, accepted in usage dicts
        cached = cached or as_int(obj.get("cached_prompt_tokens"))
        writes = writes or as_int(obj.get("cache_write_tokens"))
        reasoning = reasoning or as_int(obj.get("reasoning_tokens"))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total_of(prompt, completion, total),
        cached_prompt_tokens=cached or 0,
        cache_write_tokens=writes or 0,
        reasoning_tokens=reasoning or 0,
    )


def _request_operation(key: str | None, kwargs: dict[str, Any]) -> str | None:
    """Which endpoint a request is for: ``input`` serves both Responses and Embeddings (told apart by the
    embedding-only parameters, or an embedding model's name)."""
    if key == "messages":
        return "chat"
    if key == "prompt":
        return "text_completion"
    if key == "input":
        model = kwargs.get("model")
        embedding = ("encoding_format" in kwargs or "dimensions" in kwargs
                     or (isinstance(model, str) and "embedding" in model))
        return "embeddings" if embedding else "responses"
    return None


def extract_request(args: tuple, kwargs: dict[str, Any]) -> Request:
    prompt: Any = None
    found: str | None = None
    for key in ("messages", "input", "prompt"):
        if kwargs.get(key) is not None:
            prompt, found = kwargs[key], key
            break
    if prompt is not None and kwargs.get("instructions"):
        instructions = {"role": "system", "content": kwargs["instructions"]}
        prompt = [instructions, *prompt] if isinstance(prompt, list) else [instructions, {"role": "user", "content": prompt}]
    return Request(prompt=prompt, model=kwargs.get("model"), params=sampling_params(kwargs),
                   operation=_request_operation(found, kwargs))


def is_request(kwargs: dict[str, Any]) -> bool:
    return any(key in kwargs for key in ("messages", "input", "prompt"))


ADAPTER = ProviderAdapter(
    name="openai",
    is_response=is_response,
    extract_response=extract_response,
    is_usage=is_usage,
    extract_usage=extract_usage,
    extract_request=extract_request,
    is_request=is_request,
)


def openai_prompt_extractor(args: tuple, kwargs: dict[str, Any]) -> Any:
    """The prompt of an OpenAI call: ``messages`` (chat), ``input`` (Responses, embeddings) or ``prompt``."""
    return extract_request(args, kwargs).prompt


def openai_response_extractor(result: Any) -> str | None:
    """The text of an OpenAI response (first choice, or the Responses API's output text)."""
    return extract_response(result).text


def openai_token_extractor(result: Any) -> Any:
    """The usage an OpenAI response carries (its SDK usage object or dict), for ``token_usage``."""
    return get(result, "usage")


# --- streams -------------------------------------------------------------------------------------

from mltrack.providers._base import StreamAccumulator  # noqa: E402


def prepare_chat_stream(kwargs: dict[str, Any], include_usage: bool) -> bool:
    """Ask for usage on a chat stream when the caller did not; returns True when mltrack added it (hide it then)."""
    if not include_usage:
        return False
    options = kwargs.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options:
        return False
    kwargs["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


class ChatStreamAccumulator(StreamAccumulator):
    """``chat.completion.chunk`` events (and legacy ``text_completion`` chunks); usage arrives in the last one."""

    provider = "openai"

    def __init__(self, hide_usage_chunk: bool = False) -> None:
        super().__init__()
        self._hide_usage_chunk = hide_usage_chunk

    def add(self, event: Any) -> bool:
        self.model = self.model or text_or_none(get(event, "model"))
        self.service_tier = text_or_none(get(event, "service_tier")) or self.service_tier
        if get(event, "object") == "text_completion":  # legacy Completions stream
            self.operation = "text_completion"
        choices = get(event, "choices") or ()
        for choice in choices:
            delta = get(choice, "delta")
            piece = get(delta, "content") if delta is not None else get(choice, "text")
            if piece:
                self.text_parts.append(piece)
                self.content_events += 1
            elif delta is not None and get(delta, "tool_calls"):
                self.content_events += 1
        raw_usage = get(event, "usage")
        if raw_usage is not None:
            self.usage = extract_usage(raw_usage)
            self.usage_final = True
            if not choices and self._hide_usage_chunk:
                return False
        return True


class ResponsesStreamAccumulator(StreamAccumulator):
    """Responses API events: text deltas, and the final response (with usage) on completed/incomplete/failed."""

    provider = "openai"
    operation = "responses"

    def add(self, event: Any) -> bool:
        kind = get(event, "type") or ""
        if kind == "response.output_text.delta":
            self.text_parts.append(get(event, "delta") or "")
            self.content_events += 1
        elif kind in ("response.created", "response.completed", "response.incomplete", "response.failed"):
            response = get(event, "response")
            self.model = text_or_none(get(response, "model")) or self.model
            raw_usage = get(response, "usage")
            if raw_usage is not None:
                self.usage = extract_usage(raw_usage)
                self.usage_final = kind != "response.created"
        return True


def stream_accumulator(kind: str, hide_usage_chunk: bool) -> StreamAccumulator:
    return ResponsesStreamAccumulator() if kind == "responses" else ChatStreamAccumulator(hide_usage_chunk)
