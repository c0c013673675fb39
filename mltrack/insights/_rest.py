"""Read traces from an ``mlflow server`` over its REST API as plain JSON, decoded straight into trace views.

The server's search returns trace infos without spans; spans come from its batchGet endpoint, which costs the
server about a millisecond per trace (it rebuilds every span). So spans are fetched only for the traces whose
answer depends on them (see ``_partial``), in large batches from a few threads at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

from mltrack.insights._views import AssessmentView, SpanView, TraceView

PAGE = 500  # the most the server's search returns per call
BATCH = 100  # traces per batchGet call (bench_insights.py --tune: 10 per call 11.1 s for 10,000 traces, 100 10.1 s)
THREADS = 4  # batchGet calls in flight (--tune: 1 at a time 16.4 s; the server's default is 4 workers)
_SEARCH = "/api/3.0/mlflow/traces/search"
_BATCH_GET = "/api/3.0/mlflow/traces/batchGet"
_STATUS = {"STATUS_CODE_OK": "OK", "STATUS_CODE_ERROR": "ERROR", "STATUS_CODE_UNSET": "UNSET"}


def rest_store(client: Any) -> Any | None:
    """The client's store when it is a plain MLflow REST store (an ``http(s)://`` tracking server), else None."""
    try:
        from mlflow.store.tracking.rest_store import RestStore

        store = client._tracking_client.store
    except Exception:  # noqa: BLE001 - any other store is read through the public client
        return None
    return store if type(store) is RestStore else None  # Databricks' subclass speaks another API


class Stopped(Exception):
    """A read was given up before its last page (its answer would be incomplete)."""


class NotServed(Exception):
    """The server lacks an endpoint this reader needs (an MLflow older than its v3 trace API): read through
    MLflow's own client instead, which knows the older APIs."""


class Reader:
    """Calls to one server with the store's credentials (auth, TLS settings and retries as MLflow's own client)."""

    def __init__(self, store: Any) -> None:
        self._creds: Callable[[], Any] = store.get_host_creds

    def _call(self, endpoint: str, method: str, **kwargs: Any) -> dict:
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        response = http_request(self._creds(), endpoint, method, **kwargs)
        if response.status_code in (404, 405) or '"ENDPOINT_NOT_FOUND"' in response.text[:200]:
            raise NotServed(f"{method} {endpoint}: HTTP {response.status_code}")
        return verify_rest_response(response, endpoint).json()

    def infos(self, experiment_ids: list[str], filter_string: str | None,
              stop: threading.Event | None = None) -> Iterator[dict]:
        """The JSON trace infos of the experiments' traces matching ``filter_string``, page by page (``Stopped``
        when ``stop`` is set before the last page)."""
        body: dict[str, Any] = {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment":
                                               {"experiment_id": e}} for e in experiment_ids], "max_results": PAGE}
        if filter_string:
            body["filter"] = filter_string
        while True:
            page = self._call(_SEARCH, "POST", json=body)
            yield from page.get("traces", ())
            token = page.get("next_page_token")
            if not token:
                return
            body["page_token"] = token
            if stop is not None and stop.is_set():
                raise Stopped(filter_string)

    def trace_ids(self, experiment_ids: list[str], filter_string: str,
                  stop: threading.Event | None = None) -> set[str]:
        """The ids of the traces matching ``filter_string``."""
        return {info["trace_id"] for info in self.infos(experiment_ids, filter_string, stop)}

    def traces(self, trace_ids: list[str]) -> Iterator[dict]:
        """The JSON traces (info and spans) of the given ids, fetched in batches from several threads at once."""
        batches = [trace_ids[i:i + BATCH] for i in range(0, len(trace_ids), BATCH)]
        if not batches:
            return

        def fetch(ids: list[str]) -> list[dict]:
            return self._call(_BATCH_GET, "GET", params={"trace_ids": ids}).get("traces", [])

        with ThreadPoolExecutor(max_workers=min(THREADS, len(batches)), thread_name_prefix="mltrack-insights") as pool:
            for found in pool.map(fetch, batches):
                yield from found


def _millis_of_timestamp(text: str) -> int:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp.ToMilliseconds()


def _millis_of_duration(text: str) -> int:
    from google.protobuf.duration_pb2 import Duration

    duration = Duration()
    duration.FromJsonString(text)
    return duration.ToMilliseconds()


def _assessments(items: list[dict]) -> list[AssessmentView]:
    from mlflow.entities.assessment import Assessment

    found = []
    for item in items:
        if "feedback" not in item and "expectation" not in item:
            continue  # issue references and kinds a filter cannot name
        assessment = Assessment.from_dictionary(item)  # MLflow's own decoding of values (serialized expectations)
        if item.get("valid") is False or getattr(assessment, "valid", None) is False:
            continue
        found.append(AssessmentView("feedback" if "feedback" in item else "expectation", assessment.name,
                                    assessment.value))
    return found


def view_of_info(info: dict) -> TraceView:
    """The view of one JSON trace info (no spans yet), equal to ``view_of_trace`` of the ``Trace`` MLflow builds."""
    tags = dict(info.get("tags") or {})
    duration = info.get("execution_duration")
    return TraceView(trace_id=info["trace_id"], status=info.get("state") or "",
                     timestamp_ms=_millis_of_timestamp(info["request_time"]),
                     execution_time_ms=None if duration is None else _millis_of_duration(duration),
                     name=tags.get("mlflow.traceName"), tags=tags, metadata=dict(info.get("trace_metadata") or {}),
                     spans=[], assessments=_assessments(info.get("assessments") or []))


def any_value(value: dict) -> Any:
    """An OTLP ``AnyValue`` in JSON as the Python value MLflow's ``Span.attributes`` gives for it."""
    for kind, inner in value.items():
        if kind == "array_value":
            return [any_value(v) for v in inner.get("values", ())]
        if kind == "kvlist_value":
            return {kv["key"]: any_value(kv.get("value", {})) for kv in inner.get("values", ())}
        if kind == "int_value":
            return int(inner)  # int64 may be spelled as a JSON string
        if kind == "double_value":
            return float(inner)
        return inner
    return None


def spans_of(trace: dict) -> list[SpanView]:
    """The span views of one JSON trace from batchGet."""
    views = []
    for span in trace.get("spans", ()):
        attributes = {a["key"]: any_value(a.get("value", {})) for a in span.get("attributes", ())}
        status = _STATUS.get((span.get("status") or {}).get("code", "STATUS_CODE_UNSET"), "UNSET")
        views.append(SpanView(span.get("name"), attributes.get("mlflow.spanType"), status, attributes=attributes))
    return views
