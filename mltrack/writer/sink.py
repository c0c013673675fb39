"""The only code that calls MLflow: writes batches of records into one store, idempotently.

Writing the same records again (after a failure, or from the journal by another process) writes nothing
twice: MLflow's SQL store ignores a metric row equal to one it has (key, value, step, timestamp); tags and
params are set to the same values; a run's end is set to the same status and time; an artifact file with the
same name is overwritten. Only run creation is not idempotent, so every run carries tag ``mltrack.run_key``
and a start record that is being replayed first looks the run up by it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable

from mltrack.writer.payload import dump_line
from mltrack.writer.records import END, JUDGED, LOG, RETRIEVAL, RUN_KEY_TAG, START, TAGS
from mltrack.writer.rest_http import supports
from mltrack.writer.sink_traces import TraceWriter

_MAX_METRICS_PER_BATCH = 1000
_MAX_TAGS_PER_BATCH = 100
_MAX_PARAMS_PER_BATCH = 100
_MAX_REMEMBERED_RUNS = 100_000
_CALL_RETRIES = (0.2, 1.0, 3.0, 8.0)  # the store answers but one call fails: retry it after these pauses, then skip it

# Error codes that mean "this request can never succeed": the record is reported and left out. Anything else is
# decided by asking the store something harmless: no answer is an outage (retry, forever, with backoff); an answer
# means this one call fails, so it is retried a few times and then left out (a bad record must not block a store).
_PERMANENT_CODES = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_ALREADY_EXISTS",
                              "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE", "NOT_FOUND", "ALREADY_EXISTS"})


_KIND_NAMES = {LOG: "call", RETRIEVAL: "retrieval", JUDGED: "judge score", TAGS: "tag update", END: "run end"}


class Outage(Exception):
    """The store cannot be written now; the batch must be retried later (from the journal)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


