"""Model price records: what one model costs per 1M tokens, with its long-context tiers and its source."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

UNIT = "usd_per_1m_tokens"
"""The only unit the files may declare."""

PRICE_FIELDS = ("input", "output", "cached_input", "cache_write")
"""Rate fields of a model, a tier and a user override."""


class PricingDataError(ValueError):
    """A price file breaks the schema; the message names the file, the model, the field and what to fix."""


@dataclass(frozen=True)
class PriceTier:
    """Rates that replace the base rates for a whole call once its prompt exceeds ``above_prompt_tokens``."""

    above_prompt_tokens: int
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None


@dataclass(frozen=True)
class ModelPrice:
    """One model's rates in USD per 1M tokens, with where and when they were checked."""

    model: str
    provider: str
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    tiers: tuple[PriceTier, ...] = ()
    source: str = ""
    as_of: str = ""
    aliases: tuple[str, ...] = ()
    notes: str = ""

    def tier_for(self, prompt_tokens: int) -> PriceTier | None:
        """The highest tier whose threshold the prompt exceeds (Google/Anthropic bill the whole call at it)."""
        chosen = None
        for tier in self.tiers:
            if prompt_tokens > tier.above_prompt_tokens:
                chosen = tier
        return chosen


def norm(name: str) -> str:
    """A model, alias or provider name as the index keys it."""
    return name.strip().casefold()
