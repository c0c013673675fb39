"""A light client for MLflow tracking servers (``http(s)://``): the standard library only, never ``mlflow``.

It offers the ``MlflowClient`` methods mltrack's writer calls, with the same names, arguments and return
shapes (small frozen stand-ins for MLflow's entities), so that a process writing to a tracking server does not
pay for importing MLflow (~170 MiB). It speaks MLflow's documented REST API (``/api/2.0/mlflow/...``), uploads
artifacts through the server's artifact proxy, and writes trace spans as OTLP/HTTP JSON to ``/v1/traces``.

- Connections are kept alive and reused, one per thread and host; a forked child opens its own.
- Errors the server reports raise :class:`RestError` with MLflow's ``error_code`` (e.g.
  ``RESOURCE_DOES_NOT_EXIST``); a server that cannot be reached raises an ``OSError`` (``ConnectionError``,
  ``TimeoutError``). A request on a kept-alive connection that the server closed meanwhile is sent again once
  on a new connection (except run creation, which is not idempotent).
- MLflow's settings are read from the environment at each request, as MLflow does: ``MLFLOW_TRACKING_USERNAME``
  / ``MLFLOW_TRACKING_PASSWORD`` (Basic, also from ``~/.mlflow/credentials``; they win over the token, as in
  MLflow), ``MLFLOW_TRACKING_TOKEN`` (Bearer), ``MLFLOW_TRACKING_INSECURE_TLS``,
  ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``.
  The ``Authorization`` header is built per request and never kept, logged or put in an error message.
  ``MLFLOW_TRACKING_AUTH`` (auth plugins) and ``MLFLOW_TRACKING_AWS_SIGV4`` need MLflow's client:
  :func:`supports` says False then.
- Artifacts: a run whose ``artifact_uri`` is ``mlflow-artifacts:`` (the server proxies artifacts: the default
  of ``mlflow server``) or ``http(s)://`` is written over HTTP; a local path or ``file://`` URI is written
  directly, as MLflow's client does (it must be a folder this machine sees, e.g. a shared volume); any other
  scheme (``s3://``, ``gs://``, ...) needs that store's SDK and raises :class:`UnsupportedArtifactUri`
  (``error_code`` ``NOT_IMPLEMENTED``): run the server with ``--serve-artifacts`` (the default), or write
  through ``MlflowClient``.

Its parts: ``rest_http`` (settings, connections, errors), ``rest_entities`` (the stand-in entities),
``rest_otlp`` (spans as an OTLP JSON request); this module holds the client's methods.
"""

from __future__ import annotations

import json
import mimetypes
import os
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any, Iterable, Mapping
from urllib.parse import quote, urlencode, urlsplit

from mltrack.writer.rest_entities import (Experiment, FinishedSpan, Metric, PagedList, Param, Run, RunData, RunInfo,
                                          RunTag, SpanHandle, ViewType, experiment_from_json, json_double,
                                          run_from_json)
from mltrack.writer.rest_http import Connections, RestError, error_from_reply, supports
from mltrack.writer.rest_otlp import export_request

__all__ = ["Experiment", "FinishedSpan", "Metric", "PagedList", "Param", "RestClient", "RestError", "Run",
           "RunData", "RunInfo", "RunTag", "SpanHandle", "UnsupportedArtifactUri", "ViewType", "supports"]

_API = "/api/2.0/mlflow"
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
_OTLP = "/v1/traces"
_TRACES_V3 = "/api/3.0/mlflow/traces"
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS, _MAX_ENTITIES = 1000, 100, 100, 1000  # MLflow's log-batch limits
_MAX_TRACES_PER_REQUEST = 100  # the server links at most 100 traces to a run per request
_MAX_REMEMBERED = 10_000
_MAX_OPEN_TRACES = 1_000


class UnsupportedArtifactUri(RestError):
    """The run's artifacts live in a store only MLflow's client (with that store's SDK) can write."""

    def __init__(self, artifact_uri: str) -> None:
        super().__init__(f"artifact URI {artifact_uri!r}: only mlflow-artifacts:, http(s):// and local paths are "
                         "written without MLflow; start the server with --serve-artifacts (the default), or write "
                         "through MlflowClient", "NOT_IMPLEMENTED")
        self.artifact_uri = artifact_uri



