"""LangChain chat models: ``AIMessage`` / ``ChatResult`` / ``AIMessageChunk`` field names (no langchain import here).

LangChain's ``usage_metadata`` is already normalized the way mltrack counts: ``input_tokens`` INCLUDES cache
reads and cache writes for every provider (langchain-anthropic adds Anthropic's ``cache_read_input_tokens`` and
``cache_creation_input_tokens`` back into it; langchain-openai copies OpenAI's ``prompt_tokens``), and
``output_tokens`` includes reasoning. Cache and reasoning parts are in ``input_token_details`` /
``output_token_details``; with a service tier the keys are prefixed (``priority_cache_read``, ``flex_reasoning``).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from mltrack.providers._base import Extracted, Request, StreamAccumulator, as_int, get
from mltrack.record import Usage

# LangChain's ``ls_provider`` -> mltrack's provider name (the rest pass through unchanged).
_PROVIDERS = {"azure_openai": "azure", "azure": "azure", "openai": "openai", "anthropic": "anthropic",
              "google_genai": "google", "google_vertexai": "google", "mistralai": "mistral", "together": "together"}
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function",
          "developer": "developer", "chat": "user"}
# ls_* invocation params worth keeping on the record, under mltrack's (OpenAI-style) names.
_PARAMS = {"ls_temperature": "temperature", "ls_max_tokens": "max_tokens", "ls_stop": "stop"}


def provider_name(ls_provider: Any) -> str:
    return _PROVIDERS.get(str(ls_provider or "").lower(), str(ls_provider or "langchain"))


def _sum_keys(details: Any, suffix: str) -> int:
    """Sum a detail count over its plain and service-tier-prefixed keys (``cache_read``, ``priority_cache_read``)."""
    if not isinstance(details, Mapping):
        return 0
    total = 0
    for key, value in details.items():
        if key == suffix or key.endswith("_" + suffix):
            total += as_int(value) or 0
    return total


def usage_from_metadata(meta: Any) -> Usage | None:
    """``AIMessage.usage_metadata`` -> Usage (input_tokens already include cache reads and writes)."""
    if not isinstance(meta, Mapping) or ("input_tokens" not in meta and "output_tokens" not in meta):
        return None
    prompt, completion = as_int(meta.get("input_tokens")), as_int(meta.get("output_tokens"))
    total = as_int(meta.get("total_tokens"))
    inputs, outputs = meta.get("input_token_details"), meta.get("output_token_details")
    cache_write = (_sum_keys(inputs, "cache_creation") + _sum_keys(inputs, "ephemeral_5m_input_tokens")
                   + _sum_keys(inputs, "ephemeral_1h_input_tokens"))
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total,
                 cached_prompt_tokens=_sum_keys(inputs, "cache_read"), cache_write_tokens=cache_write,
                 reasoning_tokens=_sum_keys(outputs, "reasoning"))


def content_text(content: Any) -> str:
    """A message's text: a string content, or the text blocks of a list content joined."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or ():
        if isinstance(block, str):
            parts.append(block)
        elif get(block, "type") == "text" and isinstance(get(block, "text"), str):
            parts.append(get(block, "text"))
    return "".join(parts)


def _tool_calls_text(message: Any) -> str | None:
    calls = get(message, "tool_calls") or ()
    if not calls:
        return None
    return json.dumps([{"name": get(c, "name"), "arguments": get(c, "args")} for c in calls], default=str)


def _model_of(message: Any) -> str | None:
    metadata = get(message, "response_metadata") or {}
    return get(metadata, "model_name") or get(metadata, "model") or None


def is_cache_hit(message: Any) -> bool:
    """langchain-core marks a result served from its LLM cache with ``usage_metadata["total_cost"] == 0``."""
    meta = get(message, "usage_metadata")
    return isinstance(meta, Mapping) and "total_cost" in meta and meta["total_cost"] == 0


def extract_result(result: Any, provider: str) -> tuple[Extracted, bool]:
    """A ``ChatResult`` (from ``_generate_with_cache``) -> (what it says, whether it came from LangChain's cache)."""
    generations = get(result, "generations") or ()
    message = get(generations[0], "message") if generations else None
    cache_hit = message is not None and is_cache_hit(message)
    text = content_text(get(message, "content")) if message is not None else None
    if not text and message is not None:
        text = _tool_calls_text(message) or text
    usage = Usage(0, 0, 0) if cache_hit else usage_from_metadata(get(message, "usage_metadata"))
    return Extracted(provider=provider, model=_model_of(message), text=text or None, usage=usage), cache_hit


def messages_prompt(messages: Any) -> list[dict[str, Any]] | Any:
    """LangChain messages as ``{"role", "content"}`` dicts (what mltrack logs and counts)."""
    if not isinstance(messages, (list, tuple)):
        return messages
    out = []
    for message in messages:
        kind = get(message, "type")
        if kind is None:
            out.append(message)
            continue
        role = _ROLES.get(kind, kind)
        if kind == "chat":
            role = get(message, "role") or role
        out.append({"role": role, "content": get(message, "content")})
    return out


def request(messages: Any, ls_params: Mapping[str, Any]) -> Request:
    params = {}
    for key, name in _PARAMS.items():
        value = ls_params.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            params[name] = value
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            params[name] = list(value)
    model = ls_params.get("ls_model_name")
    return Request(prompt=messages_prompt(messages), model=model if isinstance(model, str) else None, params=params)


class MessageChunkAccumulator(StreamAccumulator):
    """``AIMessageChunk`` events of ``stream()`` / ``astream()``; usage metadata is summed across chunks."""

    def __init__(self, provider: str, hide_usage_chunk: bool = False) -> None:
        super().__init__()
        self.provider = provider
        self._hide_usage_chunk = hide_usage_chunk
        self._meta: dict[str, Any] | None = None

    def _merge(self, meta: Mapping[str, Any]) -> None:
        merged = self._meta or {}
        for key, value in meta.items():
            if isinstance(value, Mapping):
                inner = dict(merged.get(key) or {})
                for k, v in value.items():
                    if isinstance(v, int) and not isinstance(v, bool):
                        inner[k] = (inner.get(k) or 0) + v
                merged[key] = inner
            elif isinstance(value, int) and not isinstance(value, bool):
                merged[key] = (merged.get(key) or 0) + value
        self._meta = merged

    def add(self, event: Any) -> bool:
        self.model = self.model or _model_of(event)
        text = content_text(get(event, "content"))
        if text:
            self.text_parts.append(text)
            self.content_events += 1
        elif get(event, "tool_call_chunks"):
            self.content_events += 1
        meta = get(event, "usage_metadata")
        if isinstance(meta, Mapping) and meta:
            self._merge(meta)
            self.usage = usage_from_metadata(self._meta)
            self.usage_final = self.usage is not None
            if self._hide_usage_chunk and not text and not get(event, "tool_call_chunks"):
                return False
        return True
