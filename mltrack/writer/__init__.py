"""The writer: the only part of mltrack that talks to MLflow, from background threads.

``submit(op)`` (the entry points' only call) appends to an in-memory queue; ``flush`` waits for the writes;
``status()`` / ``get_writer().pending()`` say what waits. At interpreter exit, and on SIGTERM, what waits is
written within ``EXIT_TIMEOUT_S`` or left in the on-disk journal for the next process (see docs/durability.md).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

from mltrack.writer import worker
from mltrack.writer.mlflow_writer import MlflowWriter

EXIT_TIMEOUT_S = 30.0
"""At normal interpreter exit: how long to keep writing what waits (it is in the journal already) before leaving."""
SIGTERM_TIMEOUT_S = 5.0
"""On SIGTERM: the same, shorter (an orchestrator's SIGKILL may follow; the journal has everything by then)."""

_writer: MlflowWriter | None = None
_lock = threading.Lock()
_journal_dir_override: str | None = None  # tests only
_MAIN_THREAD_ID = threading.main_thread().ident
_exit_registered = False
_signal_state = "unset"  # "unset" | "wanted" (writer started off the main thread) | "installed" | "declined"
_previous_sigterm: Any = None
_in_sigterm = False


def get_writer() -> MlflowWriter:
    """The process-wide writer, created on first use (with the settings then in force)."""
    global _writer
    writer = _writer
    if writer is None:
        with _lock:
            if _writer is None:
                from mltrack.config import get_settings

                settings = get_settings()
                _writer = MlflowWriter(max_queue=settings.writer_queue_size,
                                       flush_interval=settings.writer_flush_interval,
                                       journal_dir=_journal_dir_override or settings.journal_dir,
                                       on_start=_writer_started, use_process=settings.writer_process)
                _register_exit()
            writer = _writer
    return writer


def submit(op: Any) -> None:
    (_writer or get_writer()).submit(op)
    if _signal_state == "wanted" and threading.get_ident() == _MAIN_THREAD_ID:
        _install_sigterm()


def flush(timeout: float | None = None) -> bool:
    """Block until every record handed to mltrack so far is written; True when all were.

    False when ``timeout`` passed first, or when the store is unreachable (what waits is then in the local
    journal and is written when the store is back, by this process or the next one)."""
    writer = _writer
    return True if writer is None else writer.flush(timeout)


def status() -> dict[str, Any]:
    """What the writer is doing: ``pending`` (records not written yet), ``in_memory``, ``journaled``,
    ``written``, ``dropped``, ``journal_dir`` and ``unreachable`` (store URI -> since when, last error)."""
    writer = _writer
    if writer is None:
        return {"running": False, "pending": 0, "in_memory": 0, "journaled": 0, "written": 0, "dropped": 0,
                "journal_dir": None, "unreachable": {}}
    return writer.status()


# exit, SIGTERM, fork ------------------------------------------------------------------------------------
def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        atexit.register(_at_exit)
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.parent_process() is not None:
        # A forked multiprocessing child leaves through os._exit, skipping atexit; its finalizers still run.
        from multiprocessing import util

        util.Finalize(None, _at_exit, exitpriority=0)


def _at_exit() -> None:
    writer = _writer
    if writer is not None:
        writer.close(EXIT_TIMEOUT_S, end_status="FINISHED")
    worker.stop()


def _writer_started() -> None:
    """Called once per writer start: install the SIGTERM handler, from the main thread only."""
    global _signal_state
    if _signal_state in ("installed", "declined"):
        return
    if threading.get_ident() == _MAIN_THREAD_ID:
        _install_sigterm()
    else:
        _signal_state = "wanted"  # the next submit from the main thread installs it


def _install_sigterm() -> None:
    global _signal_state, _previous_sigterm
    _signal_state = "declined"
    try:
        import signal

        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_IGN or previous is None:
            return  # the application ignores SIGTERM, or handles it outside Python: leave it alone
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # not the main thread / interpreter, or no SIGTERM here
        return
    _previous_sigterm = previous
    _signal_state = "installed"


def _on_sigterm(signum: int, frame: Any) -> Any:
    """Write (or journal) what waits, then do what would have happened without mltrack."""
    global _in_sigterm
    import signal

    previous = _previous_sigterm
    if not _in_sigterm:
        _in_sigterm = True
        try:
            writer = _writer
            if writer is not None:
                # Dying by the default action: end the runs we opened as KILLED. An application handler decides
                # itself whether the process ends (if it exits normally, atexit ends open runs as FINISHED).
                writer.close(SIGTERM_TIMEOUT_S, end_status=None if callable(previous) else "KILLED")
            if not callable(previous):
                worker.stop(1.0)
        except BaseException:  # noqa: BLE001 - nothing may stop the signal's normal course
            pass
        finally:
            _in_sigterm = False
    if callable(previous):
        return previous(signum, frame)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    return None


def _after_fork_in_child() -> None:
    global _writer, _lock, _MAIN_THREAD_ID
    _lock = threading.Lock()
    _MAIN_THREAD_ID = threading.main_thread().ident
    writer, _writer = _writer, None
    if writer is not None:
        writer.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _reset_for_tests(journal_dir: str | None = None) -> None:
    """Stop the current writer (its pending records are dropped) and make the next one use ``journal_dir``."""
    global _writer, _journal_dir_override
    with _lock:
        writer, _writer = _writer, None
        _journal_dir_override = journal_dir
    if writer is not None:
        writer.shutdown()
