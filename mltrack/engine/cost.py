"""Apply a model's price to one call's token usage: exact Decimal USD for the prompt and the completion."""

from __future__ import annotations

from decimal import Context, Decimal

from mltrack.engine.prices import ModelPrice, PriceTier, Rates
from mltrack.record import CostBreakdown, Usage

_PER_MILLION = Decimal(1_000_000)
_EXACT = Context(prec=60)  # enough digits that no realistic token count x rate is ever rounded
_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")


def _count(value: int | None) -> int:
    if value.__class__ is int:  # what the adapters produce: skip the conversions
        return value if value > 0 else 0
    return max(int(value or 0), 0)


def _layer(rates: list[Decimal | None], over: Rates | PriceTier) -> None:
    for index, field in enumerate(_FIELDS):
        value = getattr(over, field)
        if value is not None:
            rates[index] = value


def rates_for(price: ModelPrice, prompt_tokens: int, service_tier: str | None = None,
              day: str | None = None) -> tuple[Decimal | None, ...]:
    """(input, output, cached_input, cache_write, cache_write_1h) for one call: the prices in force on ``day``
    (UTC ``YYYY-MM-DD``), then the long-context tier its prompt reaches, then the reported service tier."""
    rates: list[Decimal | None] = [price.input, price.output, price.cached_input, price.cache_write,
                                   price.cache_write_1h]
    tiers = price.tiers
    if price.history:
        period = price.period_for(day)
        if period is not None:
            _layer(rates, period.rates)
            tiers = period.tiers
    if tiers:
        chosen = None
        for tier in tiers:
            if prompt_tokens > tier.above_prompt_tokens:
                chosen = tier
        if chosen is not None:
            _layer(rates, chosen)
    if price.service_tiers and service_tier:
        over = price.service_tier(service_tier)
        if over is not None:
            _layer(rates, over)
    return tuple(rates)


def compute_cost(price: ModelPrice, usage: Usage, service_tier: str | None = None,
                 day: str | None = None) -> CostBreakdown:
    """USD cost of ``usage`` at ``price``, with cached reads and cache writes at their own rates.

    ``prompt_tokens`` includes cached reads and cache writes; the rest is billed at the input rate. A model
    without a cached or cache-write rate bills those tokens at its input rate; 1-hour cache writes (part of
    ``cache_write_tokens``) use ``cache_write_1h``, else the cache-write rate. Reasoning tokens are already
    part of ``completion_tokens`` and are never added again. When the prompt exceeds a tier's threshold,
    that tier's rates apply to the whole call. ``service_tier`` (as the response reported it) and ``day``
    (the call's UTC date) pick the rates where the price data has them. Parts never exceed ``prompt_tokens``.
    """
    prompt = _count(usage.prompt_tokens)
    completion = _count(usage.completion_tokens)
    cached = min(_count(usage.cached_prompt_tokens), prompt)
    writes = min(_count(usage.cache_write_tokens), prompt - cached)
    writes_1h = min(_count(usage.cache_write_1h_tokens), writes)
    fresh = prompt - cached - writes

    if price.tiers or price.history or price.service_tiers:
        input_rate, output_rate, cached_rate, write_rate, write_1h_rate = rates_for(price, prompt, service_tier, day)
    else:
        input_rate, output_rate, cached_rate, write_rate, write_1h_rate = (
            price.input, price.output, price.cached_input, price.cache_write, price.cache_write_1h)
    if cached_rate is None:
        cached_rate = input_rate
    if write_rate is None:
        write_rate = input_rate
    if write_1h_rate is None:
        write_1h_rate = write_rate

    mul, add = _EXACT.multiply, _EXACT.add
    prompt_sum = add(add(mul(fresh, input_rate), mul(cached, cached_rate)), mul(writes - writes_1h, write_rate))
    if writes_1h:
        prompt_sum = add(prompt_sum, mul(writes_1h, write_1h_rate))
    prompt_cost = _EXACT.divide(prompt_sum, _PER_MILLION)
    completion_cost = _EXACT.divide(mul(completion, output_rate), _PER_MILLION)
    return CostBreakdown(prompt=prompt_cost, completion=completion_cost)
