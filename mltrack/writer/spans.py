"""MLflow traces for LLM calls: one ``LLM`` span per call, with tokens and cost where MLflow's UI looks for them.

Calls of a run that ``@track`` or ``track_llm_context`` opened are children of one root span for the
function or block, written when the run ends (the first ``MAX_CHILDREN`` of them: a trace of thousands of
spans helps nobody and costs the store seconds); any other call is a trace of its own, linked to its run.
Built from the plain call records the writer already has (see ``records.py``), in the writer's thread.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

_OWN_TAGS = ("mlflow.", "mltrack.")  # tags MLflow and mltrack set on runs: not the user's, not copied to traces
MAX_TRACE_IDS = 10_000  # run key -> trace id, for the judges' feedback written after the run's trace
MAX_CHILDREN = 100  # spans under one root (each costs MLflow ~2 ms to write); later calls of the run get none (their metrics and artifacts are complete)


@dataclass(frozen=True)
class RootSpan:
    name: str
    start_ms: int
    end_ms: int
    failed: bool
    dropped: int = 0


def _ns(ms: float) -> int:
    return int(ms * 1_000_000)


def _end_ms(record: dict[str, Any]) -> float:
    stamp = record.get("timestamp")
    if isinstance(stamp, str):
        return _dt.datetime.fromisoformat(stamp).timestamp() * 1000.0
    return float(stamp or 0)


def llm_span(record: dict[str, Any]) -> dict[str, Any]:
    """The pieces of one ``LLM`` span from a call record (prompt/response only if the record kept them)."""
    end = _end_ms(record)
    start = end - float(record.get("latency_ms") or 0.0)
    attributes: dict[str, Any] = {"mlflow.llm.model": record.get("model"), "mlflow.llm.provider": record.get("provider")}
    if "prompt_tokens" in record:
        usage = {"input_tokens": record["prompt_tokens"], "output_tokens": record["completion_tokens"],
                 "total_tokens": record["total_tokens"]}
        if record.get("cached_prompt_tokens"):
            usage["cache_read_input_tokens"] = record["cached_prompt_tokens"]
        if record.get("cache_write_tokens"):
            usage["cache_creation_input_tokens"] = record["cache_write_tokens"]
        attributes["mlflow.chat.tokenUsage"] = usage
        attributes["mltrack.tokens_estimated"] = bool(record.get("tokens_estimated"))
    if "total_cost" in record:
        attributes["mlflow.llm.cost"] = {"input_cost": float(record["prompt_cost"]),
                                         "output_cost": float(record["completion_cost"]),
                                         "total_cost": float(record["total_cost"])}
    for key in ("ttft_ms", "inter_token_latency_ms", "tokens_per_second", "latency_ms"):
        if record.get(key) is not None:
            attributes[f"mltrack.{key}"] = record[key]
    for key, value in (record.get("params") or {}).items():
        attributes[f"mltrack.params.{key}"] = value
    for key, value in (record.get("metadata") or {}).items():
        attributes[f"mltrack.metadata.{key}"] = value
    if record.get("error"):
        attributes["mltrack.error.type"] = record["error"]
    inputs = {"messages": record["prompt"]} if "prompt" in record else None
    outputs = {"text": record["response"]} if "response" in record else None
    return {"name": record.get("model") or "llm", "start_ns": _ns(start), "end_ns": _ns(end), "inputs": inputs,
            "outputs": outputs, "attributes": {k: v for k, v in attributes.items() if v is not None},
            "status": "ERROR" if record.get("error") else "OK"}


def retrieval_span(record: dict[str, Any]) -> dict[str, Any]:
    """The pieces of one ``RETRIEVER`` span from a retrieval record (text only if the record kept it)."""
    documents = record.get("d")
    outputs = ([{"page_content": text, "metadata": {}} for text in documents] if documents is not None
               else {"num_documents": record.get("nd", 0)})
    return {"name": record.get("n") or "retrieval", "start_ns": _ns(record["st"]), "end_ns": _ns(record["et"]),
            "inputs": {"query": record["q"]} if record.get("q") is not None else None, "outputs": outputs,
            "attributes": {"mltrack.rag.num_docs_retrieved": record.get("nd", 0), "mltrack.rag.step": record.get("i")},
            "status": record.get("s") or "OK"}


def write_retrieval_trace(client: Any, experiment_id: str, run_id: str, record: dict[str, Any],
                          tags: dict[str, str] | None = None) -> str:
    """A retrieval outside a ``@track`` / context run: a trace of its own, its root the ``RETRIEVER`` span."""
    span = retrieval_span(record)
    root = client.start_trace(span["name"], span_type="RETRIEVER", inputs=span["inputs"],
                              attributes=span["attributes"], tags=tags or None, experiment_id=experiment_id,
                              start_time_ns=span["start_ns"], run_id=run_id)
    client.end_trace(root.trace_id, outputs=span["outputs"], status=span["status"], end_time_ns=span["end_ns"])
    return root.trace_id


def write_call_traces(client: Any, experiment_id: str, run_id: str, records: list[dict[str, Any]],
                      tags: dict[str, str] | None = None) -> list[str]:
    """One trace per call, its root the ``LLM`` span; returns the trace ids."""
    ids = []
    for record in records:
        span = llm_span(record)
        root = client.start_trace(span["name"], span_type="LLM", inputs=span["inputs"],
                                  attributes=span["attributes"], tags=tags or None, experiment_id=experiment_id,
                                  start_time_ns=span["start_ns"], run_id=run_id)
        client.end_trace(root.trace_id, outputs=span["outputs"], status=span["status"], end_time_ns=span["end_ns"])
        ids.append(root.trace_id)
    return ids


def write_run_trace(client: Any, experiment_id: str, run_id: str, root: RootSpan,
                    records: list[dict[str, Any]], retrievals: list[dict[str, Any]] = (),
                    tags: dict[str, str] | None = None) -> str:
    """One trace for a whole function or block: its root span, a ``RETRIEVER`` child per retrieval and an ``LLM``
    child per call, in the order they started."""
    attributes = {"mltrack.llm_calls_without_span": root.dropped} if root.dropped else None
    trace = client.start_trace(root.name, span_type="CHAIN", experiment_id=experiment_id, attributes=attributes,
                               tags=tags or None, start_time_ns=_ns(root.start_ms), run_id=run_id)
    children = [("LLM", llm_span(record)) for record in records]
    children += [("RETRIEVER", retrieval_span(record)) for record in retrievals]
    children.sort(key=lambda child: child[1]["start_ns"])
    for span_type, span in children:
        child = client.start_span(span["name"], trace_id=trace.trace_id, parent_id=trace.span_id, span_type=span_type,
                                  inputs=span["inputs"], attributes=span["attributes"],
                                  start_time_ns=max(span["start_ns"], _ns(root.start_ms)))
        client.end_span(trace.trace_id, child.span_id, outputs=span["outputs"], status=span["status"],
                        end_time_ns=min(span["end_ns"], _ns(root.end_ms)))
    client.end_trace(trace.trace_id, status="ERROR" if root.failed else "OK", end_time_ns=_ns(root.end_ms))
    return trace.trace_id


TRACE_FLUSH_MAX_S = 30.0  # MLflow retries a dead server for minutes; mltrack.flush() does not wait that long
_exporter_uri: str | None = None


def point_exporter_at(uri: str) -> None:
    """MLflow's trace exporter keeps the tracking URI it was built with and rebuilds only on
    ``mlflow.set_tracking_uri``: rebuild it when the URI changed another way (``MLFLOW_TRACKING_URI`` set later)."""
    global _exporter_uri
    if _exporter_uri is not None and _exporter_uri != uri:
        from mlflow.tracing.provider import reset

        reset()
    _exporter_uri = uri


def flush_exports(timeout: float | None) -> bool:
    """Wait (at most ``timeout``, capped) for MLflow's own background trace export; True when it finished.

    Runs in a thread of its own: MLflow's wait has no timeout, and a dead server must not hold the caller."""
    import mlflow

    flush = getattr(mlflow, "flush_trace_async_logging", None)
    if not callable(flush):
        return True
    done = threading.Event()

    def run() -> None:
        try:
            flush()
        finally:
            done.set()

    threading.Thread(target=run, name="mltrack-trace-flush", daemon=True).start()
    return done.wait(TRACE_FLUSH_MAX_S if timeout is None else min(timeout, TRACE_FLUSH_MAX_S))


