"""Anthropic adapter: Messages API responses and usage (SDK objects or dicts)."""

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
    get,
    sampling_params,
    sdk_package,
    text_or_none,
)
from mltrack.record import Usage


def is_response(obj: Any) -> bool:
    if isinstance(obj, dict):
        return obj.get("type") == "message" and "content" in obj
    return sdk_package(obj) == "anthropic" and class_name(obj) in ("Message", "ParsedMessage", "BetaMessage")


def _text(content: Any) -> str | None:
    texts, tools = [], []
    for block in content or ():
        kind = get(block, "type")
        if kind == "text":
            texts.append(text_or_none(get(block, "text")) or "")
        elif kind == "tool_use":
            tools.append({"name": get(block, "name"), "input": get(block, "input")})
    if texts:
        return "".join(texts)
    return json.dumps(tools, default=str) if tools else None


def extract_response(obj: Any) -> Extracted:
    raw_usage = get(obj, "usage")
    usage = extract_usage(raw_usage) if raw_usage is not None else None
    return Extracted(provider="anthropic", model=text_or_none(get(obj, "model")), text=_text(get(obj, "content")),
                     usage=usage, service_tier=text_or_none(get(raw_usage, "service_tier")))


def is_usage(obj: Any) -> bool:
    if isinstance(obj, dict):
        return "input_tokens" in obj or "output_tokens" in obj
    return sdk_package(obj) == "anthropic" and class_name(obj) in ("Usage", "MessageDeltaUsage", "BetaUsage")


def extract_usage(obj: Any) -> Usage:
    """Anthropic's ``input_tokens`` excludes cache reads and writes: prompt tokens are the sum of all three."""
    uncached, completion = as_int(get(obj, "input_tokens")), as_int(get(obj, "output_tokens"))
    cache_read = as_int(get(obj, "cache_read_input_tokens")) or 0
    cache_write = as_int(get(obj, "cache_creation_input_tokens")) or 0
    prompt = None if uncached is None else uncached + cache_read + cache_write
    total = as_int(get(obj, "total_tokens"))
    prompt, completion = fill_parts(prompt, completion, total)
    reasoning = as_int(get(get(obj, "output_tokens_details"), "thinking_tokens")) or 0
    creation = get(obj, "cache_creation")  # {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}
    writes_1h = (as_int(get(creation, "ephemeral_1h_input_tokens")) or 0) if creation is not None else 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=None if prompt is None or completion is None else prompt + completion,
        cached_prompt_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        cache_write_1h_tokens=min(writes_1h, cache_write),
    )


def extract_request(args: tuple, kwargs: dict[str, Any]) -> Request:
    messages = kwargs.get("messages")
    system = kwargs.get("system")
    prompt: Any = messages
    if system and type(system).__name__ not in ("NotGiven", "Omit"):
        prompt = [{"role": "system", "content": system}, *(messages or [])]
    return Request(prompt=prompt, model=kwargs.get("model"), params=sampling_params(kwargs), operation="chat")


def is_request(kwargs: dict[str, Any]) -> bool:
    return "messages" in kwargs and ("system" in kwargs or str(kwargs.get("model", "")).startswith("claude"))


ADAPTER = ProviderAdapter(
    name="anthropic",
    is_response=is_response,
    extract_response=extract_response,
    is_usage=is_usage,
    extract_usage=extract_usage,
    extract_request=extract_request,
    is_request=is_request,
)


def anthropic_prompt_extractor(args: tuple, kwargs: dict[str, Any]) -> Any:
    """The prompt of an Anthropic call: ``messages``, with ``system`` first as a system message."""
    return extract_request(args, kwargs).prompt


def anthropic_response_extractor(result: Any) -> str | None:
    """The text of an Anthropic ``Message`` (its text blocks joined; tool calls as JSON when there is no text)."""
    return extract_response(result).text


def anthropic_token_extractor(result: Any) -> Any:
    """The usage an Anthropic message carries (its SDK usage object or dict), for ``token_usage``."""
    return get(result, "usage")


# --- streams -------------------------------------------------------------------------------------

from mltrack.providers._base import StreamAccumulator  # noqa: E402


class MessageStreamAccumulator(StreamAccumulator):
    """Raw Messages stream events: usage starts in ``message_start`` and is completed by ``message_delta``."""

    provider = "anthropic"

    def __init__(self) -> None:
        super().__init__()
        self._usage_fields: dict[str, Any] = {}

    def _merge_usage(self, raw: Any) -> None:
        for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                     "cache_creation"):
            value = get(raw, name)
            if value is not None:
                self._usage_fields[name] = value
        self.service_tier = text_or_none(get(raw, "service_tier")) or self.service_tier
        details = get(raw, "output_tokens_details")
        if details is not None:
            self._usage_fields["output_tokens_details"] = details
        self.usage = extract_usage(self._usage_fields) if "input_tokens" in self._usage_fields else None

    def add(self, event: Any) -> bool:
        kind = get(event, "type")
        if kind == "message_start":
            message = get(event, "message")
            self.model = text_or_none(get(message, "model"))
            self._merge_usage(get(message, "usage"))
        elif kind == "content_block_delta":
            delta = get(event, "delta")
            if get(delta, "type") == "text_delta":
                self.text_parts.append(get(delta, "text") or "")
            self.content_events += 1
        elif kind == "message_delta":
            self._merge_usage(get(event, "usage"))
            self.usage_final = True
        return True