class Skip(Exception):
    """This one request can never succeed (bad data, a deleted run); it is reported and left out."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what}: {type(cause).__name__}: {cause}")
        self.what = what
        self.cause = cause


def _code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else ""


def is_permanent(exc: BaseException) -> bool:
    return _code(exc) in _PERMANENT_CODES


class _RunBuffer:
    """What one batch writes into one run, coalesced: metric rows, tags, call lines (artifact) and spans."""

    __slots__ = ("key", "run_id", "metrics", "tags", "calls", "traced", "retrievals", "feedback")

    def __init__(self, key: str, run_id: str | None) -> None:
        self.key = key
        self.run_id = run_id
        self.metrics: list[Any] = []
        self.tags: dict[str, str] = {}
        self.calls: list[dict[str, Any]] = []
        self.traced: list[dict[str, Any]] = []  # the calls that also become trace spans
        self.retrievals: list[dict[str, Any]] = []  # track_retrieval blocks that become RETRIEVER spans
        self.feedback: list[dict[str, Any]] = []  # judge scores for the run's trace (after it is written)


class Sink:
    """One MLflow store (tracking URI): its client, the runs it knows, writing batches of records into it."""

    def __init__(self, uri: str, *, sleep: Callable[[float], Any] = time.sleep,
                 on_run_id: Callable[[str, str | None], None] | None = None,
                 on_skip: Callable[[Skip], None] | None = None) -> None:
        self.uri = uri
        self._run_ids: OrderedDict[str, str] = OrderedDict()
        self._sleep = sleep
        self._on_run_id = on_run_id or (lambda key, run_id: None)
        self._on_skip = on_skip or (lambda skip: None)
        self._client: Any = None
        self._experiments: dict[str, str] = {}
        self._run_experiments: OrderedDict[str, str] = OrderedDict()
        self._missing: set[str] = set()  # keys whose start could not be written (their records are skipped)
        self.rest = False  # written through mltrack's REST client (no MLflow in this process for this store)
        self.tracing = TraceWriter(uri, self._call, self._experiment_of)

    def remember(self, key: str, run_id: str) -> None:
        self._run_ids[key] = run_id
        self._run_ids.move_to_end(key)
        if len(self._run_ids) > _MAX_REMEMBERED_RUNS:
            self._run_ids.popitem(last=False)

    def known(self, key: str) -> str | None:
        return self._run_ids.get(key)

    # the MLflow calls -----------------------------------------------------------------------------------
    def client(self) -> Any:
        """MLflow's client for this store; for a tracking server (``http(s)://``) mltrack's own REST client, so that
        the writer never imports MLflow for it (see ``rest_client.py``; auth plugins still need MLflow's)."""
        if self._client is None:
            try:
                if supports(self.uri):
                    from mltrack.writer.rest_client import RestClient

                    self._client = RestClient(self.uri)
                    self.rest = self.tracing.rest = True
                else:
                    from mlflow import MlflowClient

                    self._client = MlflowClient(tracking_uri=self.uri)
            except Exception as exc:  # noqa: BLE001 - a store that cannot even be opened is down
                raise Outage(exc) from exc
        return self._client

    def _entities(self) -> Any:
        """The module with ``Metric``, ``Param``, ``RunTag``, ``ViewType`` for this store's client."""
        if self.rest:
            from mltrack.writer import rest_entities

            return rest_entities
        import mlflow.entities

        return mlflow.entities

    def probe(self) -> bool:
        """Does the store answer at all?"""
        try:
            self.client().search_experiments(max_results=1)
            return True
        except Exception:  # noqa: BLE001
            return False

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One MLflow call: a store that does not answer is an :class:`Outage`; a call that fails while the store
        answers is retried a few times, then a :class:`Skip`."""
        error: BaseException | None = None
        for pause in (0.0, *_CALL_RETRIES):
            if error is not None:
                if is_permanent(error):
                    break
                if not self.probe():
                    raise Outage(error)
                self._sleep(pause)
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                error = exc
                continue
            return result
        raise Skip(what, error)

    # writing a batch ------------------------------------------------------------------------------------
    def write(self, batch: list[dict[str, Any]], replay: bool) -> dict[str, str]:
        """Write records in order. ``replay``: they may have been (partly) written before, so look runs up.

        Returns the run ids of the starts in the batch (for the journal). Raises :class:`Outage`."""
        client = self.client()
        ids: dict[str, str] = {}
        buffers: dict[str, _RunBuffer] = {}

        def buffer(record: dict[str, Any]) -> _RunBuffer | None:
            key = record["k"]
            buf = buffers.get(key)
            if buf is None:
                run_id = self._resolve(record, replay)
                if run_id is None:  # its start could not be written (reported then), or a replay finds no run
                    self._on_skip(Skip(f"a {_KIND_NAMES.get(record.get('t'), 'record')} of run {key}",
                                       LookupError("its run was never created in this store")))
                    return None
                buf = buffers[key] = _RunBuffer(key, run_id)
            return buf

        for record in batch:
            kind = record.get("t")
            try:
                if kind == START:
                    if not replay:
                        self.tracing.started(record)
                    run_id = self._start(client, record, replay)
                    if run_id is not None:
                        ids[record["k"]] = run_id
                elif kind == LOG:
                    buf = buffer(record)
                    if buf is not None:
                        buf.metrics.extend(record.get("m") or ())
                        buf.tags.update(record.get("g") or {})
                        if record.get("c") is not None:
                            buf.calls.append(record["c"])
                            if record.get("sp") and not replay:  # a replay may have written them already
                                buf.traced.append(record["c"])
                elif kind == RETRIEVAL:
                    buf = buffer(record)
                    if buf is not None:
                        step, end_ms = int(record["i"]), int(record["et"])  # times in ms (floats)
                        took = round(float(record["et"]) - float(record["st"]), 3)
                        buf.metrics += [["rag.retrieval_time_ms", took, step, end_ms],
                                        ["rag.num_docs_retrieved", float(record.get("nd") or 0), step, end_ms]]
                        if record.get("sp") and not replay:
                            buf.retrievals.append(record)
                elif kind == JUDGED:
                    buf = buffer(record)
                    if buf is not None:
                        buf.metrics.extend(record.get("m") or ())
                        buf.tags.update(record.get("g") or {})
                        if not replay:  # an assessment is not idempotent: a replay may have written it
                            buf.feedback.extend(record.get("fb") or ())
                elif kind == TAGS:
                    buf = buffer(record)
                    if buf is not None:
                        buf.tags.update(record.get("g") or {})
                elif kind == END:
                    buf = buffers.pop(record["k"], None)
                    if buf is not None:  # the run's end metrics and tags go in the same request as its last calls
                        end_ms = int(record["et"])
                        buf.metrics.extend([k, v, 0, end_ms] for k, v in (record.get("m") or {}).items())
                        buf.tags.update(record.get("g") or {})
                        try:
                            self._write_buffer(client, buf)
                        except Skip as skip:  # the run still ends
                            self._on_skip(skip)
                        self._end(client, record, replay, logged=True)
                        self.tracing.end(client, record, buf.run_id)
                    else:
                        self._end(client, record, replay)
                        self.tracing.end(client, record, self.known(record["k"]))
            except Outage:
                raise
            except Skip as skip:
                self._on_skip(skip)
            except Exception as exc:  # noqa: BLE001 - a malformed record (or a bug) costs that record only
                self._on_skip(Skip("a malformed record", exc))
        for buf in buffers.values():
            try:
                self._write_buffer(client, buf)
            except Outage:
                raise
            except Skip as skip:
                self._on_skip(skip)
            except Exception as exc:  # noqa: BLE001
                self._on_skip(Skip("a malformed record", exc))
        return ids

    def _resolve(self, record: dict[str, Any], replay: bool) -> str | None:
        run_id = record.get("r")
        key = record["k"]
        if run_id:
            self.remember(key, run_id)
            return run_id
        run_id = self.known(key)
        if run_id is None and replay and key not in self._missing:
            run_id = self._find(key, None)
            if run_id is None:
                self._missing.add(key)
        return run_id

    def _find(self, key: str, experiment_ids: list[str] | None) -> str | None:
        """The run this key created earlier (by tag ``mltrack.run_key``), or None."""
        client = self.client()
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in self._call("listing experiments", client.search_experiments)]
            if not experiment_ids:
                return None
        ViewType = self._entities().ViewType

        for i in range(0, len(experiment_ids), 100):
            runs = self._call("looking up a run", client.search_runs, experiment_ids[i:i + 100],
                              filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'", run_view_type=ViewType.ALL,
                              max_results=1)
            if runs:
                self.remember(key, runs[0].info.run_id)
                return runs[0].info.run_id
        return None

    def _start(self, client: Any, record: dict[str, Any], replay: bool) -> str | None:
        key = record["k"]
        run_id = self.known(key)
        if run_id is None:
            try:
                experiment_id = self._experiment_id(client, record)
                if replay:
                    run_id = self._find(key, [experiment_id])
                if run_id is None:
                    tags = dict(record.get("g") or {})
                    parent_id = self._parent_id(record)
                    if parent_id:
                        tags["mlflow.parentRunId"] = parent_id
                    run = self._call("creating a run", client.create_run, experiment_id, start_time=record["st"],
                                     tags=tags, run_name=record.get("n"))
                    run_id = run.info.run_id
            except Skip:
                self._missing.add(key)
                self._on_run_id(key, None)
                raise
            self.remember(key, run_id)
            self._run_experiments[run_id] = experiment_id
            if len(self._run_experiments) > _MAX_REMEMBERED_RUNS:
                self._run_experiments.popitem(last=False)
        self._on_run_id(key, run_id)
        params = record.get("a") or {}
        if params:
            Param = self._entities().Param
            items = [Param(k, v) for k, v in params.items()]
            for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
                self._call("logging params", client.log_batch, run_id, params=items[i:i + _MAX_PARAMS_PER_BATCH])
        return run_id

    def _parent_id(self, record: dict[str, Any]) -> str | None:
        parent = record.get("p")
        return (self.known(parent) if parent else None) or record.get("pr")

    def _experiment_id(self, client: Any, record: dict[str, Any]) -> str:
        name = record.get("x")
        if name is None:
            parent_id = self._parent_id(record)
            if parent_id:
                cached = self._run_experiments.get(parent_id)
                if cached is not None:
                    return cached
                return self._call("reading the parent run", client.get_run, parent_id).info.experiment_id
            if record.get("xe"):
                return str(record["xe"])
            name = record.get("xn")
            if not name:
                return "0"
        cached = self._experiments.get(name)
        if cached is not None:
            return cached
        experiment = self._call("reading the experiment", client.get_experiment_by_name, name)
        if experiment is None:
            try:
                experiment_id = self._call("creating the experiment", client.create_experiment, name)
            except Skip:  # another process created it first
                experiment = self._call("reading the experiment", client.get_experiment_by_name, name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
        self._experiments[name] = experiment_id
        return experiment_id

    def _write_buffer(self, client: Any, buf: _RunBuffer) -> None:
        entities = self._entities()
        Metric, RunTag = entities.Metric, entities.RunTag

        run_id = buf.run_id
        metrics = []
        for row in buf.metrics:
            try:
                key, value, step, ts = row
                metrics.append(Metric(str(key), float(value), int(ts), int(step)))
            except (TypeError, ValueError) as exc:  # a malformed row costs that row only
                self._on_skip(Skip("a malformed metric row", exc))
        tags = [RunTag(str(k), str(v)) for k, v in buf.tags.items()]
        m = t = 0
        while m < len(metrics) or t < len(tags):  # MLflow takes at most 1000 entities (100 tags) per request
            tag_chunk = tags[t:t + _MAX_TAGS_PER_BATCH]
            metric_chunk = metrics[m:m + _MAX_METRICS_PER_BATCH - len(tag_chunk)]
            self._call("logging metrics", client.log_batch, run_id, metrics=metric_chunk, tags=tag_chunk)
            m += len(metric_chunk)
            t += len(tag_chunk)
        if buf.calls:
            # Named after the first call's step only: a replay of this batch starts at the same record (so the same
            # first step) and overwrites the file, even if it ends elsewhere; the next file starts where it ended.
            first = buf.calls[0].get("step", 0)
            text = _safe_text("\n".join(dump_line(call) for call in buf.calls) + "\n")
            self._call("logging the calls artifact", client.log_text, run_id, text, f"llm/calls-{first:06d}.jsonl")
        if buf.traced:
            self.tracing.calls(client, buf.key, run_id, buf.traced)
        if buf.retrievals:
            self.tracing.retrievals(client, buf.key, run_id, buf.retrievals)
        if buf.feedback:
            self.tracing.feedback(client, buf.key, run_id, buf.feedback)

    def _experiment_of(self, client: Any, run_id: str) -> str:
        experiment_id = self._run_experiments.get(run_id)
        if experiment_id is None:
            experiment_id = self._call("reading the run", client.get_run, run_id).info.experiment_id
            self._run_experiments[run_id] = experiment_id
        return experiment_id

    def _end(self, client: Any, record: dict[str, Any], replay: bool, logged: bool = False) -> None:
        run_id = self._resolve(record, replay)
        if run_id is None:
            self._on_skip(Skip(f"the end of run {record['k']}", LookupError("its run was never created in this store")))
            return
        entities = self._entities()
        Metric, RunTag = entities.Metric, entities.RunTag
        end_ms = int(record["et"])
        metrics = [Metric(k, float(v), end_ms, 0) for k, v in (record.get("m") or {}).items()]
        tags = [RunTag(k, str(v)) for k, v in (record.get("g") or {}).items()]
        if (metrics or tags) and not logged:
            self._call("logging the run's end", client.log_batch, run_id, metrics=metrics, tags=tags)
        if record.get("o", True):
            self._call("ending the run", client.set_terminated, run_id, status=record.get("s") or "FINISHED",
                       end_time=end_ms)


def _safe_text(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


__all__ = ["Outage", "Sink", "Skip", "is_permanent"]
