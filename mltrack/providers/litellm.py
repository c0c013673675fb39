"""LiteLLM: ``ModelResponse`` / ``ModelResponseStream`` (OpenAI-shaped) and its provider naming (no litellm import).

LiteLLM's ``usage.prompt_tokens`` includes cache reads and cache writes for every provider (for Anthropic it
adds ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` back in); cache reads are in
``prompt_tokens_details.cached_tokens``, cache writes in ``prompt_tokens_details.cache_write_tokens`` /
``cache_creation_tokens`` or the top-level ``cache_creation_input_tokens``; reasoning is inside completion tokens.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from mltrack.providers._base import (
    Extracted,
    Request,
    as_int,
    fill_parts,
    get,
    sampling_params,
    total_of,
)
from mltrack.providers.openai import ChatStreamAccumulator, prepare_chat_stream
from mltrack.record import Usage

# LiteLLM's ``custom_llm_provider`` -> mltrack's provider name (the rest pass through unchanged).
_PROVIDERS = {
    "text-completion-openai": "openai",
    "openai": "openai",
    "azure": "azure",
    "azure_text": "azure",
    "anthropic": "anthropic",
    "anthropic_text": "anthropic",
    "gemini": "google",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "mistral": "mistral",
    "together_ai": "together",
}


def provider_name(litellm_provider: Any) -> str:
    name = str(litellm_provider or "").lower()
    return _PROVIDERS.get(name, name or "litellm")


def provider_of(model: Any, custom_llm_provider: Any = None,
                resolve: Callable[[str], Any] | None = None) -> str:
    """The provider of a LiteLLM model string: ``custom_llm_provider``, else the ``openai/`` style prefix, else
    what ``resolve`` (``litellm.get_llm_provider``) says, else ``"litellm"``."""
    if custom_llm_provider:
        return provider_name(custom_llm_provider)
    if isinstance(model, str) and "/" in model:
        prefix = model.split("/", 1)[0].lower()
        if prefix in _PROVIDERS:
            return _PROVIDERS[prefix]
    if resolve is not None and isinstance(model, str):
        try:
            return provider_name(resolve(model)[1])
        except Exception:  # noqa: BLE001 - an unknown model is still logged, under "litellm"
            pass
    if isinstance(model, str) and "/" in model:
        return provider_name(model.split("/", 1)[0])
    return "litellm"


def extract_usage(obj: Any) -> Usage | None:
    """LiteLLM ``Usage`` (object or dict): prompt tokens already include cache reads and writes."""
    if obj is None:
        return None
    prompt, completion = as_int(get(obj, "prompt_tokens")), as_int(get(obj, "completion_tokens"))
    total = as_int(get(obj, "total_tokens"))
    if prompt is None and completion is None and total is None:
        return None
    prompt, completion = fill_parts(prompt, completion, total)
    in_details, out_details = get(obj, "prompt_tokens_details"), get(obj, "completion_tokens_details")
    cached = as_int(get(in_details, "cached_tokens")) or as_int(get(obj, "cache_read_input_tokens")) or 0
    cache_write = (as_int(get(in_details, "cache_write_tokens")) or as_int(get(in_details, "cache_creation_tokens"))
                   or as_int(get(obj, "cache_creation_input_tokens")) or 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total_of(prompt, completion, total),
                 cached_prompt_tokens=cached, cache_write_tokens=cache_write,
                 reasoning_tokens=as_int(get(out_details, "reasoning_tokens")) or 0)


def _text(obj: Any) -> str | None:
    choices = get(obj, "choices") or ()
    if not choices:
        return None
    message = get(choices[0], "message")
    if message is None:
        return get(choices[0], "text")
    text = get(message, "content")
    if text:
        return text
    calls = get(message, "tool_calls") or ()
    if calls:
        return json.dumps([{"name": get(get(c, "function"), "name"), "arguments": get(get(c, "function"), "arguments")}
                           for c in calls])
    return text


def extract_response(obj: Any, provider: str) -> Extracted:
    """A ``ModelResponse`` (chat or text completion) -> model, text and usage."""
    return Extracted(provider=provider, model=get(obj, "model"), text=_text(obj),
                     usage=extract_usage(get(obj, "usage")))


def extract_request(args: tuple, kwargs: dict[str, Any]) -> Request:
    """``completion(model, messages=..., **params)`` (model and messages may be positional)."""
    model = kwargs.get("model", args[0] if args else None)
    messages = kwargs.get("messages", args[1] if len(args) > 1 else None)
    prompt = messages if messages is not None else kwargs.get("prompt")
    return Request(prompt=prompt, model=model if isinstance(model, str) else None, params=sampling_params(kwargs))


# LiteLLM takes OpenAI's ``stream_options``: asking it for a stream's usage is OpenAI's rule.
prepare_stream = prepare_chat_stream


class StreamAccumulator(ChatStreamAccumulator):
    """``ModelResponseStream`` chunks (OpenAI chunk shape); usage arrives in the last one."""

    def __init__(self, provider: str, hide_usage_chunk: bool = False) -> None:
        super().__init__(hide_usage_chunk)
        self.provider = provider

    def add(self, event: Any) -> bool:
        visible = super().add(event)
        raw_usage = get(event, "usage")
        if raw_usage is not None:
            self.usage = extract_usage(raw_usage)
            self.usage_final = self.usage is not None
        return visible
