"""Gather the calls logged in an experiment over a time window and aggregate them per model/provider/tag."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

_WINDOW = re.compile(r"^(\d+)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_window(text: str | None) -> float | None:
    """``"24h"``, ``"7d"``, ``"30m"`` → seconds; None for all time."""
    if not text:
        return None
    match = _WINDOW.match(text.strip())
    if not match:
        raise ValueError(f"--since expects a number and a unit s/m/h/d/w (e.g. 24h, 7d), got {text!r}")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@dataclass(frozen=True)
class CallRow:
    """One logged call as read back from a run's ``llm/`` artifacts."""

    run_id: str
    model: str
    provider: str
    tags: dict[str, str]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Decimal | None
    latency_ms: float | None
    error: str | None
    timestamp: str


@dataclass(frozen=True)
class Group:
    key: str
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Decimal
    unpriced_calls: int
    latency_p50: float | None
    latency_p95: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (the same rule as numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def collect(client: Any, experiment_ids: list[str], since_s: float | None) -> list[CallRow]:
    """Every call in the experiments' runs started within the window, read from the runs' calls artifacts."""
    filter_string = ""
    if since_s is not None:
        filter_string = f"attributes.start_time >= {int((time.time() - since_s) * 1000)}"
    rows: list[CallRow] = []
    page_token = None
    while True:
        runs = client.search_runs(experiment_ids, filter_string=filter_string, max_results=500, page_token=page_token)
        for run in runs:
            rows.extend(_run_calls(client, run))
        page_token = runs.token
        if not page_token:
            return rows


def _run_calls(client: Any, run: Any) -> Iterable[CallRow]:
    run_id = run.info.run_id
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    try:
        items = client.list_artifacts(run_id, "llm")
    except Exception:  # noqa: BLE001 - a run without artifacts
        return
    for item in items:
        if not item.path.endswith(".jsonl"):
            continue
        with open(client.download_artifacts(run_id, item.path), encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                data = json.loads(line)
                yield CallRow(
                    run_id=run_id, model=data.get("model") or "(unknown)", provider=data.get("provider") or "(unknown)",
                    tags=tags, prompt_tokens=int(data.get("prompt_tokens") or 0),
                    completion_tokens=int(data.get("completion_tokens") or 0),
                    total_tokens=int(data.get("total_tokens") or 0),
                    cost=Decimal(data["total_cost"]) if data.get("total_cost") is not None else None,
                    latency_ms=data.get("latency_ms"), error=data.get("error"), timestamp=data.get("timestamp", ""),
                )


def group_by(rows: list[CallRow], by: str) -> list[Group]:
    """Aggregate per ``model``, ``provider`` or ``tag:NAME``; sorted by cost, highest first."""
    if by.startswith("tag:"):
        name = by[4:]
        key_of = lambda row: row.tags.get(name, "(none)")  # noqa: E731
    elif by in ("model", "provider"):
        key_of = lambda row: getattr(row, by)  # noqa: E731
    else:
        raise ValueError(f"--by expects model, provider or tag:NAME, got {by!r}")
    buckets: dict[str, list[CallRow]] = defaultdict(list)
    for row in rows:
        buckets[key_of(row)].append(row)
    groups = []
    for key, items in buckets.items():
        latencies = [r.latency_ms for r in items if r.latency_ms is not None]
        groups.append(Group(
            key=key, calls=len(items), errors=sum(1 for r in items if r.error),
            prompt_tokens=sum(r.prompt_tokens for r in items), completion_tokens=sum(r.completion_tokens for r in items),
            total_tokens=sum(r.total_tokens for r in items),
            cost=sum((r.cost for r in items if r.cost is not None), Decimal(0)),
            unpriced_calls=sum(1 for r in items if r.cost is None),
            latency_p50=percentile(latencies, 0.5), latency_p95=percentile(latencies, 0.95),
        ))
    return sorted(groups, key=lambda g: (-g.cost, g.key))
