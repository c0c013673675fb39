"""The shared writer process: ``main([JOURNAL_DIR, RETENTION_S])``, started by ``launch.py`` (``python -c``, without the
packages' ``__init__``; ``python -m mltrack.writer._daemon JOURNAL_DIR RETENTION_S`` runs it too).

Started by the first producer that finds no server for its journal folder; serves it while any producer lives
(or while leftovers can be written), then exits. It takes the server lock before importing anything heavy, so a
second one started in a race leaves at once.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

IDLE_EXIT_S = 10.0
"""No live producer and nothing writable for this long: the process exits (the next producer starts another)."""


def main(argv: list[str]) -> int:
    from mltrack.writer import journal

    folder = journal.Folder(Path(argv[0])).prepare()
    lock = journal.Lock.try_take(folder.server_lock)
    if lock is None:
        return 0  # another server has this folder
    try:
        os.unlink(folder.root / "server.starting")
    except OSError:
        pass
    _yield_cpu()
    # mltrack retries a store itself (with backoff, between rounds): MLflow's own retries would hold a round for
    # minutes. Spans are exported at once, so that a record acked is a record whose trace is written too.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    os.environ.pop("MLTRACK_STRICT", None)  # a bug here is a skipped record in status.json, not a dead server
    from mltrack.writer.server import Server

    server = Server(folder, retention_s=float(argv[1]), idle_exit_s=IDLE_EXIT_S)
    server.open_socket()
    try:
        server.serve(threading.Event())
    finally:
        lock.release()
    return 0


def _yield_cpu() -> None:
    """Let the applications have the CPU first: this process writes in the background. It runs in a session of its
    own, which Linux schedules as a group of its own (autogroup) weighed against the application's group, so its
    own nice value alone would not rank it below them: lower the group's too."""
    if os.environ.get("_MLTRACK_BENCH_WRITER_NOT_NICE"):  # benchmarks/bench_pool.py measures both (internal)
        return
    try:
        os.nice(19)
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/self/autogroup", "w", encoding="ascii") as handle:
            handle.write("19")
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
