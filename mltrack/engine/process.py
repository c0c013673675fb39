"""Turn what an entry point saw (a :class:`RawCall`) into a priced :class:`LLMCall` added to its run's totals."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from mltrack import _safety
from mltrack.engine import observers as _observers
from mltrack.engine import pricing as _pricing
from mltrack.engine.cost import compute_cost
from mltrack.providers import _registry
from mltrack.record import CostBreakdown, LLMCall, Usage, new_call
from mltrack.run_state import RunHandle, Snapshot


@dataclass(slots=True)  # hot path: not frozen (5x cheaper to build); never mutated after creation
class RawCall:
    """One call as an entry point saw it, before normalization. Any field may be missing."""

    prompt: Any = None
    call_kwargs: Mapping[str, Any] | None = None  # the SDK call's kwargs: prompt, model and params when no prompt
    response: Any = None
    source: Any = None  # the SDK object a custom extractor took ``response`` from (usage and model come from it)
    token_usage: Any = None
    model: str | None = None
    provider: str | None = None
    fallback_model: str | None = None
    fallback_provider: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    stream_end_ms: float | None = None  # from request start to the last content event
    content_events: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    timestamp: float = field(default_factory=time.time)
    service_tier: str | None = None  # as a stream reported it (a response object carries its own)


@dataclass(slots=True)  # hot path: not frozen (5x cheaper to build); never mutated after creation
class Processed:
    """The engine's output: the public record, the run snapshot after it, and the texts for artifacts."""

    call: LLMCall
    snapshot: Snapshot | None
    prompt: Any
    response_text: str | None


_table_cache: tuple[Any, Any, _pricing.PriceTable] | None = None


def price_table(overrides: Mapping[str, Any] | None, user_dir: Any = None) -> _pricing.PriceTable:
    """The price table (the user's refreshed prices in ``user_dir`` when there are any, else the shipped ones)
    with the user's ``pricing`` overrides on top; rebuilt only when either changes."""
    global _table_cache
    cached = _table_cache
    if cached is not None and cached[0] is overrides and cached[1] == user_dir:
        return cached[2]
    table = _pricing.default_table(_pricing.user_pricing_dir(user_dir))
    if overrides:
        table = table.with_overrides(overrides)
    _table_cache = (overrides, user_dir, table)
    return table


def _azure_model(providers_config: Mapping[str, Any] | None, deployment: str) -> str | None:
    """The model an Azure deployment serves, from ``llm_providers.azure.deployments``."""
    entry = (providers_config or {}).get("azure")
    deployments = entry.get("deployments") if isinstance(entry, Mapping) else None
    return deployments.get(deployment) if isinstance(deployments, Mapping) else None


def _day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def _default_model(providers_config: Mapping[str, Any] | None, provider: str | None) -> str | None:
    if not providers_config or not provider:
        return None
    entry = providers_config.get(provider) or {}
    return entry.get("default_model") if isinstance(entry, Mapping) else None


def _fill_tokens(usage: Usage | None, prompt: Any, text: str | None, model: str | None,
                 failed: bool) -> tuple[Usage, bool]:
    """Provider usage wins; local counting fills only what is missing (and flags the call as estimated)."""
    from mltrack.engine import tokens

    if usage is not None and usage.complete:
        if usage.total_tokens is None:
            usage = Usage(usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens + usage.completion_tokens,
                          usage.cached_prompt_tokens, usage.cache_write_tokens, usage.reasoning_tokens,
                          usage.cache_write_1h_tokens)
        return usage, False
    if usage is None and failed and text is None:
        return Usage(0, 0, 0), False
    usage = usage or Usage()
    prompt_tokens = usage.prompt_tokens
    completion_tokens = usage.completion_tokens
    if prompt_tokens is None:
        prompt_tokens = tokens.count_prompt_tokens(prompt, model) if prompt is not None else 0
    if completion_tokens is None:
        completion_tokens = tokens.count_completion_tokens(text, model) if text else 0
    return Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens, usage.cached_prompt_tokens,
                 usage.cache_write_tokens, usage.reasoning_tokens, usage.cache_write_1h_tokens), True


def freeze_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A call's keyword arguments as they were at the call: a prompt among them is copied by :func:`freeze`."""
    return {key: freeze(value) if isinstance(value, list) else value for key, value in kwargs.items()}


def freeze(prompt: Any) -> Any:
    """The prompt as it was at the call: the writer serializes it later, and chat code appends the reply to the
    very list it sent (``messages.append(...)``) right after the call. Copies the list, its dict messages and
    their content-part lists (cheap: no deep copy of the texts, which are immutable)."""
    if not isinstance(prompt, list):
        return dict(prompt) if isinstance(prompt, dict) else prompt
    kept = []
    for message in prompt:
        if isinstance(message, dict):
            message = dict(message)
            content = message.get("content")
            if isinstance(content, list):
                message["content"] = list(content)
        kept.append(message)
    return kept


def _to_text(response: Any) -> str | None:
    if response is None:
        return None
    return response if isinstance(response, str) else str(response)