class TraceBook:
    """Per store: the runs whose calls wait for their root span (``@track`` / context runs), and writing traces.

    A call of such a run is kept until the run ends, then written as a child of the run's root span (up to
    ``MAX_CHILDREN``; the root notes how many were left out); a call of any other run is a trace of its own.
    """

    ROOTED = ("function", "context")

    def __init__(self) -> None:
        self._open: dict[str, dict[str, Any]] = {}
        self._trace_ids: OrderedDict[str, str] = OrderedDict()  # run key -> its trace (judges' feedback goes there)
        self._tags: OrderedDict[str, dict[str, str]] = OrderedDict()  # run key -> the user's tags of the run

    def started(self, record: dict[str, Any]) -> None:
        tags = {str(k): str(v) for k, v in (record.get("g") or {}).items() if not str(k).startswith(_OWN_TAGS)}
        if tags:  # the run's tags go on its traces too: trace search and insights filter on them (tags.env)
            self._tags[record["k"]] = tags
            if len(self._tags) > MAX_TRACE_IDS:
                self._tags.popitem(last=False)
        if record.get("kd") in self.ROOTED:
            self._open[record["k"]] = {"name": record.get("n") or "run", "st": int(record["st"]), "calls": [],
                                       "retrievals": [], "dropped": 0}

    def trace_id(self, key: str) -> str | None:
        """The trace written for the run with this key (by this writer), or None."""
        return self._trace_ids.get(key)

    def retrieval(self, client: Any, key: str, run_id: str, experiment_id: str, record: dict[str, Any]) -> None:
        entry = self._open.get(key)
        if entry is None:
            write_retrieval_trace(client, experiment_id, run_id, record, self._tags.get(key))
        elif len(entry["retrievals"]) < MAX_CHILDREN:
            entry["retrievals"].append(record)

    def calls(self, client: Any, key: str, run_id: str, experiment_id: str, calls: list[dict[str, Any]]) -> None:
        entry = self._open.get(key)
        if entry is None:
            write_call_traces(client, experiment_id, run_id, calls, self._tags.get(key))
            return
        room = MAX_CHILDREN - len(entry["calls"])
        entry["calls"].extend(calls[:room])
        entry["dropped"] += max(len(calls) - room, 0)

    def forget(self, key: str) -> None:
        """The run ended: its tags are not needed any more."""
        self._tags.pop(key, None)

    def waiting(self, key: str) -> bool:
        entry = self._open.get(key)
        if entry is not None and not entry["calls"] and not entry["retrievals"]:
            del self._open[key]
            return False
        return entry is not None

    def ended(self, client: Any, key: str, run_id: str, experiment_id: str, end_ms: int, failed: bool) -> None:
        entry = self._open.pop(key, None)
        if entry is not None and (entry["calls"] or entry["retrievals"]):  # no call, no retrieval: no trace
            trace_id = write_run_trace(client, experiment_id, run_id, RootSpan(entry["name"], entry["st"], end_ms,
                                                                                 failed, entry["dropped"]),
                                       entry["calls"], entry["retrievals"], self._tags.pop(key, None))
            self._trace_ids[key] = trace_id
            if len(self._trace_ids) > MAX_TRACE_IDS:
                self._trace_ids.popitem(last=False)
