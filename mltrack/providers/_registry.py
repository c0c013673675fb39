"""The registry of provider adapters: the only place that asks "which provider is this object?"."""

from __future__ import annotations

from typing import Any, Mapping

from mltrack.providers import anthropic as _anthropic
from mltrack.providers import openai as _openai
from mltrack.providers._base import Extracted, ProviderAdapter, Request, as_int, fill_parts, get, total_of
from mltrack.record import Usage

# Order matters where shapes overlap: the more specific detector first.
ADAPTERS: list[ProviderAdapter] = [_openai.ADAPTER, _anthropic.ADAPTER]
_REQUEST_ORDER: list[ProviderAdapter] = [_anthropic.ADAPTER, _openai.ADAPTER]
_BY_NAME = {a.name: a for a in ADAPTERS}
_response_adapter_by_type: dict[type, ProviderAdapter | None] = {}


def register(adapter: ProviderAdapter) -> None:
    """Add a provider adapter (first registered wins on ambiguous shapes)."""
    ADAPTERS.append(adapter)
    _REQUEST_ORDER.append(adapter)
    _BY_NAME[adapter.name] = adapter
    _response_adapter_by_type.clear()


def adapter_named(name: str | None) -> ProviderAdapter | None:
    return _BY_NAME.get(name or "")


def response_adapter(obj: Any) -> ProviderAdapter | None:
    """The adapter that recognizes ``obj`` as an LLM response, or None (cached per class for SDK objects)."""
    if obj is None or isinstance(obj, (str, bytes, int, float, list, tuple)):
        return None
    if isinstance(obj, dict):
        return next((a for a in ADAPTERS if a.is_response(obj)), None)
    cls = type(obj)
    try:
        return _response_adapter_by_type[cls]
    except KeyError:
        found = next((a for a in ADAPTERS if a.is_response(obj)), None)
        _response_adapter_by_type[cls] = found
        return found


def is_llm_response(obj: Any) -> bool:
    return response_adapter(obj) is not None


def extract_response(obj: Any) -> Extracted | None:
    adapter = response_adapter(obj)
    return adapter.extract_response(obj) if adapter else None


def normalize_usage(obj: Any, provider: str | None = None) -> Usage | None:
    """Any accepted ``token_usage`` form as a :class:`Usage`; ValueError names what was not understood."""
    if obj is None or isinstance(obj, Usage):
        return obj
    preferred = adapter_named(provider)
    candidates = ([preferred] if preferred else []) + [a for a in ADAPTERS if a is not preferred]
    for adapter in candidates:
        if adapter.is_usage(obj):
            return adapter.extract_usage(obj)
    if isinstance(obj, dict) and "total_tokens" in obj:
        total = as_int(obj["total_tokens"])
        prompt, completion = fill_parts(None, None, total)
        return Usage(prompt, completion, total_of(prompt, completion, total))
    raise ValueError(
        f"token_usage not understood: {type(obj).__name__} "
        "(expected prompt_tokens/completion_tokens or input_tokens/output_tokens, or an SDK usage object)"
    )


def extract_request(provider: str, args: tuple, kwargs: dict[str, Any]) -> Request:
    adapter = adapter_named(provider)
    if adapter is None:
        return Request(prompt=kwargs.get("messages") or kwargs.get("prompt"), model=kwargs.get("model"), params={})
    return adapter.extract_request(args, kwargs)


def request_from_object(obj: Any) -> Request | None:
    """A prompt given as an SDK request (the kwargs dict of ``create``): messages, model and params."""
    if not isinstance(obj, dict) or "model" not in obj:
        return None
    adapter = next((a for a in _REQUEST_ORDER if a.is_request(obj)), None)
    return adapter.extract_request((), obj) if adapter else None


def request_from_kwargs(kwargs: Mapping[str, Any], provider: str | None) -> Request:
    """What a call's keyword arguments say: read by the provider's adapter when the provider is known (an
    instrumented SDK method), else by whichever adapter recognizes them, else a plain ``messages`` / ``prompt``."""
    kwargs = dict(kwargs)
    if provider:
        return extract_request(provider, (), kwargs)
    return request_from_object(kwargs) or Request(prompt=kwargs.get("messages") or kwargs.get("prompt"),
                                                  model=None, params={})


__all__ = ["ADAPTERS", "Extracted", "Request", "register", "response_adapter", "is_llm_response", "extract_response",
           "normalize_usage", "extract_request", "request_from_object", "request_from_kwargs", "get"]
