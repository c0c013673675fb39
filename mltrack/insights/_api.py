"""``search_traces`` and ``calculate_trace_filter_correlation``: the filter language over an experiment's traces."""

from __future__ import annotations

from typing import Any, Sequence

from mltrack.insights._ast import Node
from mltrack.insights._correlation import TraceCorrelation, correlate
from mltrack.insights._evaluate import compile_filter, needs
from mltrack.insights import _load, _remote, _rest
from mltrack.insights._parser import parse
from mltrack.insights._pushdown import native_filter
from mltrack.insights._views import TraceView, view_of_trace

_ORDER_KEYS = {"timestamp": "timestamp_ms", "timestamp_ms": "timestamp_ms", "execution_time": "execution_time_ms",
               "execution_time_ms": "execution_time_ms", "name": "name", "status": "status",
               "request_id": "trace_id", "trace_id": "trace_id"}


def client_and_experiments(experiment: str | None, experiment_ids: Sequence[str] | None) -> tuple[Any, list[str]]:
    """An MlflowClient on the configured store and the experiment ids to read (default: the configured one)."""
    from mlflow import MlflowClient

    from mltrack.config import get_settings

    settings = get_settings()
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    if experiment_ids:
        if isinstance(experiment_ids, str):
            raise TypeError("experiment_ids is a list of ids, e.g. ['0']")
        return client, [str(e) for e in experiment_ids]
    name = experiment or settings.experiment_name
    if name is None:
        from mlflow.tracking.fluent import _get_experiment_id

        return client, [_get_experiment_id() or "0"]
    found = client.get_experiment_by_name(name)
    if found is None:
        raise ValueError(f"no experiment named {name!r} at {client.tracking_uri}")
    return client, [found.experiment_id]


def _parse_optional(filter_string: str | None) -> Node | None:
    if filter_string is None or not filter_string.strip():
        return None
    return parse(filter_string)


def _sort_key(order_by: Sequence[str] | None):
    """A sort of views by MLflow-style ``order_by`` clauses (default: newest first)."""
    clauses = list(order_by or ["timestamp_ms DESC"])
    keys = []
    for clause in clauses:
        words = clause.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise ValueError(f"order_by clause {clause!r}: expected 'KEY [ASC|DESC]'")
        key = words[0].split(".", 1)[1] if words[0].startswith(("trace.", "attributes.")) else words[0]
        if key not in _ORDER_KEYS:
            raise ValueError(f"order_by clause {clause!r}: can order by {', '.join(sorted(_ORDER_KEYS))}")
        keys.append((_ORDER_KEYS[key], len(words) == 2 and words[1].upper() == "DESC"))
    keys.append(("trace_id", False))
    return keys


def _sorted(views: list[TraceView], order_by: Sequence[str] | None) -> list[TraceView]:
    ordered = list(views)
    for attr, descending in reversed(_sort_key(order_by)):  # stable sorts, last key first
        present = [v for v in ordered if getattr(v, attr) is not None]
        missing = [v for v in ordered if getattr(v, attr) is None]
        present.sort(key=lambda v: getattr(v, attr), reverse=descending)
        ordered = present + missing
    return ordered


def search_traces(filter_string: str | None = None, experiment: str | None = None,
                  experiment_ids: Sequence[str] | None = None, order_by: Sequence[str] | None = None,
                  max_results: int = 1000) -> list[Any]:
    """MLflow ``Trace`` objects of the experiment that match ``filter_string`` (mltrack's filter language)."""
    if max_results is None or int(max_results) < 1:
        raise ValueError(f"max_results must be a positive number, got {max_results!r}")
    node = _parse_optional(filter_string)
    _sort_key(order_by)  # a bad order_by fails before any reading
    client, exp_ids = client_and_experiments(experiment, experiment_ids)
    if _rest.rest_store(client) is not None:
        try:
            views, answers = _remote.evaluate(client, exp_ids, [node] if node is not None else [], None)
        except _rest.NotServed:
            pass  # an MLflow server older than its v3 trace API: read through MLflow's client below
        else:
            if node is not None:
                views = [v for v, keep in zip(views, answers[0]) if keep]
            chosen = _sorted(views, order_by)[:max_results]
            traces = _remote.full_traces(client, chosen)
            return [traces[v.trace_id] for v in chosen if v.trace_id in traces]
    if _load.sql_store(client) is not None:
        parts = needs(node) if node is not None else set()
        views = _load.load_views(client, exp_ids, native_filter(node, spans=False), parts)
        if node is not None:
            matches = compile_filter(node)
            views = [v for v in views if matches(v)]
        chosen = [v.trace_id for v in _sorted(views, order_by)[:max_results]]
        traces = _load.fetch_traces(client, exp_ids, chosen)
        return [traces[i] for i in chosen if i in traces]
    pairs = [(view_of_trace(t), t) for t in _load.iter_traces(client, exp_ids, native_filter(node))]
    if node is not None:
        matches = compile_filter(node)
        pairs = [p for p in pairs if matches(p[0])]
    by_id = {view.trace_id: trace for view, trace in pairs}
    return [by_id[v.trace_id] for v in _sorted([p[0] for p in pairs], order_by)[:max_results]]


def evaluate_many(nodes: list[Node], base: Node | None, experiment: str | None,
                  experiment_ids: Sequence[str] | None) -> tuple[list[TraceView], list[list[bool]]]:
    """The traces (those matching ``base``) and, per node, whether each matches: one read, one pass per node."""
    client, exp_ids = client_and_experiments(experiment, experiment_ids)
    if _rest.rest_store(client) is not None:
        try:
            return _remote.evaluate(client, exp_ids, nodes, base)
        except _rest.NotServed:
            pass  # an MLflow server older than its v3 trace API: read through MLflow's client below
    parts: set[str] = set()
    for node in nodes + ([base] if base is not None else []):
        parts |= needs(node)
    views = _load.load_views(client, exp_ids, native_filter(base, spans=_load.sql_store(client) is None), parts)
    if base is not None:
        keep = compile_filter(base)
        views = [v for v in views if keep(v)]
    return views, [[f(v) for v in views] for f in map(compile_filter, nodes)]


def calculate_trace_filter_correlation(filter_string1: str, filter_string2: str, experiment: str | None = None,
                                       experiment_ids: Sequence[str] | None = None,
                                       base_filter: str | None = None) -> TraceCorrelation:
    """NPMI (and smoothed NPMI, and the counts) of two filters over the experiment's traces, as MLflow defines it.

    With ``base_filter``, only the traces matching it are counted (``total_count`` is their number)."""
    nodes = [parse(filter_string1), parse(filter_string2)]
    _, (first, second) = evaluate_many(nodes, _parse_optional(base_filter), experiment, experiment_ids)
    return correlate(first, second)


