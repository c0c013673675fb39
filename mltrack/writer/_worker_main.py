"""The writer process: runs the MLflow side of the writer (:class:`~mltrack.writer.sink.Sink`) for its parent.

Started by :mod:`mltrack.writer.worker` as ``python -c ...`` with two pipe file descriptors. MLflow's work (the
SQLAlchemy store, HTTP, trace export) then holds this process's GIL, not the application's. One thread per sink
keeps each store's writes in order; a write for one store never waits for another. The process leaves when its
parent closes the pipe or is gone: what was not acknowledged is still in the parent's journal.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import queue
import sys
import threading
import time
import warnings
from typing import Any, Callable

from mltrack.writer import _frames
from mltrack.writer.sink import Outage, Sink, Skip

PROGRESS_EVERY_S = 0.5  # how often a long write tells the parent it is still moving (its hang detection)
NICE = 10  # added to this process's nice value: below the application when both want the CPU


def _freeze_heap() -> None:
    """Move what is alive now (MLflow, SQLAlchemy, their caches: some 300k objects) out of the garbage collector's
    sight. This process only writes; without it every full collection walks all of them, a quarter of the time of
    a large write. Called after a store is opened and after its first write, when those have been built."""
    gc.collect()
    gc.freeze()


class _ReportingSink(Sink):
    """A sink that tells the parent, at most every ``PROGRESS_EVERY_S``, that its MLflow calls still complete."""

    def __init__(self, uri: str, on_progress: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self._on_progress = on_progress
        self._told = 0.0
        self._written = False

    def client(self) -> Any:
        opening = self._client is None
        client = super().client()
        if opening:
            _freeze_heap()
        return client

    def write(self, batch: list[dict[str, Any]], replay: bool, meanwhile: Any = None) -> dict[str, str]:
        ids = super().write(batch, replay)
        if not self._written:
            self._written = True
            _freeze_heap()
        return ids

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        result = super()._call(what, fn, *args, **kwargs)
        if self.last_progress - self._told >= PROGRESS_EVERY_S:
            self._told = self.last_progress
            self._on_progress()
        return result


class _Worker:
    def __init__(self, out_fd: int) -> None:
        self._out = out_fd
        self._send_lock = threading.Lock()
        self._sinks: dict[int, queue.SimpleQueue] = {}

    def send(self, message: Any) -> None:
        try:
            with self._send_lock:
                _frames.send(self._out, message)
        except OSError:  # the parent is gone: nothing left to do here
            os._exit(0)

    # sinks ----------------------------------------------------------------------------------------------
    def open(self, sid: int, uri: str) -> None:
        skips: list[Skip] = []
        sink = _ReportingSink(uri, lambda: self.send(("progress", sid)), on_skip=skips.append,
                              on_run_id=lambda key, run_id: self.send(("run_id", sid, key, run_id)))
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._sinks[sid] = inbox
        threading.Thread(target=self._serve, args=(sink, inbox, skips), name=f"mltrack-sink-{sid}",
                         daemon=True).start()

    def _serve(self, sink: Sink, inbox: queue.SimpleQueue, skips: list[Skip]) -> None:
        while True:
            request = inbox.get()
            if request is None:
                return
            rid, method, args = request
            skips.clear()
            try:
                result = self._run(sink, method, args)
            except Outage as outage:
                reply = ("outage", rid, _frames.exception_blob(outage.cause), None)
            except Exception as exc:  # noqa: BLE001 - a bug: the parent reports it
                reply = ("error", rid, _frames.exception_blob(exc), None)
            else:
                reply = ("ok", rid, result, None)
            extras = {"spans": sink.spans_written,
                      "skips": [(skip.what, _frames.exception_blob(skip.cause)) for skip in skips]}
            sink.spans_written = False
            self.send(reply[:3] + (extras,))

    @staticmethod
    def _run(sink: Sink, method: str, args: tuple) -> Any:
        if method == "write":
            slices, replay, env, traces_uri = args
            batch = [record for piece in slices for record in pickle.loads(piece)]
            if env is not None:
                _adopt_environment(env)
            if traces_uri is not None:
                _follow_tracking_uri(traces_uri)
            return sink.write(batch, replay)
        if method == "client":
            sink.client()
            return None
        if method == "remember_all":
            sink.remember_all(args[0])
            return None
        raise ValueError(f"unknown writer request {method!r}")

    # the loop -------------------------------------------------------------------------------------------
    def handle(self, message: tuple) -> bool:
        kind = message[0]
        if kind == "call":
            _, rid, sid, method, args = message
            inbox = self._sinks.get(sid)
            if inbox is None:
                self.send(("error", rid, _frames.exception_blob(KeyError(f"no sink {sid}")), {}))
            else:
                inbox.put((rid, method, args))
        elif kind == "open":
            self.open(message[1], message[2])
        elif kind == "drop":
            inbox = self._sinks.pop(message[1], None)
            if inbox is not None:
                inbox.put(None)
        elif kind == "exports":
            _, rid, timeout = message
            threading.Thread(target=self._exports, args=(rid, timeout), daemon=True).start()
        elif kind == "uri":
            threading.Thread(target=self._default_uri, args=(message[1],), daemon=True).start()
        elif kind == "exit":
            self._exports(None, message[1])
            return False
        return True

    def _exports(self, rid: int | None, timeout: float | None) -> None:
        try:
            if "mlflow" in sys.modules:
                from mltrack.writer.spans import flush_exports

                ok = flush_exports(timeout)
            else:
                ok = True
        except Exception:  # noqa: BLE001
            ok = False
        if rid is not None:
            self.send(("ok", rid, ok, {}))

    def _default_uri(self, rid: int) -> None:
        try:
            import mlflow

            self.send(("ok", rid, mlflow.get_tracking_uri(), {}))
        except Exception as exc:  # noqa: BLE001
            self.send(("error", rid, _frames.exception_blob(exc), {}))


def _adopt_environment(env: dict[str, str]) -> None:
    """The parent's environment, changed key by key: another sink's thread may be reading credentials from it."""
    for key in [key for key in os.environ if key not in env]:
        os.environ.pop(key, None)
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _follow_tracking_uri(uri: str) -> None:
    """Traces go where MLflow's tracking URI points in the parent (it may have called ``mlflow.set_tracking_uri``)."""
    import mlflow

    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _lower_priority() -> None:
    """Background work: let the application's processes have the CPU first when they want it (this process still
    gets every cycle nobody else wants). Where the OS has no nice values, nothing changes."""
    try:
        os.nice(NICE)
    except (AttributeError, OSError):
        pass


def main(in_fd: int, out_fd: int, parent: int) -> None:
    _lower_priority()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # MLflow's and alembic's chatter; failures reach the parent as replies
    threading.Thread(target=_watch_parent, args=(parent,), name="mltrack-watch-parent", daemon=True).start()
    worker = _Worker(out_fd)
    worker.send(("hello", os.getpid()))
    stream = os.fdopen(in_fd, "rb")
    while True:
        try:
            message = _frames.receive(stream)
        except EOFError:
            break  # the parent is gone without saying goodbye: what it did not see acknowledged is in its journal
        if not worker.handle(message):
            break
    sys.stdout.flush()
    os._exit(0)
