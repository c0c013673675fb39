"""Read the trace views of experiments, narrowed by an MLflow filter string, reading only the parts needed.

On MLflow's SQL store the rows are read in a handful of bulk queries (no ``Trace`` objects, span JSON decoded
only when a filter reads span attributes); from an ``mlflow server`` as JSON over its REST API (``_rest``); on any
other store through ``MlflowClient.search_traces`` page by page.
"""

from __future__ import annotations

import json
from typing import Any

from mltrack.insights._views import COST_KEY, TOKEN_USAGE_KEY, AssessmentView, SpanView, TraceView, view_of_trace

PAGE = 500


def sql_store(client: Any) -> Any | None:
    """The client's store when it is MLflow's SQLAlchemy store (its tables are read directly), else None."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store
    except Exception:  # noqa: BLE001 - any other store is read through the public API
        return None
    return store if isinstance(store, SqlAlchemyStore) else None


def load_views(client: Any, experiment_ids: list[str], native: str | None, parts: set[str]) -> list[TraceView]:
    """Every trace of the experiments that the native filter keeps, as views holding ``parts``."""
    try:
        return _load(client, experiment_ids, native, parts)
    except Exception as exc:
        if native is None or not refused_filter(exc):
            raise
        # a store that refuses the narrowing filter (an older or different MLflow) is read whole instead
        return _load(client, experiment_ids, None, parts)


def refused_filter(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code == "INVALID_PARAMETER_VALUE"


def _load(client: Any, experiment_ids: list[str], native: str | None, parts: set[str]) -> list[TraceView]:
    from mltrack.insights import _remote, _rest

    server = _rest.rest_store(client)
    if server is not None:
        reader = _rest.Reader(server)
        try:
            views = [_rest.view_of_info(i) for i in reader.infos(experiment_ids, native)]
            if "spans" in parts:
                _remote.fill_spans(reader, client.tracking_uri, views)
            return views
        except _rest.NotServed:
            pass  # an MLflow server older than its v3 trace API: MLflow's client below knows its older APIs
    store = sql_store(client)
    if store is not None:
        try:
            return _load_sql(store, experiment_ids, native, parts)
        except (AttributeError, ImportError, TypeError) as exc:
            # MLflow's tables or store internals changed shape: say so once, read through the public client instead
            from mltrack import _safety

            _safety.report_internal_error("reading traces from MLflow's tables", exc)
    return [view_of_trace(t) for t in iter_traces(client, experiment_ids, native, include_spans="spans" in parts)]


def iter_traces(client: Any, experiment_ids: list[str], native: str | None, include_spans: bool = True):
    """MLflow ``Trace`` objects of the experiments matching ``native``, through the public client, page by page."""
    token = None
    while True:
        page = client.search_traces(locations=list(experiment_ids), filter_string=native, max_results=PAGE,
                                    page_token=token, include_spans=include_spans)
        yield from page
        token = page.token
        if not token:
            return


def fetch_traces(client: Any, experiment_ids: list[str], trace_ids: list[str]) -> dict[str, Any]:
    """Full ``Trace`` objects (with spans) of the given ids."""
    found: dict[str, Any] = {}
    for start in range(0, len(trace_ids), 100):
        chunk = trace_ids[start:start + 100]
        ids = ", ".join(f"'{i}'" for i in chunk)
        for trace in iter_traces(client, experiment_ids, f"trace.request_id IN ({ids})"):
            found[trace.info.trace_id] = trace
    return found


def _load_sql(store: Any, experiment_ids: list[str], native: str | None, parts: set[str]) -> list[TraceView]:
    from sqlalchemy import select

    from mlflow.store.tracking.dbmodels.models import (
        SqlAssessments,
        SqlSpan,
        SqlTraceInfo,
        SqlTraceMetadata,
        SqlTraceTag,
    )

    exp_ids = [int(e) for e in experiment_ids]
    with store.ManagedSessionMaker() as session:
        exp_ids = store._filter_experiment_ids(session, exp_ids)
        scope = [SqlTraceInfo.experiment_id.in_(exp_ids)]
        if native:
            scope.append(SqlTraceInfo.request_id.in_(store._build_trace_filter_subquery(session, exp_ids, native)))
        views: dict[str, TraceView] = {}
        rows = session.execute(select(SqlTraceInfo.request_id, SqlTraceInfo.status, SqlTraceInfo.timestamp_ms,
                                      SqlTraceInfo.execution_time_ms, SqlTraceInfo.trace_name,
                                      SqlTraceInfo.total_tokens, SqlTraceInfo.total_cost).where(*scope))
        for rid, status, ts, duration, name, tokens, cost in rows:
            # MLflow keeps its trace-level token and cost aggregates in columns, not in the metadata rows
            aggregates = {}
            if tokens is not None:
                aggregates[TOKEN_USAGE_KEY] = json.dumps({"total_tokens": tokens})
            if cost is not None:
                aggregates[COST_KEY] = json.dumps({"total_cost": cost})
            views[rid] = TraceView(trace_id=rid, status=status, timestamp_ms=ts, execution_time_ms=duration,
                                   name=name, tags={}, metadata=aggregates, spans=[], assessments=[])
        if not views:
            return []
        for model, target in ((SqlTraceTag, "tags"), (SqlTraceMetadata, "metadata")):
            if target in parts:
                query = (select(model.request_id, model.key, model.value)
                         .join(SqlTraceInfo, SqlTraceInfo.request_id == model.request_id).where(*scope))
                for rid, key, value in session.execute(query):
                    getattr(views[rid], target)[key] = value
        if "spans" in parts:
            columns = [SqlSpan.trace_id, SqlSpan.name, SqlSpan.type, SqlSpan.status]
            if "span_attributes" in parts:
                columns.append(SqlSpan.content)
            query = select(*columns).join(SqlTraceInfo, SqlTraceInfo.request_id == SqlSpan.trace_id).where(*scope)
            for row in session.execute(query):
                view = views.get(row[0])
                if view is not None:
                    view.spans.append(SpanView(row[1], row[2], row[3], content=row[4] if len(row) > 4 else None))
        if "assessments" in parts:
            query = (select(SqlAssessments.trace_id, SqlAssessments.assessment_type, SqlAssessments.name,
                            SqlAssessments.value)
                     .join(SqlTraceInfo, SqlTraceInfo.request_id == SqlAssessments.trace_id)
                     .where(*scope, SqlAssessments.valid.is_(True),
                            SqlAssessments.assessment_type.in_(("feedback", "expectation"))))
            for rid, kind, name, value in session.execute(query):
                try:
                    decoded = json.loads(value)
                except (TypeError, ValueError):
                    decoded = value
                views[rid].assessments.append(AssessmentView(kind, name, decoded))
    return list(views.values())
