"""LlamaIndex LLMs: ``ChatResponse`` / ``CompletionResponse`` field names (no llama_index import here).

``response.raw`` holds the provider's own response (the OpenAI SDK's ``ChatCompletion`` for
llama-index-llms-openai, a chunk while streaming), so usage, model and cache details come from the provider
adapter that recognizes it; newer LlamaIndex also copies the OpenAI counts into ``additional_kwargs``.
"""

from __future__ import annotations

from typing import Any

from mltrack.providers import _registry
from mltrack.providers import openai as _openai
from mltrack.providers._base import Extracted, Request, StreamAccumulator, as_int, get, sampling_params
from mltrack.record import Usage


def provider_of(llm: Any) -> str:
    """``OpenAI`` -> openai, ``AzureOpenAI`` -> azure, ``Anthropic`` -> anthropic, else the class name lowered."""
    name = type(llm).__name__
    if name.startswith("Azure"):
        return "azure"
    if "OpenAI" in name:
        return "openai"
    if "Anthropic" in name:
        return "anthropic"
    return name.lower()


def _role(message: Any) -> str:
    role = get(message, "role")
    return str(get(role, "value", role) or "user")


def _content(message: Any) -> Any:
    try:
        content = getattr(message, "content", None)
    except Exception:  # noqa: BLE001 - a message made of non-text blocks
        content = None
    return content if content is not None else get(message, "content")


def messages_prompt(messages: Any) -> Any:
    if not isinstance(messages, (list, tuple)):
        return messages
    return [{"role": _role(m), "content": _content(m)} for m in messages]


def request(llm: Any, prompt: Any, kwargs: dict[str, Any], chat: bool) -> Request:
    params = sampling_params({"temperature": get(llm, "temperature"), "max_tokens": get(llm, "max_tokens"),
                              **(get(llm, "additional_kwargs") or {}), **kwargs})
    return Request(prompt=messages_prompt(prompt) if chat else prompt, model=get(llm, "model"), params=params)


def _usage_from_kwargs(additional: Any) -> Usage | None:
    if not isinstance(additional, dict) or "prompt_tokens" not in additional:
        return None
    prompt, completion = as_int(additional.get("prompt_tokens")), as_int(additional.get("completion_tokens"))
    total = as_int(additional.get("total_tokens"))
    return Usage(prompt, completion, total if total is not None else
                 (prompt + completion if prompt is not None and completion is not None else None))


def _text(response: Any) -> str | None:
    message = get(response, "message")
    if message is not None:
        text = _content(message)
        return text if isinstance(text, str) else None
    text = get(response, "text")
    return text if isinstance(text, str) else None


def extract_response(response: Any, provider: str) -> Extracted:
    """A ``ChatResponse`` / ``CompletionResponse``: text from LlamaIndex, usage and model from ``raw``."""
    raw = get(response, "raw")
    inner = _registry.extract_response(raw) if raw is not None else None
    usage = inner.usage if inner is not None else None
    if usage is None:
        usage = _usage_from_kwargs(get(response, "additional_kwargs"))
    model = inner.model if inner is not None else get(raw, "model")
    return Extracted(provider=provider, model=model if isinstance(model, str) else None, text=_text(response),
                     usage=usage)


def prepare_stream(llm: Any, kwargs: dict[str, Any], include_usage: bool) -> bool:
    """OpenAI LLMs: ask for usage on a stream the caller did not ask it for; True when mltrack added it."""
    if not include_usage or provider_of(llm) != "openai":
        return False
    for source in (kwargs, get(llm, "additional_kwargs") or {}):
        options = source.get("stream_options")
        if isinstance(options, dict) and "include_usage" in options:
            return False
    kwargs["stream_options"] = {**(kwargs.get("stream_options") or {}), "include_usage": True}
    return True


class ResponseStreamAccumulator(StreamAccumulator):
    """``ChatResponse`` / ``CompletionResponse`` chunks: text from ``delta``; usage and model from ``raw``."""

    def __init__(self, provider: str, hide_usage_chunk: bool = False) -> None:
        super().__init__()
        self.provider = provider
        self._hide_usage_chunk = hide_usage_chunk

    def add(self, event: Any) -> bool:
        raw = get(event, "raw")
        self.model = self.model or get(raw, "model")
        delta = get(event, "delta")
        if delta:
            self.text_parts.append(delta)
            self.content_events += 1
        raw_usage = get(raw, "usage")
        if raw_usage is not None:
            if _openai.is_usage(raw_usage):
                self.usage = _openai.extract_usage(raw_usage)
            else:
                self.usage = _registry.normalize_usage(raw_usage, self.provider)
            self.usage_final = True
            if self._hide_usage_chunk and not delta and not get(raw, "choices"):
                return False
        return True
