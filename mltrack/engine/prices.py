"""Model price records: what one model costs per 1M tokens, with its long-context tiers and its source."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

UNIT = "usd_per_1m_tokens"
"""The only unit the files may declare."""

PRICE_FIELDS = ("input", "output", "cached_input", "cache_write")
"""Rate fields of a model, a tier and a user override."""

RATE_FIELDS = (*PRICE_FIELDS, "cache_write_1h")
"""Every rate a price file may give: ``cache_write_1h`` is Anthropic's 1-hour cache write."""


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
    cache_write_1h: Decimal | None = None


@dataclass(frozen=True)
class Rates:
    """Rates that replace some of a model's rates: one service tier, or the prices before a date."""

    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None


@dataclass(frozen=True)
class PricePeriod:
    """The model's rates for calls made before ``until`` (a UTC date, ``YYYY-MM-DD``)."""

    until: str
    rates: Rates
    tiers: tuple[PriceTier, ...] = ()


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
    cache_write_1h: Decimal | None = None
    service_tiers: tuple[tuple[str, Rates], ...] = ()
    history: tuple[PricePeriod, ...] = ()
    origin: str = ""  # "" for a hand-checked entry; e.g. "genai-prices 0.2.3" for a generated one

    def service_tier(self, name: str | None) -> Rates | None:
        """The rates of the OpenAI-style ``service_tier`` the response reported, when the data has them."""
        if name:
            for tier, rates in self.service_tiers:
                if tier == name:
                    return rates
        return None

    def period_for(self, day: str | None) -> PricePeriod | None:
        """The price period a call made on ``day`` (``YYYY-MM-DD``) falls in, or None for the current prices."""
        if day:
            for period in self.history:
                if day < period.until:
                    return period
        return None

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
