"""calculate_trace_filter_correlation: equal to MLflow's own on filters both accept, exact counts on filters only
mltrack accepts, and MLflow's NPMI definitions (NaN, -1, Jeffreys smoothing) checked by hand."""

from __future__ import annotations

import math

import pytest

import mltrack
from _insights_traces import ONLY_MLTRACK_COUNTS, build

# filters MLflow's own search accepts and means the same way (one span clause at most, no span.attributes)
BOTH_ACCEPT = [
    ("span.type = 'TOOL'", "trace.status = 'ERROR'", None),
    ("tags.env = 'prod'", "trace.status = 'ERROR'", None),
    ("tags.env = 'prod'", "trace.execution_time_ms > 5000", None),
    ("span.status = 'ERROR'", "trace.status = 'ERROR'", None),
    ("feedback.rating < 3", "trace.status = 'ERROR'", None),
    ("feedback.rating >= 4", "span.name = 'search'", None),
    ("trace.name LIKE 'chat%'", "tags.env = 'dev'", None),  # never together: -1
    ("span.type = 'RETRIEVER'", "trace.status = 'ERROR'", None),
    ("tags.env = 'qa'", "trace.status = 'ERROR'", None),  # matches nothing: NaN
    ("span.type = 'LLM'", "trace.status = 'ERROR'", "trace.execution_time_ms > 60"),
    ("span.name = 'search'", "feedback.rating < 3", "tags.env = 'dev'"),
    ("trace.status = 'ERROR'", "trace.status = 'ERROR'", None),  # always together: +1
]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def test_equal_to_mlflows_own_where_both_accept(store):
    from mlflow.tracing.client import TracingClient

    build(store.uri)
    theirs_client = TracingClient(tracking_uri=store.uri)
    seen_values = set()
    for first, second, base in BOTH_ACCEPT:
        ours = mltrack.calculate_trace_filter_correlation(first, second, base_filter=base)
        theirs = theirs_client.calculate_trace_filter_correlation(["0"], first, second, base_filter=base)
        assert (ours.filter_string1_count, ours.filter_string2_count, ours.joint_count, ours.total_count) == \
            (theirs.filter1_count, theirs.filter2_count, theirs.joint_count, theirs.total_count), (first, second)
        assert ours.filter1_count == theirs.filter1_count and ours.filter2_count == theirs.filter2_count
        assert _same(ours.npmi, theirs.npmi) and _same(ours.npmi_smoothed, theirs.npmi_smoothed), (first, second)
        seen_values.add("nan" if math.isnan(ours.npmi) else round(ours.npmi, 6))
    assert {"nan", -1.0, 1.0} <= seen_values  # the special cases were all exercised


def test_exact_counts_on_filters_only_mltrack_accepts(store):
    build(store.uri)
    for (first, second, base), counts in ONLY_MLTRACK_COUNTS.items():
        r = mltrack.calculate_trace_filter_correlation(first, second, base_filter=base)
        assert (r.filter_string1_count, r.filter_string2_count, r.joint_count, r.total_count) == counts, first
    # "do retries go with errors": every retried trace failed and every failure was retried
    r = mltrack.calculate_trace_filter_correlation("tags.retries > 0", "trace.status = 'ERROR'")
    assert r.npmi == 1.0
    assert r.npmi_smoothed == pytest.approx(_npmi(2.5, 0.5, 0.5, 4.5))


def _npmi(n11: float, n10: float, n01: float, n00: float) -> float:
    n = n11 + n10 + n01 + n00
    p11, p1, p2 = n11 / n, (n11 + n10) / n, (n11 + n01) / n
    return math.log(p11 / (p1 * p2)) / -math.log(p11)


def test_definitions_by_hand():
    from mltrack.insights._correlation import correlate, from_counts

    r = from_counts(count1=3, count2=4, joint=2, total=10)
    assert r.npmi == pytest.approx(_npmi(2, 1, 2, 5))
    assert r.npmi_smoothed == pytest.approx(_npmi(2.5, 1.5, 2.5, 5.5))
    assert math.isnan(from_counts(0, 4, 0, 10).npmi) and math.isnan(from_counts(0, 4, 0, 10).npmi_smoothed)
    assert math.isnan(from_counts(0, 0, 0, 0).npmi)
    never = from_counts(3, 4, 0, 10)
    assert never.npmi == -1.0 and never.npmi_smoothed == pytest.approx(_npmi(0.5, 3.5, 4.5, 3.5))
    same = correlate([True, False, True], [True, False, True])
    assert (same.filter_string1_count, same.joint_count, same.total_count) == (2, 2, 3)
    assert same.npmi == pytest.approx(1.0)  # log arithmetic: exactly 1.0 only when all traces match both


def test_bad_filters_raise_filter_error(store):
    with pytest.raises(mltrack.FilterError, match="position 0"):
        mltrack.calculate_trace_filter_correlation("oops", "trace.status = 'ERROR'")
    with pytest.raises(mltrack.FilterError, match="position 20"):
        mltrack.calculate_trace_filter_correlation("trace.status = 'OK'", "trace.status = 'OK'",
                                                   base_filter="tags.env = 'prod' OR")