def _inter_token_latency(raw: RawCall) -> float | None:
    if raw.ttft_ms is None or raw.stream_end_ms is None or raw.content_events < 2:
        return None
    return (raw.stream_end_ms - raw.ttft_ms) / (raw.content_events - 1)


def _tokens_per_second(raw: RawCall, usage: Usage) -> float | None:
    """Completion tokens per second of generation (from the first content event to the end of the stream)."""
    if raw.ttft_ms is None or raw.latency_ms is None or not usage.completion_tokens:
        return None
    seconds = (raw.latency_ms - raw.ttft_ms) / 1000.0
    return usage.completion_tokens / seconds if seconds > 0 else None


def _tell_observers(call: LLMCall, extracted: Any, request: Any, settings: Any) -> None:
    """Hand a tracked call to the observers (Prometheus), starting Prometheus first if the config asks for it."""
    if not settings.enabled or not settings.llm_tracking_enabled:
        return
    if settings.prometheus_enabled:
        from mltrack.metrics import enable_from_settings

        enable_from_settings(settings)  # once; later calls return at the first check
    operation = ((extracted.operation if extracted is not None else None)
                 or (request.operation if request is not None else None) or "chat")
    _observers.notify(call, operation)


def process(raw: RawCall, settings: Any, handle: RunHandle | None) -> Processed:
    """Normalize, count, price and total one call. Raises on malformed input (callers hold the safety net)."""
    extracted = _registry.extract_response(raw.response) or _registry.extract_response(raw.source)
    prompt = raw.prompt
    if prompt is None and raw.call_kwargs is not None:
        request = _registry.request_from_kwargs(raw.call_kwargs, raw.provider)
    else:
        request = _registry.request_from_object(prompt)
    params = dict(raw.params)
    if request is not None:
        prompt = request.prompt
        params = {**request.params, **params}

    provider = raw.provider or (extracted.provider if extracted else None) or raw.fallback_provider
    model = (raw.model or (extracted.model if extracted else None) or (request.model if request else None)
             or raw.fallback_model or _default_model(settings.llm_providers, provider))
    text = _to_text(raw.response) if extracted is None or isinstance(raw.response, str) else extracted.text

    usage = _registry.normalize_usage(raw.token_usage, provider) if raw.token_usage is not None else None
    if usage is None and extracted is not None:
        usage = extracted.usage
    usage, estimated = _fill_tokens(usage, prompt, text, model, raw.error is not None)

    cost: CostBreakdown | None = None
    if model:
        table = price_table(settings.pricing, getattr(settings, "pricing_dir", None))
        priced_as = model
        if provider == "azure":
            priced_as = _azure_model(settings.llm_providers, model) or model
        price = table.lookup(priced_as, provider)
        if price is None and provider == "azure":
            _safety.warn_once(f"unpriced-model:{model}", f"mltrack: no price known for Azure deployment {model!r}; its "
                              "tokens are logged but not its cost. Name the model it serves in .mltrack.yml: "
                              f"llm_providers: {{azure: {{deployments: {{{model}: gpt-4o}}}}}}")
        elif price is None:
            _safety.warn_once(f"unpriced-model:{model}", f"mltrack: no price known for model {model!r}; its tokens are "
                              "logged but not its cost. Add it under 'pricing:' in .mltrack.yml.")
        else:
            tier = raw.service_tier or (extracted.service_tier if extracted is not None else None)
            cost = compute_cost(price, usage, tier, _day(raw.timestamp) if price.history else None)
            provider = provider or price.provider or None

    snapshot = handle.add(usage, cost, model, provider, raw.error is not None) if handle is not None else None
    if handle is not None and handle.judging is not None:  # judges read the run's last call at its end
        handle.judging.last_call(prompt, text)
    call = new_call({
        "model": model,
        "provider": provider,
        "prompt_tokens": usage.prompt_tokens or 0,
        "completion_tokens": usage.completion_tokens or 0,
        "total_tokens": usage.total_tokens or 0,
        "cached_prompt_tokens": usage.cached_prompt_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "prompt_cost": float(cost.prompt) if cost else None,
        "completion_cost": float(cost.completion) if cost else None,
        "total_cost": float(cost.total) if cost else None,
        "latency_ms": raw.latency_ms,
        "ttft_ms": raw.ttft_ms,
        "tokens_estimated": estimated,
        "error": raw.error,
        "cost": cost,
        "inter_token_latency_ms": _inter_token_latency(raw),
        "tokens_per_second": _tokens_per_second(raw, usage),
        "step": snapshot.step if snapshot else 0,
        "timestamp": raw.timestamp,
        "run_id": handle.known_run_id if handle else None,
        "params": params,
        "metadata": dict(raw.metadata),
    })
    if settings.prometheus_enabled or _observers.active:
        _tell_observers(call, extracted, request, settings)
    kept = freeze(prompt) if settings.llm_log_prompts else None
    return Processed(call=call, snapshot=snapshot, prompt=kept, response_text=text)
