"""DSPy: ``dspy.LM`` calls and DSPy's own usage (no dspy import here).

DSPy 3.4+ runs every LM call through ``dspy.clients.execution.execute`` / ``aexecute``, which return a
``CallResult``: ``usage`` is DSPy's OpenAI-shaped dict (``prompt_tokens`` INCLUDES cache reads and writes for
Anthropic too; ``prompt_tokens_details.cached_tokens`` and ``cache_creation_tokens`` / ``cache_write_tokens``;
``completion_tokens_details.reasoning_tokens``), ``response_model`` the model that answered, ``outputs`` the
completions, ``cache_hit`` whether DSPy's cache answered without a request. Older DSPy returns LiteLLM's
``ModelResponse`` from ``LM.forward``; the same usage shape.
"""

from __future__ import annotations

from typing import Any, Mapping

from mltrack.providers import litellm as _ll
from mltrack.providers._base import Extracted, Request, get, sampling_params
from mltrack.record import Usage


def provider_of(lm: Any) -> str:
    """``dspy.LM("openai/gpt-4o-mini")`` -> ``openai`` (DSPy's own default is OpenAI when there is no prefix)."""
    model = get(lm, "model")
    if isinstance(model, str) and "/" in model:
        return _ll.provider_name(model.split("/", 1)[0])
    return "openai"


def _params(lm: Any, call_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = {**(get(lm, "kwargs") or {}), **(call_kwargs or {})}
    return sampling_params(merged)


def request(lm: Any, call: Any) -> Request:
    """The request of ``execute(lm, call)`` (a DSPy ``PreparedCall``): messages or prompt, model, params."""
    messages = get(call, "messages")
    prompt = messages if messages is not None else get(call, "prompt")
    if prompt is None and get(call, "request") is not None:
        prompt = get(get(call, "request"), "messages")
    return Request(prompt=prompt, model=get(lm, "model"), params=_params(lm, get(call, "kwargs")))


def forward_request(lm: Any, prompt: Any, messages: Any, kwargs: Mapping[str, Any]) -> Request:
    """The request of an older DSPy ``LM.forward(prompt=None, messages=None, **kwargs)``."""
    return Request(prompt=messages if messages is not None else prompt, model=get(lm, "model"),
                   params=_params(lm, kwargs))


def _output_text(outputs: Any) -> str | None:
    if not outputs:
        return None
    first = outputs[0]
    if isinstance(first, str):
        return first
    text = get(first, "text")
    return text if isinstance(text, str) else None


def extract_result(result: Any, provider: str) -> tuple[Extracted, bool]:
    """A ``CallResult`` (or an older DSPy's LiteLLM response) -> (what it says, whether DSPy's cache answered)."""
    cache_hit = bool(get(result, "cache_hit", False))
    if get(result, "outputs") is None and get(result, "choices") is not None:  # older DSPy: a LiteLLM response
        extracted = _ll.extract_response(result, provider)
        if cache_hit:
            extracted = Extracted(provider, extracted.model, extracted.text, Usage(0, 0, 0))
        return extracted, cache_hit
    usage = Usage(0, 0, 0) if cache_hit else _ll.extract_usage(get(result, "usage") or None)
    return Extracted(provider=provider, model=get(result, "response_model"), text=_output_text(get(result, "outputs")),
                     usage=usage), cache_hit
