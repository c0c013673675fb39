"""Making sure a writer serves the journal folder: the shared helper process, or a thread of this process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mltrack.writer import journal
from mltrack.writer.journal import Folder
from mltrack.writer._quiet import logger

SERVER_CHECK_S = 1.0  # while records wait, how often to check that a server holds the journal folder
SERVER_START_GRACE_S = 15.0  # a started helper that has not taken the folder by then has failed


class ServerKeeper:
    """One per producer: starts the writer for its journal folder when none holds it, and wakes it up."""

    def __init__(self, folder: Folder | None, *, use_process: bool, retention_s: float) -> None:
        self.folder = folder
        self._use_process = use_process
        self._retention_s = retention_s
        self._checked = 0.0
        self._started: tuple[float, subprocess.Popen | None] | None = None
        self._in_process: threading.Thread | None = None
        self._poke: Any = None
        self._stop = threading.Event()

    @property
    def kind(self) -> str:
        return "thread" if self._in_process is not None else "process"

    def served_by_another_process(self) -> bool:
        """Does a writer outside this process hold the journal folder (so it writes what this process leaves)?"""
        folder = self.folder
        try:
            return folder is not None and self._in_process is None and journal.is_held(folder.server_lock)
        except OSError:
            return False

    def stop(self) -> None:
        self._stop.set()

    def notify(self, force: bool = False) -> None:
        if self.folder is None:
            return
        now = time.monotonic()
        if force or now - self._checked > SERVER_CHECK_S:
            self._checked = now
            self.ensure()
        if self._poke is not None:
            self._poke()
        else:
            poke(self.folder.socket)

    def ensure(self) -> None:
        """Make sure a server holds the journal folder: start the shared helper process, or serve from a thread
        of this process where no helper can run (Windows without a usable interpreter, uWSGI, ``writer_process:
        false``, any failure to start one). Never raises."""
        folder = self.folder
        if folder is None or self._in_process is not None:
            return
        try:
            if journal.is_held(folder.server_lock):
                self._started = None
                return
            now = time.monotonic()
            started = self._started
            if started is not None:
                at, process = started
                if now - at < SERVER_START_GRACE_S and (process is None or process.poll() is None):
                    return  # being started (by us or another process): it is importing
                if process is not None:
                    if process.poll() is None:
                        process.kill()
                    self._serve_in_process(f"the writer process did not take the journal folder {folder.root}")
                    return
            if not self._use_process:
                self._serve_in_process(None)
                return
            self._started = (now, _start_helper(folder, self._retention_s))
        except Exception as exc:  # noqa: BLE001 - whatever fails here, this process writes itself
            self._serve_in_process(f"cannot start the writer process ({type(exc).__name__}: {exc})")

    def _serve_in_process(self, why: str | None) -> None:
        if why:
            logger.info("mltrack: %s; writing from a thread of this process instead", why)
        folder = self.folder
        if folder is None or self._in_process is not None:
            return
        lock = journal.Lock.try_take(folder.server_lock)
        if lock is None:
            return  # a server appeared meanwhile
        from mltrack.writer.server import Server

        server = Server(folder, retention_s=self._retention_s, idle_exit_s=None, in_process=True)

        def run() -> None:
            try:
                server.serve(self._stop)
            finally:
                lock.release()

        thread = threading.Thread(target=run, name="mltrack-writer", daemon=True)
        thread.start()
        self._in_process = thread
        self._poke = server.wake


_helpers: list[subprocess.Popen] = []

# The helper process loads the writer's own modules only: the packages' ``__init__`` (the public API, config files,
# auto-instrumentation) never run there. That keeps the helper ~8 MiB smaller (benchmarks/bench_server.py measures
# the process tree), and it must not instrument anything of its own anyway.
_BOOT = """import sys, types
for name, path in (("mltrack", sys.argv[1]), ("mltrack.writer", sys.argv[2])):
    sys.modules[name] = types.ModuleType(name)
    sys.modules[name].__path__ = [path]
sys.modules["mltrack"].writer = sys.modules["mltrack.writer"]
from mltrack.writer._daemon import main
sys.exit(main(sys.argv[3:]))
"""


def poke(path: Path) -> None:
    """Wake the server (a datagram on its socket); harmless when none listens."""
    if not hasattr(__import__("socket"), "AF_UNIX"):
        return
    import socket

    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.sendto(b"w", str(path))
        finally:
            sock.close()
    except OSError:
        pass


def _start_helper(folder: Folder, retention_s: float) -> subprocess.Popen | None:
    """Start the shared writer process for ``folder`` (unless another producer is starting one right now)."""
    name = os.path.basename(sys.executable or "").lower()
    if "python" not in name and "pypy" not in name:  # an embedded interpreter (uWSGI...): nothing to run
        raise RuntimeError(f"sys.executable is {sys.executable!r}, not a Python interpreter")
    starting = folder.root / "server.starting"
    try:
        fd = journal.open_private(starting, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.close(fd)
    except FileExistsError:
        try:
            if time.time() - starting.stat().st_mtime < SERVER_START_GRACE_S:
                return None  # another producer is starting it
            os.unlink(starting)
        except OSError:
            pass
        return None
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    log = journal.open_private(folder.root / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    kwargs: dict[str, Any] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True  # a terminal's Ctrl-C must not stop the writing
    else:  # pragma: no cover - Windows
        kwargs["creationflags"] = getattr(subprocess, "DETACHED_PROCESS", 0) | getattr(
            subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    try:
        package = Path(__file__).resolve().parents[1]
        process = subprocess.Popen([sys.executable, "-c", _BOOT, str(package), str(package / "writer"),
                                    str(folder.root), str(retention_s)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=log, close_fds=True, env=env, cwd=str(folder.root), **kwargs)
        _helpers.append(process)  # it outlives producers (and may outlive this process): never collected here
        return process
    except BaseException:
        try:
            os.unlink(starting)
        except OSError:
            pass
        raise
    finally:
        os.close(log)
