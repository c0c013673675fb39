"""Trace insights: mltrack's filter language over MLflow traces (search, NPMI correlation, ranked insights).

The functions here load the machinery on first call, so that ``import mltrack`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from mltrack.insights._errors import FilterError

if TYPE_CHECKING:
    from mltrack.insights._correlation import TraceCorrelation


def search_traces(filter_string: str | None = None, experiment: str | None = None,
                  experiment_ids: Sequence[str] | None = None, order_by: Sequence[str] | None = None,
                  max_results: int = 1000) -> list[Any]:
    """MLflow ``Trace`` objects of the experiment that match ``filter_string`` (mltrack's filter language)."""
    from mltrack.insights import _api

    return _api.search_traces(filter_string, experiment, experiment_ids, order_by, max_results)


def calculate_trace_filter_correlation(filter_string1: str, filter_string2: str, experiment: str | None = None,
                                       experiment_ids: Sequence[str] | None = None,
                                       base_filter: str | None = None) -> TraceCorrelation:
    """NPMI, smoothed NPMI and the four counts of two filters over the experiment's traces, as MLflow defines them."""
    from mltrack.insights import _api

    return _api.calculate_trace_filter_correlation(filter_string1, filter_string2, experiment, experiment_ids,
                                                   base_filter)


__all__ = ["FilterError", "calculate_trace_filter_correlation", "search_traces"]
