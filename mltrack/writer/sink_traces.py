"""A store's MLflow traces: LLM, RETRIEVER and root spans of the records a :class:`~mltrack.writer.sink.Sink`
writes, and judges' feedback on them.

Through MLflow's client (local stores), spans go to MLflow's own tracing export, which writes to MLflow's current
tracking URI only: they are written when that is this store. Through mltrack's REST client (tracking servers), a
trace is written to its server as OTLP when it ends, and feedback through the v3 assessments API.
"""

from __future__ import annotations

from typing import Any, Callable

from mltrack._safety import warn_once
from mltrack.writer.spans import TraceBook, flush_exports, point_exporter_at


class TraceWriter:
    """The traces of one store. ``call`` is the sink's retrying MLflow call; ``experiment_of`` a run's experiment."""

    def __init__(self, uri: str, call: Callable[..., Any], experiment_of: Callable[[Any, str], str]) -> None:
        self.uri = uri
        self.rest = False  # the store is written with mltrack's REST client (set when the sink opens it)
        self.written = False  # spans written since the last flush: the server then waits for MLflow's export
        self._call = call
        self._experiment_of = experiment_of
        self._book = TraceBook()

    def started(self, record: dict[str, Any]) -> None:
        """A run started: a ``@track`` / context run keeps its calls for one trace under its root span."""
        self._book.started(record)

    def calls(self, client: Any, key: str, run_id: str, calls: list[dict[str, Any]]) -> None:
        """One ``LLM`` span per call: children of the run's root span for ``@track`` / context runs (written when
        the run ends), a trace of its own otherwise. Not written again on a replay (the sink passes none then)."""
        if self._here():
            self._call("writing trace spans", self._book.calls, client, key, run_id,
                       self._experiment_of(client, run_id), calls)
            self.written = True

    def retrievals(self, client: Any, key: str, run_id: str, records: list[dict[str, Any]]) -> None:
        if self._here():
            for record in records:
                self._call("writing a retrieval span", self._book.retrieval, client, key, run_id,
                           self._experiment_of(client, run_id), record)
            self.written = True

    def end(self, client: Any, record: dict[str, Any], run_id: str | None) -> None:
        """The run ended: write its trace (root span and the children kept for it)."""
        if run_id is None or not self._book.waiting(record["k"]):
            self._book.forget(record["k"])
            return
        if self._here():
            self._call("writing the run's trace", self._book.ended, client, record["k"], run_id,
                       self._experiment_of(client, run_id), int(record["et"]), record.get("s") == "FAILED")
            self.written = True

    def feedback(self, client: Any, key: str, run_id: str, feedback: list[dict[str, Any]]) -> None:
        """Judge scores as MLflow feedback assessments on the run's trace (written before them, at the run's end)."""
        trace_id = self._book.trace_id(key)
        if trace_id is None and self.rest:  # written by an earlier writer: the run's trace (@track / context runs)
            trace_id = self._call("finding the run's trace", client.trace_of_run, self._experiment_of(client, run_id),
                                  run_id)
        elif trace_id is None:
            found = self._call("finding the run's trace", client.search_traces,
                               locations=[self._experiment_of(client, run_id)], run_id=run_id, max_results=1)
            trace_id = found[0].info.trace_id if found else None
        if trace_id is None:
            return  # no trace (traces off, or no traced call): the scores are in the run's metrics only
        if self.rest:  # the trace was written synchronously (OTLP)
            for item in feedback:
                self._call("logging a judge's feedback", client.log_feedback, trace_id, str(item["n"]), item["v"],
                           rationale=item.get("ra") or None, source_id=str(item.get("src")))
            return
        flush_exports(10.0)  # MLflow may still be exporting the trace in the background
        from mlflow.entities import AssessmentSource, Feedback
        from mlflow.tracing.client import TracingClient

        tracing = TracingClient(self.uri)
        for item in feedback:
            assessment = Feedback(name=str(item["n"]), value=item["v"], rationale=item.get("ra") or None,
                                  source=AssessmentSource(source_type="LLM_JUDGE", source_id=str(item.get("src"))))
            self._call("logging a judge's feedback", tracing.log_assessment, trace_id, assessment)

    def flush(self, timeout: float | None) -> bool:
        """Wait for MLflow's background export of the spans written (see :func:`flush_exports`)."""
        self.written = False
        return True if self.rest else flush_exports(timeout)

    def _here(self) -> bool:
        """MLflow exports traces to its own tracking URI: write them only when that is this store."""
        if self.rest:
            return True
        import mlflow

        if mlflow.get_tracking_uri() == self.uri:
            point_exporter_at(self.uri)
            return True
        warn_once(f"traces-elsewhere:{self.uri}", f"mltrack: no trace spans are written for {self.uri}: MLflow's "
                  f"tracking URI is {mlflow.get_tracking_uri()}. Set MLFLOW_TRACKING_URI (or mlflow.set_tracking_uri)"
                  " to the same store to get them; metrics and artifacts are written as usual.")
        return False