def _bare_trace_id(trace_id: str) -> str:
    return trace_id[3:] if trace_id.startswith("tr-") else trace_id


# -- the client ---------------------------------------------------------------------------------------------
class RestClient:
    """The subset of ``MlflowClient`` mltrack's writer uses, over MLflow's REST API, for one tracking server."""

    def __init__(self, tracking_uri: str) -> None:
        parts = urlsplit(tracking_uri)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"RestClient needs an http(s):// tracking URI, got {tracking_uri!r}")
        self.tracking_uri = tracking_uri.rstrip("/")
        self._scheme = parts.scheme.lower()
        self._netloc = parts.netloc.rpartition("@")[2]  # credentials in the URI are not used (MLflow ignores them)
        self._prefix = parts.path.rstrip("/")  # a server behind a path prefix (http://host/mlflow)
        self._http = Connections()
        self._artifact_uris: OrderedDict[str, str] = OrderedDict()
        self._artifact_lock = threading.Lock()
        self._open_traces: OrderedDict[str, dict[str, Any]] = OrderedDict()  # started, not written yet
        self._traces_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RestClient({self.tracking_uri!r})"

    # -- experiments --------------------------------------------------------------------------------------
    def search_experiments(self, view_type: int | str = ViewType.ACTIVE_ONLY, max_results: int = 1000,
                           filter_string: str | None = None, order_by: list[str] | None = None,
                           page_token: str | None = None) -> PagedList:
        body: dict[str, Any] = {"max_results": max_results, "view_type": ViewType.name_of(view_type)}
        if filter_string:
            body["filter"] = filter_string
        if order_by:
            body["order_by"] = list(order_by)
        if page_token:
            body["page_token"] = page_token
        reply = self._call("POST", f"{_API}/experiments/search", body)
        experiments = [experiment_from_json(e) for e in reply.get("experiments") or ()]
        return PagedList(experiments, reply.get("next_page_token"))

    def get_experiment(self, experiment_id: str) -> Experiment:
        reply = self._call("GET", f"{_API}/experiments/get", query={"experiment_id": experiment_id})
        return experiment_from_json(reply["experiment"])

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            reply = self._call("GET", f"{_API}/experiments/get-by-name", query={"experiment_name": name})
        except RestError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return experiment_from_json(reply["experiment"])

    def create_experiment(self, name: str, artifact_location: str | None = None,
                          tags: Mapping[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"name": name}
        if artifact_location:
            body["artifact_location"] = artifact_location
        if tags:
            body["tags"] = [{"key": str(k), "value": str(v)} for k, v in tags.items()]
        return str(self._call("POST", f"{_API}/experiments/create", body)["experiment_id"])

    # -- runs ----------------------------------------------------------------------------------------------
    def create_run(self, experiment_id: str, start_time: int | None = None, tags: Mapping[str, Any] | None = None,
                   run_name: str | None = None) -> Run:
        tags = dict(tags or {})
        body: dict[str, Any] = {"experiment_id": str(experiment_id),
                                "user_id": str(tags.get("mlflow.user", "unknown")),  # as MlflowClient does
                                "start_time": int(start_time or time.time() * 1000),
                                "tags": [{"key": str(k), "value": str(v)} for k, v in tags.items()]}
        if run_name:
            body["run_name"] = run_name
        run = run_from_json(self._call("POST", f"{_API}/runs/create", body, idempotent=False)["run"])
        self._remember_artifacts(run.info.run_id, run.info.artifact_uri)
        return run

    def get_run(self, run_id: str) -> Run:
        run = run_from_json(self._call("GET", f"{_API}/runs/get", query={"run_id": run_id})["run"])
        self._remember_artifacts(run.info.run_id, run.info.artifact_uri)
        return run

    def search_runs(self, experiment_ids: list[str] | str, filter_string: str = "",
                    run_view_type: int | str = ViewType.ACTIVE_ONLY, max_results: int = 1000,
                    order_by: list[str] | None = None, page_token: str | None = None) -> PagedList:
        ids = [experiment_ids] if isinstance(experiment_ids, str) else [str(i) for i in experiment_ids]
        body: dict[str, Any] = {"experiment_ids": ids, "filter": filter_string or "",
                                "run_view_type": ViewType.name_of(run_view_type), "max_results": max_results}
        if order_by:
            body["order_by"] = list(order_by)
        if page_token:
            body["page_token"] = page_token
        reply = self._call("POST", f"{_API}/runs/search", body)
        return PagedList([run_from_json(r) for r in reply.get("runs") or ()], reply.get("next_page_token"))

    def log_batch(self, run_id: str, metrics: Iterable[Any] = (), params: Iterable[Any] = (),
                  tags: Iterable[Any] = (), synchronous: bool | None = None) -> None:
        """Metrics, params and tags (any objects with MLflow's attribute names), in requests within MLflow's limits."""
        m = [{"key": str(x.key), "value": json_double(x.value), "timestamp": int(x.timestamp), "step": int(x.step or 0)}
             for x in metrics]
        p = [{"key": str(x.key), "value": str(x.value)} for x in params]
        t = [{"key": str(x.key), "value": str(x.value)} for x in tags]
        while m or p or t:
            chunk_p, chunk_t = p[:_MAX_PARAMS], t[:_MAX_TAGS]
            chunk_m = m[:min(_MAX_METRICS, _MAX_ENTITIES - len(chunk_p) - len(chunk_t))]
            body: dict[str, Any] = {"run_id": run_id}
            if chunk_m:
                body["metrics"] = chunk_m
            if chunk_p:
                body["params"] = chunk_p
            if chunk_t:
                body["tags"] = chunk_t
            self._call("POST", f"{_API}/runs/log-batch", body)
            m, p, t = m[len(chunk_m):], p[len(chunk_p):], t[len(chunk_t):]

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        self._call("POST", f"{_API}/runs/update", {"run_id": run_id, "status": status or "FINISHED",
                                                   "end_time": int(end_time or time.time() * 1000)})

    # -- artifacts -----------------------------------------------------------------------------------------
    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Write ``text`` (UTF-8) as the run's artifact ``artifact_file`` (overwriting one of that name)."""
        self._put_artifact(run_id, artifact_file, text.encode("utf-8"))

    def _remember_artifacts(self, run_id: str, artifact_uri: str) -> None:
        if not artifact_uri:
            return
        with self._artifact_lock:
            self._artifact_uris[run_id] = artifact_uri
            self._artifact_uris.move_to_end(run_id)
            if len(self._artifact_uris) > _MAX_REMEMBERED:
                self._artifact_uris.popitem(last=False)

    def _artifact_uri(self, run_id: str) -> str:
        with self._artifact_lock:
            uri = self._artifact_uris.get(run_id)
        return uri if uri is not None else self.get_run(run_id).info.artifact_uri

    def _put_artifact(self, run_id: str, artifact_file: str, data: bytes) -> None:
        if artifact_file.startswith("/") or ".." in artifact_file.split("/"):
            raise ValueError(f"artifact_file must be a relative path inside the run, got {artifact_file!r}")
        root = self._artifact_uri(run_id)
        parts = urlsplit(root)
        scheme = parts.scheme.lower()
        content_type = mimetypes.guess_type(artifact_file)[0] or "text/plain"
        if scheme == "mlflow-artifacts":
            netloc = parts.netloc or self._netloc  # mlflow-artifacts://host:port/... names another server
            path = f"{self._prefix}{_ARTIFACTS}/{parts.path.strip('/')}/{artifact_file}"
            self._call("PUT", path, raw=data, content_type=content_type, target=(self._scheme, netloc))
        elif scheme in ("http", "https"):
            path = f"{parts.path.rstrip('/')}/{artifact_file}"
            self._call("PUT", path, raw=data, content_type=content_type,
                       target=(scheme, parts.netloc.rpartition("@")[2]))
        elif scheme in ("", "file") and (parts.path or root):
            folder = parts.path if scheme == "file" else root
            target = os.path.join(folder, *artifact_file.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as fh:
                fh.write(data)
        else:
            raise UnsupportedArtifactUri(root)

    # -- traces --------------------------------------------------------------------------------------------
    def log_spans(self, experiment_id: str, spans: Iterable[FinishedSpan], run_id: str | None = None) -> None:
        """Write finished spans (any traces) to the server's OTLP endpoint; each trace whose root span is among
        them is linked to ``run_id``. Writing the same spans again replaces them."""
        spans = list(spans)
        batch: list[FinishedSpan] = []
        roots = 0
        for span in spans:
            roots += span.parent_id is None
            batch.append(span)
            if roots >= _MAX_TRACES_PER_REQUEST:
                self._post_spans(experiment_id, batch, run_id)
                batch, roots = [], 0
        if batch:
            self._post_spans(experiment_id, batch, run_id)

    def _post_spans(self, experiment_id: str, spans: list[FinishedSpan], run_id: str | None) -> None:
        body = export_request(spans)
        headers = {"x-mlflow-experiment-id": str(experiment_id)}
        if run_id:
            headers["x-mlflow-run-id"] = run_id
        self._call("POST", _OTLP, body, headers=headers)

    def trace_of_run(self, experiment_id: str, run_id: str) -> str | None:
        """The id of a trace linked to ``run_id`` (the newest), or None: what ``MlflowClient.search_traces(run_id=...)``
        answers, through the server's v3 trace search."""
        body = {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": str(experiment_id)}}],
                "filter": f"attribute.run_id = '{run_id}'", "max_results": 1}
        traces = self._call("POST", f"{_TRACES_V3}/search", body).get("traces") or ()
        return str(traces[0]["trace_id"]) if traces and traces[0].get("trace_id") else None

    def log_feedback(self, trace_id: str, name: str, value: Any, rationale: str | None = None,
                     source_type: str = "LLM_JUDGE", source_id: str | None = None) -> None:
        """A feedback assessment on a trace, as ``mlflow.log_feedback`` writes it (``CreateAssessment``)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z"
        assessment: dict[str, Any] = {"assessment_name": name, "trace_id": trace_id,
                                      "source": {"source_type": source_type, "source_id": str(source_id or "")},
                                      "create_time": stamp, "last_update_time": stamp, "feedback": {"value": value},
                                      "valid": True}
        if rationale:
            assessment["rationale"] = rationale
        self._call("POST", f"{_TRACES_V3}/{trace_id}/assessments", {"assessment": assessment},
                   idempotent=False)

    # The MlflowClient tracing calls mltrack's writer makes (spans.py): the spans are kept here and written in
    # one request when the trace ends.
    def start_trace(self, name: str, span_type: str = "UNKNOWN", inputs: Any = None,
                    attributes: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
                    experiment_id: str | None = None, start_time_ns: int | None = None,
                    run_id: str | None = None) -> SpanHandle:
        trace_hex = secrets.token_hex(16)
        root = self._open_span(trace_hex, None, name, span_type, inputs, attributes, start_time_ns)
        if tags:
            root["attributes"].update({f"mlflow.traceTag.{k}": str(v) for k, v in tags.items()})
        trace_id = f"tr-{trace_hex}"
        with self._traces_lock:
            self._open_traces[trace_id] = {"experiment_id": str(experiment_id or "0"), "run_id": run_id,
                                           "spans": {root["span_id"]: root}, "root": root["span_id"]}
            while len(self._open_traces) > _MAX_OPEN_TRACES:  # traces whose write failed and were started anew
                self._open_traces.popitem(last=False)
        return SpanHandle(trace_id, root["span_id"], trace_id)

    def start_span(self, name: str, trace_id: str, parent_id: str, span_type: str = "UNKNOWN", inputs: Any = None,
                   attributes: Mapping[str, Any] | None = None, start_time_ns: int | None = None) -> SpanHandle:
        trace = self._trace(trace_id)
        span = self._open_span(_bare_trace_id(trace_id), parent_id, name, span_type, inputs, attributes,
                               start_time_ns)
        with self._traces_lock:
            trace["spans"][span["span_id"]] = span
        return SpanHandle(trace_id, span["span_id"], trace_id)

    def end_span(self, trace_id: str, span_id: str, outputs: Any = None, attributes: Mapping[str, Any] | None = None,
                 status: str = "OK", end_time_ns: int | None = None) -> None:
        span = self._trace(trace_id)["spans"].get(span_id)
        if span is None:
            raise RestError(f"span {span_id} of trace {trace_id} was not started here", "INVALID_PARAMETER_VALUE")
        span.update(outputs=outputs, status=str(status), end_time_ns=end_time_ns or time.time_ns())
        span["attributes"].update(attributes or {})

    def end_trace(self, trace_id: str, outputs: Any = None, attributes: Mapping[str, Any] | None = None,
                  status: str = "OK", end_time_ns: int | None = None) -> None:
        """End the root span and write the whole trace (spans left open end with it)."""
        trace = self._trace(trace_id)
        end = end_time_ns or time.time_ns()
        self.end_span(trace_id, trace["root"], outputs=outputs, attributes=attributes, status=status, end_time_ns=end)
        spans = [FinishedSpan(trace_id=s["trace_hex"], span_id=s["span_id"], name=s["name"],
                              start_time_ns=s["start_time_ns"], end_time_ns=s.get("end_time_ns") or end,
                              parent_id=s["parent_id"], span_type=s["span_type"], inputs=s["inputs"],
                              outputs=s.get("outputs"), attributes=s["attributes"],
                              status="ERROR" if str(s.get("status", "OK")).upper() == "ERROR" else "OK")
                 for s in trace["spans"].values()]
        self.log_spans(trace["experiment_id"], spans, run_id=trace["run_id"])
        with self._traces_lock:  # written: forget it (kept until then, so that a failed write can be retried)
            self._open_traces.pop(trace_id, None)

    def _trace(self, trace_id: str) -> dict[str, Any]:
        with self._traces_lock:
            trace = self._open_traces.get(trace_id)
        if trace is None:
            raise RestError(f"trace {trace_id} was not started by this client", "INVALID_PARAMETER_VALUE")
        return trace

    @staticmethod
    def _open_span(trace_hex: str, parent_id: str | None, name: str, span_type: str, inputs: Any,
                   attributes: Mapping[str, Any] | None, start_time_ns: int | None) -> dict[str, Any]:
        return {"trace_hex": trace_hex, "span_id": secrets.token_hex(8), "parent_id": parent_id, "name": name,
                "span_type": span_type, "inputs": inputs, "attributes": dict(attributes or {}),
                "start_time_ns": int(start_time_ns or time.time_ns())}

    def _call(self, method: str, path: str, body: Any = None, *, query: Mapping[str, Any] | None = None,
              raw: bytes | None = None, content_type: str = "application/json",
              headers: Mapping[str, str] | None = None, target: tuple[str, str] | None = None,
              idempotent: bool = True) -> dict[str, Any]:
        """One request; the JSON reply. ``path`` is below the tracking URI's path, unless ``target`` names the host."""
        if target is None:
            path = self._prefix + path
        url = quote(path, safe="/:@-._~!$&'()*+,;=")
        if query:
            url += "?" + urlencode(query)
        data = raw if raw is not None else (json.dumps(body, allow_nan=False).encode("utf-8")
                                             if body is not None else None)
        send_headers = {"Accept": "application/json", "User-Agent": "mltrack-rest-client"}
        if data is not None:
            send_headers["Content-Type"] = content_type
        send_headers.update(headers or {})
        scheme, netloc = target or (self._scheme, self._netloc)
        status, payload = self._http.send(scheme, netloc, method, url, data, send_headers, idempotent)
        if 200 <= status < 300:
            if not payload:
                return {}
            try:
                reply = json.loads(payload)
            except ValueError:
                return {}  # OTLP answers in protobuf; artifact uploads may answer with nothing
            return reply if isinstance(reply, dict) else {}
        raise error_from_reply(status, payload, method, path)

    def close(self) -> None:
        """Close this thread's connections."""
        self._http.close()


