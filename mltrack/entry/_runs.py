"""Which run a call belongs to (contextvars, not MLflow's global active run), and opening/closing runs."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any, Mapping

from mltrack import writer
from mltrack.run_state import RunHandle
from mltrack.writer import stores
from mltrack.writer.ops import EndRun, StartRun

_current: ContextVar[RunHandle | None] = ContextVar("mltrack_current_run", default=None)
_external: dict[str, RunHandle] = {}
_external_lock = threading.Lock()
_MAX_TAG_VALUE = 5000
_forked: dict[str, RunHandle] = {}  # a run this process inherited through fork -> this process's run under it
_forked_lock = threading.Lock()


def current_run() -> RunHandle | None:
    """The innermost mltrack run of this context, else MLflow's active run (only if mlflow is already imported)."""
    handle = _current.get()
    if handle is not None:
        return for_this_process(handle)
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and not getattr(mlflow.__spec__, "_initializing", False):  # not while being imported
        active = mlflow.active_run()
        if active is not None:
            return for_this_process(external_run(active.info.run_id, mlflow.get_tracking_uri()))
    return None


def for_this_process(handle: RunHandle) -> RunHandle:
    """``handle``, or in a forked child that inherited it, the child's own run nested under it (one per child
    process, started at the first call): a child never writes into its parent's steps and totals."""
    if handle.pid == os.getpid():
        return handle
    child = _forked.get(handle.key)
    if child is None:
        with _forked_lock:
            child = _forked.get(handle.key)
            if child is None:
                child = RunHandle(f"{handle.name or 'run'}-pid{os.getpid()}", parent=handle,
                                  tracking_uri=handle.tracking_uri, kind="fork",
                                  tags={k: v for k, v in handle.tags.items() if not k.startswith("mltrack.")})
                writer.submit(StartRun(child, {}))
                _forked[handle.key] = child
    return child


def _after_fork_in_child() -> None:
    global _forked_lock, _external_lock
    _forked.clear()
    _forked_lock = threading.Lock()
    _external_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def external_run(run_id: str, tracking_uri: str | None = None) -> RunHandle:
    """A handle for a run mltrack did not open (the user's ``mlflow.start_run`` or an explicit ``run_id``)."""
    with _external_lock:
        handle = _external.get(run_id)
        if handle is None:
            handle = _external[run_id] = RunHandle(None, run_id=run_id, owned=False,
                                                   tracking_uri=stores.resolve(tracking_uri))
        return handle


def open_run(name: str, settings: Any, *, tags: Mapping[str, Any] | None = None, experiment: str | None = None,
             params: Mapping[str, str] | None = None, kind: str = "function") -> RunHandle:
    """Start a run (nested under the current one) in the background writer; returns its handle at once."""
    parent = current_run()
    handle = RunHandle(
        name,
        parent=parent,
        experiment=experiment or (None if parent is not None else settings.experiment_name),
        tags={**{k: str(v) for k, v in (settings.tags or {}).items()}, **{k: str(v) for k, v in (tags or {}).items()}},
        tracking_uri=stores.resolve(settings.tracking_uri) if parent is None else parent.tracking_uri,
        kind=kind,
    )
    if settings.judges.get("enabled"):
        from mltrack.judges._runner import attach

        attach(handle, settings, kind)  # sampled now; keeps what the judges read at the run's end
    writer.submit(StartRun(handle, dict(params or {})))
    return handle


def close_run(handle: RunHandle, error: BaseException | None, execution_time_s: float | None) -> None:
    """End a run mltrack opened: FINISHED, or FAILED with ``mltrack.error.*`` tags when an exception left it."""
    tags: dict[str, str] = {}
    failed = error is not None and not isinstance(error, GeneratorExit)
    if failed:
        tags = {"mltrack.error.type": type(error).__name__, "mltrack.error.message": str(error)[:_MAX_TAG_VALUE]}
    metrics = {"execution_time_seconds": execution_time_s} if execution_time_s is not None else {}
    writer.submit(EndRun(handle, "FAILED" if failed else "FINISHED", time.time(), metrics, tags))
    if handle.judging is not None:  # judges on and this run sampled: judged in the background
        from mltrack.judges._runner import schedule

        schedule(handle)


def activate(handle: RunHandle) -> Any:
    return _current.set(handle)


def deactivate(token: Any) -> None:
    _current.reset(token)
