"""The writer: the only part of mltrack that writes to MLflow, and never from the caller's thread.

``submit(op)`` (the entry points' only call) appends to a queue in memory; a thread puts it in this process's
on-disk journal; one server per journal folder (a helper process shared by all of the user's processes, or a
thread here where none can start) writes it to MLflow. ``flush`` waits for what this process handed over;
``status()`` says what waits. At interpreter exit, and on SIGTERM, everything goes to disk first, then the
process waits for it to be written while the store makes progress (see docs/durability.md).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Any

from mltrack.writer.producer import Producer

EXIT_TIMEOUT_S = 30.0
"""At normal interpreter exit: the most to wait for this process's records to be written while the store makes
progress; with no progress for a few seconds (a store that is down or hangs) the process leaves at once."""
SIGTERM_TIMEOUT_S = 5.0
"""On SIGTERM: the same, shorter (an orchestrator's SIGKILL may follow; the journal has everything by then)."""

_producer: Producer | None = None
_lock = threading.Lock()
_journal_dir_override: str | None = None  # tests only
_MAIN_THREAD_ID = threading.main_thread().ident
_exit_registered = False
_signal_state = "unset"  # "unset" | "installed" | "declined"
_previous_sigterm: Any = None
_in_sigterm = False
_closing_at_exit = False  # _at_exit's close is under way
_sigterm_during_exit = False  # a SIGTERM came meanwhile: re-raised once it is done


def get_writer() -> Producer:
    """This process's producer, created on first use (with the settings then in force)."""
    global _producer
    producer = _producer
    if producer is None:
        with _lock:
            if _producer is None:
                from mltrack.config import get_settings

                settings = get_settings()
                _producer = Producer(_journal_folder(_journal_dir_override or settings.journal_dir),
                                     max_queue=settings.writer_queue_size,
                                     interval=min(settings.writer_flush_interval, 1.0),
                                     use_process=settings.writer_process,
                                     retention_s=settings.journal_retention_days * 86400.0)
                _register_exit()
            producer = _producer
    return producer


def _journal_folder(configured: str | None) -> Any:
    """The journal folder: the configured one, else the user cache folder, else a private folder in the temp dir
    (a read-only home); None when no folder can be written at all (records are then not kept)."""
    from mltrack.writer import journal

    candidates = [Path(os.path.expanduser(configured))] if configured else [journal.default_dir()]
    candidates.append(journal.fallback_dir())
    errors = []
    for path in candidates:
        try:
            folder = journal.Folder(path).prepare()
            probe = folder.root / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            return folder
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    from mltrack.writer._quiet import warn_once

    warn_once("journal-unusable", "mltrack: no journal folder can be written (" + "; ".join(errors) + "); records "
              "are not kept, nothing is written to MLflow.")
    return None


def submit(op: Any) -> None:
    (_producer or get_writer()).submit(op)
    if _signal_state == "unset" and threading.get_ident() == _MAIN_THREAD_ID:
        _install_sigterm()


def flush(timeout: float | None = None) -> bool:
    """Block until every record handed to mltrack so far is written; True when all were.

    False when ``timeout`` passed first, or when the store does not answer (what waits is then in the local
    journal and is written when the store is back, by this process or the next one). Only this process's records
    are waited for, never what other processes left in the journal."""
    producer = _producer
    return True if producer is None else producer.flush(timeout)


def status() -> dict[str, Any]:
    """What the writer is doing: ``pending`` (records not written yet), ``in_memory``, ``journaled``, ``dropped``,
    ``journal_dir`` and ``unreachable`` (store URI -> since when, last error)."""
    producer = _producer
    if producer is None:
        return {"running": False, "pending": 0, "in_memory": 0, "journaled": 0, "dropped": 0,
                "journal_dir": None, "unreachable": {}}
    return producer.status()


def wait_run_id(handle: Any, timeout: float = 30.0) -> None:
    """Write what waits, so that the server makes the run and hands back its MLflow id."""
    producer = _producer
    if producer is not None:
        producer.wait_run_id(handle, timeout)


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
    global _closing_at_exit
    producer = _producer
    if producer is not None:
        _closing_at_exit = True
        try:
            # A multiprocessing worker's exit belongs to its pool (close/join/terminate wait for it): once its
            # records are on disk, the shared writer writes them; a script's main process waits to see them written.
            mp = sys.modules.get("multiprocessing")
            worker = mp is not None and mp.parent_process() is not None
            producer.close(EXIT_TIMEOUT_S, end_status="FINISHED", wait_written=not worker)
        finally:
            _closing_at_exit = False
    if _sigterm_during_exit:  # deferred by _on_sigterm until everything was on disk: die as the signal asked
        _die_by_sigterm()


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
    """Put what waits on disk and wait briefly for it, then do what would have happened without mltrack.

    A signal handler runs in the main thread, between two bytecodes of whatever it was doing, which may hold a
    lock the writer's code needs: so it takes no lock itself. During the exit's own wait (atexit, or a
    multiprocessing worker's finalizer, which ``Pool.terminate()`` then signals) it only shortens that wait and
    lets it finish; otherwise the closing runs in a thread of its own, waited for at most ``SIGTERM_TIMEOUT_S``."""
    global _in_sigterm, _sigterm_during_exit
    previous = _previous_sigterm
    producer = _producer
    if _closing_at_exit and producer is not None and not callable(previous):
        producer.hurry(SIGTERM_TIMEOUT_S)
        _sigterm_during_exit = True
        return None
    if not _in_sigterm and producer is not None:
        _in_sigterm = True
        try:
            # Dying by the default action: end the runs we opened as KILLED. An application handler decides
            # itself whether the process ends (if it exits normally, atexit ends open runs as FINISHED).
            # Once on disk, what a writer process serves is written after this process is gone: do not wait.
            closing = threading.Thread(target=producer.close, args=(SIGTERM_TIMEOUT_S,),
                                       kwargs={"end_status": None if callable(previous) else "KILLED",
                                               "wait_written": False},
                                       name="mltrack-sigterm", daemon=True)
            closing.start()
            closing.join(SIGTERM_TIMEOUT_S + 1.0)
            if callable(previous):
                producer.closed = False  # the application goes on: so does tracking
        except BaseException:  # noqa: BLE001 - nothing may stop the signal's normal course
            pass
        finally:
            _in_sigterm = False
    if callable(previous):
        return previous(signum, frame)
    _die_by_sigterm()
    return None


def _die_by_sigterm() -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _before_fork() -> None:
    producer = _producer
    if producer is not None:
        producer.before_fork()


def _after_fork_in_parent() -> None:
    producer = _producer
    if producer is not None:
        producer.after_fork_in_parent()


def _after_fork_in_child() -> None:
    global _producer, _lock, _MAIN_THREAD_ID
    _lock = threading.Lock()
    _MAIN_THREAD_ID = threading.main_thread().ident
    producer, _producer = _producer, None  # the inherited SIGTERM handler serves the child's own producer
    if producer is not None:
        producer.forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def _reset_for_tests(journal_dir: str | None = None) -> None:
    """Forget the current producer (its pending records stay in its journal) and make the next one use
    ``journal_dir``."""
    global _producer, _journal_dir_override
    with _lock:
        producer, _producer = _producer, None
        _journal_dir_override = journal_dir
    if producer is not None:
        producer.close(0.0, end_status=None)
        if producer._owner_lock is not None:
            producer._owner_lock.release(remove=True)
