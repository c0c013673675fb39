"""Trace insights: mltrack's filter language over MLflow traces (search, NPMI correlation, ranked insights)."""

from __future__ import annotations

from mltrack.insights._api import calculate_trace_filter_correlation, search_traces
from mltrack.insights._correlation import TraceCorrelation
from mltrack.insights._errors import FilterError

__all__ = ["FilterError", "TraceCorrelation", "calculate_trace_filter_correlation", "search_traces"]
