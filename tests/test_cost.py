"""Exact USD cost of one call: cached reads, cache writes, reasoning tokens, long-context tiers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mltrack.engine.cost import compute_cost
from mltrack.engine.prices import ModelPrice, PriceTier
from mltrack.engine.pricing import default_table
from mltrack.record import CostBreakdown, Usage


def price(model: str) -> ModelPrice:
    found = default_table().lookup(model)
    assert found is not None, model
    return found


def cost(model: str, **usage: int) -> tuple[Decimal, Decimal]:
    result = compute_cost(price(model), Usage(**usage))
    assert isinstance(result, CostBreakdown)
    assert isinstance(result.prompt, Decimal) and isinstance(result.completion, Decimal)
    return result.prompt, result.completion


def test_plain_call() -> None:
    assert cost("gpt-4o", prompt_tokens=1000, completion_tokens=500) == (Decimal("0.0025"), Decimal("0.005"))
    result = compute_cost(price("gpt-4o"), Usage(prompt_tokens=1000, completion_tokens=500))
    assert result.total == Decimal("0.0075")


def test_openai_cached_tokens_are_billed_at_the_cached_rate() -> None:
    # 976 fresh * $2.50 + 1024 cached * $1.25 = $3720 per 1M; 300 output * $10
    assert cost("gpt-4o", prompt_tokens=2000, completion_tokens=300, cached_prompt_tokens=1024) == (
        Decimal("0.00372"), Decimal("0.003"))


def test_anthropic_cache_reads_and_writes_each_at_their_rate() -> None:
    # input_tokens=50, cache_read_input_tokens=10000, cache_creation_input_tokens=2000 -> prompt_tokens 12050
    # 50 * $3 + 10000 * $0.30 + 2000 * $3.75 = $10650 per 1M; 400 output * $15
    assert cost("claude-3-5-sonnet-20241022", prompt_tokens=12050, completion_tokens=400,
                cached_prompt_tokens=10000, cache_write_tokens=2000) == (Decimal("0.01065"), Decimal("0.006"))


def test_reasoning_tokens_are_part_of_completion_and_never_added_twice() -> None:
    with_reasoning = cost("o3-mini", prompt_tokens=100, completion_tokens=1500, reasoning_tokens=1200)
    assert with_reasoning == (Decimal("0.00011"), Decimal("0.0066"))
    assert with_reasoning == cost("o3-mini", prompt_tokens=100, completion_tokens=1500)


def test_model_without_cached_rate_bills_cached_tokens_at_input_rate() -> None:
    assert cost("gpt-4o-2024-05-13", prompt_tokens=2000, completion_tokens=0, cached_prompt_tokens=1000) == (
        Decimal("0.01"), Decimal("0"))


def test_model_without_cache_write_rate_bills_writes_at_input_rate() -> None:
    assert cost("gpt-4o", prompt_tokens=1000, completion_tokens=0, cache_write_tokens=200) == (
        Decimal("0.0025"), Decimal("0"))


def test_gemini_tier_above_threshold_applies_to_the_whole_call() -> None:
    # 200K prompt > 128K: 150000 * $2.50 + 50000 cached * $0.625; 1000 output * $10
    assert cost("gemini-1.5-pro", prompt_tokens=200_000, completion_tokens=1000, cached_prompt_tokens=50_000) == (
        Decimal("0.40625"), Decimal("0.01"))


def test_tier_starts_strictly_above_its_threshold() -> None:
    assert cost("gemini-1.5-pro", prompt_tokens=128_000, completion_tokens=1000) == (
        Decimal("0.16"), Decimal("0.005"))
    assert cost("gemini-1.5-pro", prompt_tokens=128_001, completion_tokens=1000) == (
        Decimal("0.3200025"), Decimal("0.01"))


def test_gemini_2_5_pro_long_prompt() -> None:
    assert cost("gemini-2.5-pro", prompt_tokens=250_000, completion_tokens=2000) == (
        Decimal("0.625"), Decimal("0.03"))
    assert cost("gemini-2.5-pro", prompt_tokens=200_000, completion_tokens=2000) == (
        Decimal("0.25"), Decimal("0.02"))


def test_anthropic_long_context_tier_reprices_cache_reads_and_writes() -> None:
    # 1000 + 250000 read + 10000 written = 261000 > 200K: 1000 * $6 + 250000 * $0.60 + 10000 * $7.50
    assert cost("claude-sonnet-4-20250514", prompt_tokens=261_000, completion_tokens=1000,
                cached_prompt_tokens=250_000, cache_write_tokens=10_000) == (Decimal("0.231"), Decimal("0.0225"))


def test_highest_matching_tier_wins() -> None:
    tiered = ModelPrice(model="t", provider="x", input=Decimal("1"), output=Decimal("2"), tiers=(
        PriceTier(100, Decimal("10"), Decimal("20")), PriceTier(1000, Decimal("100"), Decimal("200"))))
    assert compute_cost(tiered, Usage(prompt_tokens=100, completion_tokens=1)).prompt == Decimal("0.0001")
    assert compute_cost(tiered, Usage(prompt_tokens=101, completion_tokens=1)).prompt == Decimal("0.00101")
    assert compute_cost(tiered, Usage(prompt_tokens=1001, completion_tokens=1)) == CostBreakdown(
        Decimal("0.1001"), Decimal("0.0002"))


def test_none_counts_as_zero() -> None:
    assert cost("gpt-4o") == (Decimal("0"), Decimal("0"))
    assert cost("gpt-4o", prompt_tokens=None, completion_tokens=10) == (Decimal("0"), Decimal("0.0001"))


def test_arithmetic_is_exact() -> None:
    assert cost("gemini-1.5-flash", prompt_tokens=1, completion_tokens=3) == (
        Decimal("0.000000075"), Decimal("0.0000009"))
    assert cost("gpt-4o-mini", prompt_tokens=3, completion_tokens=0, cached_prompt_tokens=3)[0] == Decimal(
        "0.000000225")
    # above 128K: 1 fresh * $0.15 + 999999999 cached * $0.0375
    assert cost("gemini-1.5-flash", prompt_tokens=1_000_000_000, completion_tokens=0,
                cached_prompt_tokens=999_999_999)[0] == Decimal("37.5000001125")


def test_parts_are_clamped_to_the_prompt() -> None:
    assert cost("gpt-4o", prompt_tokens=1000, completion_tokens=0, cached_prompt_tokens=5000)[0] == Decimal("0.00125")
    # 800 cached * $0.30 + only 200 of the 500 writes fit * $3.75
    assert cost("claude-3-5-sonnet-20241022", prompt_tokens=1000, completion_tokens=0, cached_prompt_tokens=800,
                cache_write_tokens=500)[0] == Decimal("0.00099")


def test_user_override_price() -> None:
    custom = default_table().with_overrides(
        {"my-finetune": {"input": 1.00, "output": 2.00, "cached_input": 0.10, "cache_write": 1.25}})
    usage = Usage(prompt_tokens=10_000, completion_tokens=500, cached_prompt_tokens=4000, cache_write_tokens=1000)
    # 5000 * $1 + 4000 * $0.10 + 1000 * $1.25 = $6650 per 1M
    assert compute_cost(custom.lookup("my-finetune"), usage) == CostBreakdown(Decimal("0.00665"), Decimal("0.001"))


_PRICED = [p for p in default_table().models() if p.output > 0]
_tokens = st.integers(min_value=0, max_value=5_000_000)


@given(model=st.sampled_from(_PRICED), prompt=_tokens, completion=_tokens, cached=_tokens, writes=_tokens,
       reasoning=_tokens)
def test_costs_are_non_negative_and_reasoning_never_matters(model: ModelPrice, prompt: int, completion: int,
                                                            cached: int, writes: int, reasoning: int) -> None:
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion, cached_prompt_tokens=cached,
                  cache_write_tokens=writes)
    result = compute_cost(model, usage)
    assert result.prompt >= 0 and result.completion >= 0
    assert result.total == result.prompt + result.completion
    with_reasoning = Usage(prompt_tokens=prompt, completion_tokens=completion, cached_prompt_tokens=cached,
                           cache_write_tokens=writes, reasoning_tokens=reasoning)
    assert compute_cost(model, with_reasoning) == result


@given(model=st.sampled_from(_PRICED), prompt=_tokens, cached=_tokens)
def test_cache_hits_never_cost_more_than_fresh_input(model: ModelPrice, prompt: int, cached: int) -> None:
    cached = min(cached, prompt)
    fresh = compute_cost(model, Usage(prompt_tokens=prompt, completion_tokens=0)).prompt
    assert compute_cost(model, Usage(prompt_tokens=prompt, completion_tokens=0, cached_prompt_tokens=cached)
                        ).prompt <= fresh


@given(prompt=st.integers(0, 100_000), completion=st.integers(0, 100_000), cached=st.integers(0, 100_000),
       factor=st.integers(1, 50))
def test_cost_is_linear_in_tokens_without_tiers(prompt: int, completion: int, cached: int, factor: int) -> None:
    model = price("claude-3-5-sonnet-20241022")
    cached = min(cached, prompt)
    one = compute_cost(model, Usage(prompt_tokens=prompt, completion_tokens=completion, cached_prompt_tokens=cached))
    many = compute_cost(model, Usage(prompt_tokens=prompt * factor, completion_tokens=completion * factor,
                                     cached_prompt_tokens=cached * factor))
    assert (many.prompt, many.completion) == (one.prompt * factor, one.completion * factor)


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-haiku-20240307", "gemini-2.0-flash"])
def test_one_million_tokens_cost_the_listed_rate(model: str) -> None:
    rates = price(model)
    assert cost(model, prompt_tokens=1_000_000, completion_tokens=1_000_000) == (rates.input, rates.output)
    assert cost(model, prompt_tokens=1_000_000, completion_tokens=0, cached_prompt_tokens=1_000_000)[0] == (
        rates.cached_input)
