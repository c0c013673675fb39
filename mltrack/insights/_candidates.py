"""``mltrack insights``: candidate conditions found in the traces, ranked by NPMI with a target condition."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from mltrack.insights._ast import Compare, Count, Field, Node, to_text
from mltrack.insights._correlation import correlate
from mltrack.insights._evaluate import compile_filter
from mltrack.insights._views import TraceView

DEFAULT_TARGET = "trace.status = 'ERROR'"
MODEL_ATTR = "mlflow.llm.model"
PROVIDER_ATTR = "mlflow.llm.provider"
MAX_TAG_VALUES = 20  # a tag with more distinct values (ids, prompts) is not a useful condition
MAX_CALL_THRESHOLDS = 4
_LLM = Compare(Field("span", "type"), "=", "LLM")


@dataclass(frozen=True)
class Insight:
    """One candidate condition and how it goes with the target."""

    condition: str
    npmi: float
    npmi_smoothed: float
    count: int  # traces matching the condition
    joint_count: int  # ... that also match the target
    total_count: int


def percentile(values: list[Decimal], q: float) -> Decimal | None:
    """Linear-interpolated percentile (numpy's default rule), exact in Decimal."""
    if not values:
        return None
    ordered = sorted(values)
    pos = Decimal(len(ordered) - 1) * Decimal(str(q))
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _attr_values(views: list[TraceView], key: str) -> list[str]:
    return sorted({s.attributes[key] for v in views for s in v.spans if isinstance(s.attributes.get(key), str)})


def _call_thresholds(views: list[TraceView]) -> list[int]:
    counts = sorted({sum(1 for s in v.spans if s.type == "LLM") for v in views})
    below_max = [c for c in counts[:-1]]
    if len(below_max) > MAX_CALL_THRESHOLDS:
        step = len(below_max) / MAX_CALL_THRESHOLDS
        below_max = sorted({below_max[int(i * step)] for i in range(MAX_CALL_THRESHOLDS)})
    return below_max


def candidates(views: list[TraceView]) -> list[Node]:
    """Conditions worth testing in these traces: models, providers, span types, tag values, many LLM calls,
    slow (above the p90 execution time) and costly (above the p90 cost) traces."""
    found: list[Node] = []
    for key in (MODEL_ATTR, PROVIDER_ATTR):
        found += [Compare(Field("span_attr", key), "=", value) for value in _attr_values(views, key)]
    types = sorted({s.type for v in views for s in v.spans if s.type})
    found += [Compare(Field("span", "type"), "=", t) for t in types]
    tag_values: dict[str, set[str]] = {}
    for view in views:
        for key, value in view.tags.items():
            if not key.startswith("mlflow.") and value is not None:
                tag_values.setdefault(key, set()).add(value)
    for key in sorted(tag_values):
        if len(tag_values[key]) <= MAX_TAG_VALUES:
            found += [Compare(Field("tag", key), "=", value) for value in sorted(tag_values[key])]
    found += [Count((_LLM,), ">", n) for n in _call_thresholds(views)]
    p90_time = percentile([Decimal(v.execution_time_ms) for v in views if v.execution_time_ms is not None], 0.9)
    if p90_time is not None:
        found.append(Compare(Field("trace", "execution_time_ms"), ">", p90_time.normalize()))
    p90_cost = percentile([v.total_cost for v in views if v.total_cost is not None], 0.9)
    if p90_cost is not None:
        found.append(Compare(Field("trace", "total_cost"), ">", p90_cost.normalize()))
    return found


def _rank_key(item: Insight) -> tuple:
    return (math.isnan(item.npmi), -(item.npmi if not math.isnan(item.npmi) else 0.0), -item.joint_count,
            item.condition)


def rank(views: list[TraceView], target: Node, top: int = 10,
         extra: Sequence[Node] = ()) -> tuple[int, list[Insight]]:
    """How many traces match the target, and the ``top`` candidates by NPMI with it (matching at least one trace)."""
    target_text = to_text(target)
    wanted = compile_filter(target)
    target_matches = [wanted(v) for v in views]
    results = []
    for node in [*candidates(views), *extra]:
        text = to_text(node)
        if text == target_text:
            continue
        matches = list(map(compile_filter(node), views))
        if not any(matches):
            continue
        c = correlate(matches, target_matches)
        results.append(Insight(text, c.npmi, c.npmi_smoothed, c.filter_string1_count, c.joint_count, c.total_count))
    results.sort(key=_rank_key)
    return sum(target_matches), results[:top]
