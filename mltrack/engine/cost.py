"""Apply a model's price to one call's token usage: exact Decimal USD for the prompt and the completion."""

from __future__ import annotations

from decimal import Context, Decimal

from mltrack.engine.prices import ModelPrice
from mltrack.record import CostBreakdown, Usage

_PER_MILLION = Decimal(1_000_000)
_EXACT = Context(prec=60)  # enough digits that no realistic token count x rate is ever rounded


def _count(value: int | None) -> int:
    if value.__class__ is int:  # what the adapters produce: skip the conversions
        return value if value > 0 else 0
    return max(int(value or 0), 0)


def compute_cost(price: ModelPrice, usage: Usage) -> CostBreakdown:
    """USD cost of ``usage`` at ``price``, with cached reads and cache writes at their own rates.

    ``prompt_tokens`` includes cached reads and cache writes; the rest is billed at the input rate. A model
    without a cached or cache-write rate bills those tokens at its input rate. Reasoning tokens are already
    part of ``completion_tokens`` and are never added again. When the prompt exceeds a tier's threshold,
    that tier's rates apply to the whole call. Parts are clamped so they never exceed ``prompt_tokens``.
    """
    prompt = _count(usage.prompt_tokens)
    completion = _count(usage.completion_tokens)
    cached = min(_count(usage.cached_prompt_tokens), prompt)
    writes = min(_count(usage.cache_write_tokens), prompt - cached)
    fresh = prompt - cached - writes

    rates = (price.tier_for(prompt) or price) if price.tiers else price
    input_rate = rates.input
    cached_rate = rates.cached_input if rates.cached_input is not None else input_rate
    write_rate = rates.cache_write if rates.cache_write is not None else input_rate

    mul, add = _EXACT.multiply, _EXACT.add
    prompt_cost = _EXACT.divide(add(add(mul(fresh, input_rate), mul(cached, cached_rate)), mul(writes, write_rate)),
                                _PER_MILLION)
    completion_cost = _EXACT.divide(mul(completion, rates.output), _PER_MILLION)
    return CostBreakdown(prompt=prompt_cost, completion=completion_cost)
