"""The writer: the only part of mltrack that talks to MLflow, from a background thread."""

from __future__ import annotations

import atexit
import threading
from typing import Any

from mltrack.writer.mlflow_writer import MlflowWriter

_writer: MlflowWriter | None = None
_lock = threading.Lock()
_EXIT_TIMEOUT_S = 10.0


def get_writer() -> MlflowWriter:
    """The process-wide writer, created on first use (with the queue size and interval then configured)."""
    global _writer
    writer = _writer
    if writer is None:
        with _lock:
            if _writer is None:
                from mltrack.config import get_settings

                settings = get_settings()
                _writer = MlflowWriter(max_queue=settings.writer_queue_size,
                                       flush_interval=settings.writer_flush_interval)
                atexit.register(_at_exit)
            writer = _writer
    return writer


def submit(op: Any) -> None:
    get_writer().submit(op)


def flush(timeout: float | None = None) -> bool:
    """Block until every record handed to mltrack so far is written; True when all were."""
    writer = _writer
    return True if writer is None else writer.flush(timeout)


def _at_exit() -> None:
    writer = _writer
    if writer is not None:
        writer.end_open_runs()
        writer.flush(_EXIT_TIMEOUT_S)
