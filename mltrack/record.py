"""The normalized records every way in produces: token usage, exact cost, and the call itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping


@dataclass(slots=True)  # hot path: not frozen (5x cheaper to build); never mutated after creation
class Usage:
    """Token counts of one call, normalized across providers.

    ``prompt_tokens`` includes cached reads and cache writes (OpenAI's convention); ``completion_tokens``
    includes reasoning tokens. ``None`` means "not reported"; the engine fills it by local counting.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those written with a 1-hour TTL (Anthropic)

    @property
    def complete(self) -> bool:
        return self.prompt_tokens is not None and self.completion_tokens is not None


@dataclass(slots=True)  # hot path: not frozen (5x cheaper to build); never mutated after creation
class CostBreakdown:
    """Exact USD cost of one call (Decimal); floats are made from it only at the MLflow boundary."""

    prompt: Decimal
    completion: Decimal

    @property
    def total(self) -> Decimal:
        return self.prompt + self.completion


@dataclass(frozen=True)
class LLMCall:
    """The normalized record of one LLM call, as logged to MLflow and returned to the caller.

    Cost fields are USD floats (``None`` when the model has no price); ``cost`` keeps the exact Decimals.
    """

    model: str | None
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    prompt_cost: float | None = None
    completion_cost: float | None = None
    total_cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    tokens_estimated: bool = False
    error: str | None = None
    # Beyond the contract's fields: exact money, position in the run, and what was sent/received.
    cost: CostBreakdown | None = field(default=None, repr=False)
    inter_token_latency_ms: float | None = None
    tokens_per_second: float | None = None
    step: int = 0
    timestamp: float = 0.0
    run_id: str | None = field(default=None, repr=False)
    params: Mapping[str, Any] = field(default_factory=dict, repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)


_CALL_FIELDS = frozenset(LLMCall.__dataclass_fields__)


def new_call(values: dict[str, Any]) -> LLMCall:
    """An :class:`LLMCall` from a value for every field, built without the frozen ``__init__``'s per-field
    ``object.__setattr__`` (4 µs of the hot path -> 0.4 µs). Same object, still frozen afterwards."""
    if values.keys() != _CALL_FIELDS:
        raise TypeError(f"LLMCall fields missing or unknown: {sorted(values.keys() ^ _CALL_FIELDS)}")
    call = object.__new__(LLMCall)
    call.__dict__.update(values)
    return call
