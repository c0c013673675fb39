"""The one class that talks to MLflow: a background thread that batches every write the callers handed off."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import defaultdict
from typing import Any, Mapping

from mltrack import _safety
from mltrack._version import __version__
from mltrack.run_state import RunHandle
from mltrack.writer.ops import Barrier, EndRun, LogCall, SetTags, StartRun
from mltrack.writer.payload import call_line, call_metrics

_MAX_METRICS_PER_BATCH = 1000
_MAX_TAGS_PER_BATCH = 100
_MAX_OPS_PER_ROUND = 5000


class _RunBuffer:
    """What is waiting to be written for one run in this round."""

    __slots__ = ("metrics", "tags", "lines", "first_step")

    def __init__(self) -> None:
        self.metrics: list[tuple[str, float, int, int]] = []
        self.tags: dict[str, str] = {}
        self.lines: list[str] = []
        self.first_step: int | None = None


class MlflowWriter:
    """Owns the queue and the writer thread; the caller's thread only calls :meth:`submit`."""

    def __init__(self, max_queue: int = 10000, flush_interval: float = 1.0) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._flush_interval = flush_interval
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._clients: dict[str | None, Any] = {}
        self._experiments: dict[tuple[str | None, str], str] = {}
        self._open_runs: dict[int, RunHandle] = {}
        self._errors: list[BaseException] = []
        self.dropped = 0

    # caller side ----------------------------------------------------------------------------------
    def submit(self, op: Any) -> None:
        """Hand an operation to the writer; never blocks, never raises."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(op)
        except queue.Full:
            self.dropped += 1
            _safety.warn_once("writer-queue-full", "mltrack: the writer queue is full (MLflow store too slow or "
                              "down); records are being dropped.")

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything submitted so far is written; True when it all was within ``timeout``."""
        if self._thread is None:
            return True
        barrier = Barrier()
        try:
            self._queue.put(barrier, timeout=timeout)
        except queue.Full:
            return False
        done = barrier.done.wait(timeout)
        if self._errors and _safety.strict():
            errors, self._errors = self._errors, []
            raise errors[0]
        return done

    def pending(self) -> int:
        return self._queue.qsize()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mltrack-writer", daemon=True)
                self._thread.start()

    # writer thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            ops = [self._queue.get()]
            deadline = time.monotonic() + self._flush_interval
            while len(ops) < _MAX_OPS_PER_ROUND and not isinstance(ops[-1], Barrier):
                remaining = deadline - time.monotonic()
                try:
                    ops.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write_round(ops)
            except Exception as exc:  # noqa: BLE001 - the writer must survive anything
                self._fail("writing to MLflow", exc)
            for op in ops:
                if isinstance(op, Barrier):
                    op.done.set()

    def _fail(self, where: str, exc: BaseException) -> None:
        if _safety.strict():
            self._errors.append(exc)
            return
        _safety.warn_once(f"writer:{where}:{type(exc).__name__}",
                          f"mltrack: {where} failed ({type(exc).__name__}: {exc}); your code is unaffected.")

    def _write_round(self, ops: list[Any]) -> None:
        buffers: dict[int, tuple[RunHandle, _RunBuffer]] = {}

        def buffer(handle: RunHandle) -> _RunBuffer:
            entry = buffers.get(id(handle))
            if entry is None:
                entry = buffers[id(handle)] = (handle, _RunBuffer())
            return entry[1]

        for op in ops:
            try:
                if isinstance(op, StartRun):
                    self._start_run(op.handle, op.params)
                elif isinstance(op, LogCall):
                    self._buffer_call(buffer(op.handle), op)
                elif isinstance(op, SetTags):
                    buffer(op.handle).tags.update(op.tags)
                elif isinstance(op, EndRun):
                    entry = buffers.pop(id(op.handle), None)
                    if entry is not None:
                        self._write_buffer(*entry)
                    self._end_run(op)
            except Exception as exc:  # noqa: BLE001
                self._fail(f"writing {type(op).__name__}", exc)
        for handle, buf in buffers.values():
            try:
                self._write_buffer(handle, buf)
            except Exception as exc:  # noqa: BLE001
                self._fail("writing metrics", exc)

    # MLflow calls ---------------------------------------------------------------------------------
    def _client(self, tracking_uri: str | None) -> Any:
        client = self._clients.get(tracking_uri)
        if client is None:
            from mlflow import MlflowClient

            client = self._clients[tracking_uri] = MlflowClient(tracking_uri=tracking_uri)
        return client

    def _experiment_id(self, client: Any, handle: RunHandle) -> str:
        if handle.experiment is None:
            if handle.parent is not None and handle.parent.known_run_id:
                return client.get_run(handle.parent.known_run_id).info.experiment_id
            env_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
            if env_id:
                return env_id
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
            if not name:
                return "0"
        else:
            name = handle.experiment
        key = (handle.tracking_uri, name)
        cached = self._experiments.get(key)
        if cached is not None:
            return cached
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(name)
            except Exception:  # noqa: BLE001 - another process created it first
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
        self._experiments[key] = experiment_id
        return experiment_id

    def _start_run(self, handle: RunHandle, params: Mapping[str, str]) -> None:
        try:
            client = self._client(handle.tracking_uri)
            tags = {"mltrack.version": __version__, **handle.tags}
            if handle.parent is not None:
                parent_id = handle.parent.wait_run_id(0)
                if parent_id:
                    tags["mlflow.parentRunId"] = parent_id
            run = client.create_run(self._experiment_id(client, handle), start_time=int(handle.start_time * 1000),
                                    tags=tags, run_name=handle.name)
            handle.set_run_id(run.info.run_id)
            self._open_runs[id(handle)] = handle
            if params:
                from mlflow.entities import Param

                items = [Param(k, v) for k, v in params.items()]
                for i in range(0, len(items), _MAX_TAGS_PER_BATCH):
                    client.log_batch(run.info.run_id, params=items[i:i + _MAX_TAGS_PER_BATCH])
        except Exception:
            handle.set_run_id(None)
            raise

    def _buffer_call(self, buf: _RunBuffer, op: LogCall) -> None:
        flags, processed = op.flags, op.processed
        if not flags.llm:
            return
        buf.metrics.extend(call_metrics(processed, flags))
        snap = processed.snapshot
        if snap is not None:
            if snap.models:
                buf.tags["llm.model"] = snap.models
            if snap.providers:
                buf.tags["llm.provider"] = snap.providers
        if processed.call.error:
            buf.tags["llm.error.type"] = processed.call.error
        if op.budget_tag:
            buf.tags["mltrack.budget.exceeded"] = op.budget_tag
        if buf.first_step is None:
            buf.first_step = processed.call.step
        buf.lines.append(call_line(processed, flags))

    def _write_buffer(self, handle: RunHandle, buf: _RunBuffer) -> None:
        run_id = handle.wait_run_id(0)
        if run_id is None:
            return
        from mlflow.entities import Metric, RunTag

        client = self._client(handle.tracking_uri)
        metrics = [Metric(key, float(value), ts, step) for key, value, step, ts in buf.metrics]
        tags = [RunTag(k, str(v)) for k, v in buf.tags.items()]
        rounds = max(-(-len(metrics) // _MAX_METRICS_PER_BATCH), -(-len(tags) // _MAX_TAGS_PER_BATCH))
        for i in range(rounds):
            client.log_batch(run_id, metrics=metrics[i * _MAX_METRICS_PER_BATCH:(i + 1) * _MAX_METRICS_PER_BATCH],
                             tags=tags[i * _MAX_TAGS_PER_BATCH:(i + 1) * _MAX_TAGS_PER_BATCH])
        if buf.lines:
            last = buf.first_step + len(buf.lines) - 1 if buf.first_step is not None else 0
            client.log_text(run_id, "\n".join(buf.lines) + "\n", f"llm/calls-{buf.first_step:06d}-{last:06d}.jsonl")

    def _end_run(self, op: EndRun) -> None:
        run_id = op.handle.wait_run_id(0)
        self._open_runs.pop(id(op.handle), None)
        if run_id is None:
            return
        from mlflow.entities import Metric, RunTag

        client = self._client(op.handle.tracking_uri)
        ts = int(op.end_time * 1000)
        metrics = [Metric(k, float(v), ts, 0) for k, v in op.metrics.items()]
        tags = [RunTag(k, str(v)) for k, v in op.tags.items()]
        if metrics or tags:
            client.log_batch(run_id, metrics=metrics, tags=tags)
        if op.handle.owned:
            client.set_terminated(run_id, status=op.status, end_time=ts)

    def end_open_runs(self) -> None:
        """At interpreter exit: end the runs mltrack opened and nobody closed (e.g. a tracker's own run)."""
        for handle in list(self._open_runs.values()):
            self.submit(EndRun(handle, "FINISHED", time.time()))
