"""NPMI between two filters over a set of traces, exactly as MLflow defines it.

MLflow's own definitions (``mlflow/store/analytics/trace_correlation.py``) are used as they are: NaN when a
filter matches no trace (or there are no traces), -1 when both match but never together, and the smoothed value
with a Jeffreys prior of 0.5 added to each cell of the 2x2 table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TraceCorrelation:
    """How two filters go together over ``total_count`` traces (the names of MLflow's result, plus the counts)."""

    npmi: float
    npmi_smoothed: float
    filter_string1_count: int
    filter_string2_count: int
    joint_count: int
    total_count: int

    @property
    def filter1_count(self) -> int:
        """MLflow's name for ``filter_string1_count``."""
        return self.filter_string1_count

    @property
    def filter2_count(self) -> int:
        """MLflow's name for ``filter_string2_count``."""
        return self.filter_string2_count


def from_counts(count1: int, count2: int, joint: int, total: int) -> TraceCorrelation:
    """NPMI and smoothed NPMI of the four counts, by MLflow's own function."""
    from mlflow.store.analytics.trace_correlation import calculate_npmi_from_counts

    result = calculate_npmi_from_counts(joint, count1, count2, total)
    return TraceCorrelation(npmi=result.npmi, npmi_smoothed=result.npmi_smoothed, filter_string1_count=count1,
                            filter_string2_count=count2, joint_count=joint, total_count=total)


def correlate(matches1: list[bool], matches2: list[bool]) -> TraceCorrelation:
    """The correlation of two per-trace match lists (same traces, same order)."""
    count1 = sum(matches1)
    count2 = sum(matches2)
    joint = sum(1 for a, b in zip(matches1, matches2) if a and b)
    return from_counts(count1, count2, joint, len(matches1))
