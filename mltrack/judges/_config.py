"""The ``judges:`` config block: its kind (validation for the config table) and the frozen view judges use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

BUILTIN_NAMES = ("answer_relevancy", "faithfulness", "retrieval_relevancy", "tone", "coherence")
PROVIDERS = ("openai", "anthropic")
FIELDS = ("enabled", "model", "provider", "base_url", "metrics", "sample_rate", "max_cost_usd", "max_concurrency",
          "custom")
DEFAULTS: dict[str, Any] = {"enabled": False, "model": "gpt-4o-mini", "provider": "openai", "base_url": None,
                            "metrics": list(BUILTIN_NAMES), "sample_rate": 1.0, "max_cost_usd": None,
                            "max_concurrency": 4, "custom": {}}


_NAME = re.compile(r"[A-Za-z0-9_.\-]+")  # a judge's name is part of a metric name (judge.<name>)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


@dataclass(frozen=True)
class JudgesKind:
    """The ``judges`` mapping: each field checked, the rest taken from the defaults."""

    merge = True

    @property
    def label(self) -> str:
        return "mapping: enabled, model, provider, base_url, metrics, sample_rate, max_cost_usd, max_concurrency, custom"

    @property
    def expected(self) -> str:
        return "a mapping with keys " + ", ".join(FIELDS)

    def check(self, value: Any, dotted: str, sink: Any) -> Any:
        from mltrack.config.kinds import BAD

        if value is None:
            return {}
        if not isinstance(value, dict):
            return sink.bad(dotted, self.expected, value)
        out: dict[str, Any] = {}
        ok = True

        def bad(field: str, expected: str) -> None:
            nonlocal ok
            ok = False
            sink.bad(f"{dotted}.{field}", expected, value[field])

        for field, item in value.items():
            if field not in FIELDS:
                sink.unknown(dotted, str(field), FIELDS)
                continue
            if field == "enabled" and not isinstance(item, bool):
                bad(field, "true or false")
            elif field == "model" and not (isinstance(item, str) and item.strip()):
                bad(field, "a model name (string)")
            elif field == "provider" and item not in PROVIDERS:
                bad(field, "openai or anthropic")
            elif field == "base_url" and item is not None and not (isinstance(item, str) and item.strip()):
                bad(field, "a URL (string) or null")
            elif field == "sample_rate" and not (_number(item) and 0 <= item <= 1):
                bad(field, "a number from 0 to 1")
            elif field == "max_cost_usd" and item is not None and not (_number(item) and item >= 0):
                bad(field, "a number >= 0 (USD) or null")
            elif field == "max_concurrency" and not (isinstance(item, int) and not isinstance(item, bool)
                                                     and item >= 1):
                bad(field, "an integer >= 1")
            elif field == "custom" and not (isinstance(item, dict) and all(
                    isinstance(k, str) and _NAME.fullmatch(k) and isinstance(v, str) and v.strip()
                    for k, v in item.items())):
                bad(field, "a mapping of judge name (letters, digits, _ . -) to prompt template (string)")
            elif field == "metrics" and not (isinstance(item, (list, tuple)) and all(
                    (isinstance(m, str) and m) or callable(m) for m in item)):
                bad(field, "a list of judge names (or, through configure(), callables)")
            else:
                out[field] = list(item) if field == "metrics" else dict(item) if field == "custom" else item
        if ok and "metrics" in out:
            custom = set(out.get("custom", value.get("custom") or {}) or {})
            unknown = [m for m in out["metrics"] if isinstance(m, str) and m not in BUILTIN_NAMES and m not in custom]
            if unknown:
                ok = False
                sink.bad(f"{dotted}.metrics", "built-in judge names (" + ", ".join(BUILTIN_NAMES)
                         + ") or names defined under judges.custom", unknown)
        return out if ok else BAD

    def from_env(self, text: str) -> Any:
        raise ValueError("no environment variable")


@dataclass(frozen=True)
class JudgeConfig:
    """The effective judges block."""

    enabled: bool
    model: str
    provider: str
    base_url: str | None
    metrics: tuple[str | Callable[..., Any], ...]
    sample_rate: float
    max_cost_usd: Decimal | None
    max_concurrency: int
    custom: Mapping[str, str]


def judge_config(settings: Any) -> JudgeConfig:
    """The judges block of ``settings`` as a :class:`JudgeConfig` (defaults filled)."""
    block = {**DEFAULTS, **dict(getattr(settings, "judges", None) or {})}
    cap = block["max_cost_usd"]
    return JudgeConfig(enabled=bool(block["enabled"]), model=block["model"], provider=block["provider"],
                       base_url=block["base_url"], metrics=tuple(block["metrics"]),
                       sample_rate=float(block["sample_rate"]),
                       max_cost_usd=None if cap is None else Decimal(str(cap)),
                       max_concurrency=int(block["max_concurrency"]), custom=dict(block["custom"] or {}))
