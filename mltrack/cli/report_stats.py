"""Aggregate report calls per model / provider / tag, and per time bucket for the charts."""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Sequence

from mltrack.cli.report_data import CallRow

TOTAL = "(all)"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile, q in 0..1: numpy's default rule, with its rounding; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    a, b, t = ordered[low], ordered[high], pos - low
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


@dataclass(frozen=True)
class Group:
    """The figures of one model / provider / tag value (or of all calls, key ``(all)``)."""

    key: str
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_prompt_tokens: int
    cost: Decimal  # priced calls only
    unpriced_calls: int
    latency_p50: float | None
    latency_p95: float | None
    ttft_p50: float | None
    ttft_p95: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    @property
    def cached_share(self) -> float:
        """Share of prompt tokens read from the provider's cache (prompt tokens include cached ones)."""
        return self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def priced(self) -> bool:
        """True when at least one call had a price (else the cost is unknown, not zero)."""
        return self.unpriced_calls < self.calls


def key_function(by: str) -> Callable[[CallRow], str]:
    """What ``--by`` groups on: ``model``, ``provider`` or ``tag:NAME`` (a run tag; ``(none)`` when unset)."""
    if by.startswith("tag:") and len(by) > 4:
        name = by[4:]
        return lambda row: row.tags.get(name, "(none)")
    if by in ("model", "provider"):
        return lambda row: getattr(row, by)
    raise ValueError(f"--by expects model, provider or tag:NAME (e.g. tag:prompt_version), got {by!r}")


def summarize(key: str, items: Sequence[CallRow]) -> Group:
    """One group's figures from its calls."""
    latencies = [r.latency_ms for r in items if r.latency_ms is not None]
    ttfts = [r.ttft_ms for r in items if r.ttft_ms is not None]
    return Group(
        key=key, calls=len(items), errors=sum(1 for r in items if r.error),
        prompt_tokens=sum(r.prompt_tokens for r in items), completion_tokens=sum(r.completion_tokens for r in items),
        total_tokens=sum(r.total_tokens for r in items),
        cached_prompt_tokens=sum(r.cached_prompt_tokens for r in items),
        cost=sum((r.cost for r in items if r.cost is not None), Decimal(0)),
        unpriced_calls=sum(1 for r in items if r.cost is None),
        latency_p50=percentile(latencies, 0.5), latency_p95=percentile(latencies, 0.95),
        ttft_p50=percentile(ttfts, 0.5), ttft_p95=percentile(ttfts, 0.95),
    )


def split(rows: Sequence[CallRow], by: str) -> dict[str, list[CallRow]]:
    """The calls of each ``--by`` value, in first-seen order."""
    key_of = key_function(by)
    buckets: dict[str, list[CallRow]] = defaultdict(list)
    for row in rows:
        buckets[key_of(row)].append(row)
    return dict(buckets)


def group_by(rows: Sequence[CallRow], by: str) -> list[Group]:
    """Aggregate per ``model``, ``provider`` or ``tag:NAME``; sorted by cost, highest first, then by name."""
    groups = [summarize(key, items) for key, items in split(rows, by).items()]
    return sorted(groups, key=lambda g: (-g.cost, -g.calls, g.key))


def bucket_size(rows: Sequence[CallRow]) -> str:
    """``hour`` when the calls span at most three days, else ``day``."""
    if not rows:
        return "day"
    times = [r.time for r in rows]
    return "hour" if max(times) - min(times) <= _dt.timedelta(days=3) else "day"


def bucket_of(when: _dt.datetime, size: str) -> _dt.datetime:
    """The UTC hour or day a call falls in."""
    when = when.astimezone(_dt.timezone.utc)
    return when.replace(minute=0, second=0, microsecond=0) if size == "hour" else \
        when.replace(hour=0, minute=0, second=0, microsecond=0)


def buckets(rows: Sequence[CallRow], size: str) -> list[_dt.datetime]:
    """Every bucket from the first call's to the last call's, empty ones included (a time axis without gaps)."""
    if not rows:
        return []
    step = _dt.timedelta(hours=1) if size == "hour" else _dt.timedelta(days=1)
    first, last = bucket_of(min(r.time for r in rows), size), bucket_of(max(r.time for r in rows), size)
    out = [first]
    while out[-1] < last:
        out.append(out[-1] + step)
    return out
