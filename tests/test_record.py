"""The fast LLMCall builder of the hot path gives exactly what the dataclass constructor gives."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from mltrack.record import CostBreakdown, LLMCall, new_call


def _values() -> dict:
    return {f.name: None for f in dataclasses.fields(LLMCall)} | {
        "model": "gpt-4o-mini", "provider": "openai", "prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
        "cached_prompt_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0, "tokens_estimated": False,
        "cost": CostBreakdown(Decimal("0.0000018"), Decimal("0.000003")), "step": 3, "timestamp": 1.5,
        "params": {"temperature": 0.2}, "metadata": {"stream": False}}


def test_new_call_equals_the_constructor_and_stays_frozen():
    values = _values()
    call = new_call(dict(values))
    assert call == LLMCall(**values) and hash(call.cost.total) == hash(Decimal("0.0000048"))
    assert dataclasses.asdict(call)["step"] == 3 and call.params == {"temperature": 0.2}
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.step = 4  # type: ignore[misc]


def test_new_call_refuses_missing_or_unknown_fields():
    values = _values()
    del values["ttft_ms"]
    with pytest.raises(TypeError, match="ttft_ms"):
        new_call(values)
    with pytest.raises(TypeError, match="colour"):
        new_call(_values() | {"colour": "red"})
