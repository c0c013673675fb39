"""The writer process, seen from here: starting it, talking to it, and :class:`RemoteSink`, a sink that lives there.

Why a process: MLflow's client is Python (SQLAlchemy, HTTP, protobuf) and holds the GIL for milliseconds per
batch; in a thread of the application that lands on the application's own calls (every socket read waits for
the GIL). In a process of its own it costs the application nothing. This process keeps the queue, the journal
and the running totals; the writer process only writes what it is sent and says what was written.

One writer process serves every store; it is started on the first write and ends with this process (its pipe
closes, or it sees its parent gone). When it cannot be started (no usable ``sys.executable``, a sandbox that
forbids processes), or ``writer_process`` is false, the sinks run in a thread here as before.
"""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from mltrack.writer import _frames
from mltrack.writer._pace import pace
from mltrack.writer.sink import Outage, Skip, StoreState

HELLO_TIMEOUT_S = 20.0  # a writer process that has not said hello by then is not coming
STOP_TIMEOUT_S = 5.0  # at exit: how long the writer process may take to flush MLflow's trace export
PICKLE_SLICE = 50  # records pickled at a time

_BOOT = ("import sys; sys.path[:0] = {path!r}; "
         "from mltrack.writer._worker_main import main; main({rfd}, {wfd}, {parent})")


class WorkerGone(Exception):
    """The writer process ended (or could not start) while a request waited for it."""


class _Reply:
    __slots__ = ("generation", "done", "kind", "value", "extras")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.done = threading.Event()
        self.kind = "gone"
        self.value: Any = None
        self.extras: dict[str, Any] = {}


class Link:
    """One writer process: requests from any thread, replies matched by id, events routed to their sink."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # starting, sending, the tables below
        self._process: subprocess.Popen | None = None
        self._out = -1
        self._generation = 0
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Reply] = {}
        self._sinks: dict[int, RemoteSink] = {}
        self._env_sent: dict[str, str] | None = None
        self.failed_start: str | None = None

    # process --------------------------------------------------------------------------------------------
    def ensure(self) -> int:
        """The generation of a running writer process (starting one if needed). Raises WorkerGone."""
        with self._lock:
            if self._process is not None and self._process.poll() is None and self._out >= 0:
                return self._generation
            self._start_locked()
            return self._generation

    def _start_locked(self) -> None:
        self._close_locked()
        name = os.path.basename(sys.executable or "").lower()
        if "python" not in name and "pypy" not in name:  # embedded (uWSGI...): not an interpreter to run -c with
            raise WorkerGone(f"cannot start the writer process: sys.executable is {sys.executable!r}, not Python")
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        code = _BOOT.format(path=[p for p in sys.path if isinstance(p, str)], rfd=to_child, wfd=from_child,
                            parent=os.getpid())
        try:
            process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(to_child, from_child),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True,
                                       start_new_session=True)  # a terminal's Ctrl-C must not stop the writing
        except (OSError, ValueError) as exc:
            for fd in (to_child, from_parent, to_parent, from_child):
                os.close(fd)
            raise WorkerGone(f"cannot start the writer process: {exc}") from exc
        os.close(to_child)
        os.close(from_child)
        stream = os.fdopen(to_parent, "rb")
        hello: list[Any] = []
        said = threading.Event()
        self._generation += 1
        generation = self._generation
        threading.Thread(target=self._read_loop, args=(stream, generation, hello, said), name="mltrack-writer-link",
                         daemon=True).start()
        if not said.wait(HELLO_TIMEOUT_S) or not hello:
            os.close(from_parent)
            _kill(process)
            raise WorkerGone(f"the writer process ({sys.executable}) did not start")
        self._process, self._out = process, from_parent
        self._env_sent = None

    def _read_loop(self, stream: Any, generation: int, hello: list[Any], said: threading.Event) -> None:
        try:
            message = _frames.receive(stream)
            if message[0] == "hello":
                hello.append(message[1])
            said.set()
            while True:
                message = _frames.receive(stream)
                kind = message[0]
                if kind in ("ok", "outage", "error"):
                    reply = self._waiting.pop(message[1], None)
                    if reply is not None:
                        reply.kind, reply.value, reply.extras = kind, message[2], message[3] or {}
                        reply.done.set()
                else:
                    sink = self._sinks.get(message[1])
                    if sink is not None:
                        sink.event(kind, message[2:])
        except Exception:  # noqa: BLE001 - EOF, a broken pipe or garbage on it: the process is lost
            pass
        finally:
            said.set()
            stream.close()
            with self._lock:
                if generation == self._generation:
                    self._close_locked()
                waiting = [reply for reply in self._waiting.values() if reply.generation <= generation]
                for rid in [rid for rid, reply in self._waiting.items() if reply.generation <= generation]:
                    del self._waiting[rid]
            for reply in waiting:
                reply.done.set()  # kind "gone"

    def _close_locked(self) -> None:
        if self._out >= 0:
            try:
                os.close(self._out)
            except OSError:
                pass
            self._out = -1
        self._process = None

    # requests -------------------------------------------------------------------------------------------
    def send(self, message: tuple) -> None:
        with self._lock:
            if self._out < 0:
                raise WorkerGone("the writer process is not running")
            try:
                _frames.send(self._out, message)
            except OSError as exc:
                raise WorkerGone(f"the writer process is gone ({exc})") from exc

    def request(self, build: Any, meanwhile: Callable[[threading.Event], None] | None = None) -> _Reply:
        """Send ``build(rid)`` and wait for its reply (a reply of kind "gone" if the process ended meanwhile).
        ``meanwhile(done)`` runs once the request is sent: work for this thread while the writer process works."""
        rid = next(self._ids)
        reply = _Reply(self._generation)
        self._waiting[rid] = reply
        try:
            self.send(build(rid))
        except WorkerGone:
            self._waiting.pop(rid, None)
            raise
        if meanwhile is not None:
            try:
                meanwhile(reply.done)
            except Exception:  # noqa: BLE001 - work done ahead is an optimization; the reply is what counts
                pass
        reply.done.wait()
        return reply

    def env_change(self) -> dict[str, str] | None:
        """This process's environment when it changed since last sent (MLflow reads credentials from it)."""
        env = dict(os.environ)
        if env == self._env_sent:
            return None
        self._env_sent = env
        return env

    def register(self, sid: int, sink: "RemoteSink", uri: str) -> None:
        self._sinks[sid] = sink
        self.send(("open", sid, uri))

    def unregister(self, sid: int) -> None:
        self._sinks.pop(sid, None)
        try:
            self.send(("drop", sid))
        except WorkerGone:
            pass

    def default_uri(self) -> str:
        self.ensure()
        reply = self.request(lambda rid: ("uri", rid))
        if reply.kind != "ok":
            raise WorkerGone("the writer process could not tell MLflow's tracking URI")
        return reply.value

    def flush_traces(self, timeout: float | None) -> bool:
        try:
            reply = self.request(lambda rid: ("exports", rid, timeout))
        except WorkerGone:
            return False
        return reply.kind == "ok" and bool(reply.value)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Let the writer process flush MLflow's trace export and leave; end it after ``timeout``.

        Called at exit and from the SIGTERM handler, which may have interrupted this very thread while it held
        the lock (starting the process, sending a batch): then the process is ended without a goodbye."""
        if not self._lock.acquire(timeout=timeout):
            process = self._process
            if process is not None:
                _kill(process)
            return
        try:
            process, out = self._process, self._out
            if process is None:
                return
            try:
                _frames.send(out, ("exit", max(0.0, timeout - 0.5)))
            except OSError:
                pass
            self._close_locked()
        finally:
            self._lock.release()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill(process)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's writer process is not ours (close our copies of its pipe)."""
        self._lock = threading.Lock()
        if self._out >= 0:
            try:
                os.close(self._out)
            except OSError:
                pass
        self._out, self._process = -1, None
        self._waiting.clear()
        self._sinks.clear()


def _kill(process: subprocess.Popen) -> None:
    try:
        process.kill()
        process.wait(2.0)
    except Exception:  # noqa: BLE001
        pass


class RemoteSink(StoreState):
    """The writer's view of one store whose MLflow client lives in the writer process (see :class:`Sink`)."""

    _ids = itertools.count(1)

    def __init__(self, link: Link, uri: str, *, on_run_id: Any = None, on_skip: Any = None) -> None:
        super().__init__(uri)
        self._link = link
        self._on_run_id = on_run_id or (lambda key, run_id: None)
        self._on_skip = on_skip or (lambda skip: None)
        self._sid = next(RemoteSink._ids)
        self._generation = 0  # the writer process generation this sink is open in
        self._unsent: dict[str, str] = {}  # run ids learned here (adopted journals) the writer process lacks

    def remember(self, key: str, run_id: str) -> None:
        super().remember(key, run_id)
        self._unsent[key] = run_id

    def event(self, kind: str, args: tuple) -> None:
        """From the link's reader thread: something the writer process says while it works."""
        if kind == "progress":
            self.last_progress = time.monotonic()
        elif kind == "run_id":
            key, run_id = args
            if run_id is not None:
                StoreState.remember(self, key, run_id)
            self._on_run_id(key, run_id)

    # the MLflow calls, over there ---------------------------------------------------------------------
    def _open(self) -> None:
        try:
            generation = self._link.ensure()
            if generation != self._generation:
                self._link.register(self._sid, self, self.uri)
                self._generation = generation
                self._unsent = dict(self._run_ids)  # a new writer process knows nothing yet
        except WorkerGone as exc:
            raise Outage(exc) from exc

    def _call(self, method: str, args: tuple, meanwhile: Callable[[threading.Event], None] | None = None) -> Any:
        self._open()
        sid = self._sid
        if self._unsent:
            unsent, self._unsent = self._unsent, {}
            self._call_once("remember_all", (unsent,), sid)
        return self._call_once(method, args, sid, meanwhile)

    def _call_once(self, method: str, args: tuple, sid: int,
                   meanwhile: Callable[[threading.Event], None] | None = None) -> Any:
        try:
            reply = self._link.request(lambda rid: ("call", rid, sid, method, args), meanwhile)
        except WorkerGone as exc:
            raise Outage(exc) from exc
        if reply.extras.get("spans"):
            self.spans_written = True
        for what, blob in reply.extras.get("skips") or ():
            self._on_skip(Skip(what, _frames.exception_from(blob)))
        if reply.kind == "ok":
            self.last_progress = time.monotonic()
            return reply.value
        if reply.kind == "outage":
            raise Outage(_frames.exception_from(reply.value))
        if reply.kind == "gone":
            raise Outage(WorkerGone("the writer process ended during a write"))
        raise _frames.exception_from(reply.value)

    def client(self) -> None:
        """Make sure the writer process has this store open (imports mlflow there). Raises :class:`Outage`."""
        self._call("client", ())

    def write(self, batch: list[dict[str, Any]], replay: bool,
              meanwhile: Callable[[threading.Event], None] | None = None) -> dict[str, str]:
        """:meth:`Sink.write`, in the writer process; ``meanwhile(done)`` runs here while it writes (the sender
        prepares its next batch). Raises :class:`Outage`."""
        mlflow = sys.modules.get("mlflow")
        traces_uri = mlflow.get_tracking_uri() if mlflow is not None else None
        ids = self._call("write", (_pickled(batch), replay, self._link.env_change(), traces_uri), meanwhile)
        for key, run_id in ids.items():
            StoreState.remember(self, key, run_id)
        return ids

    def flush_traces(self, timeout: float | None) -> bool:
        return self._link.flush_traces(timeout)

    def close(self) -> None:
        self._link.unregister(self._sid)


def _pickled(batch: list[dict[str, Any]]) -> list[bytes]:
    """The batch pickled in slices, paced: one pickle of thousands of records would hold the GIL for ms."""
    out = []
    for start in range(0, len(batch), PICKLE_SLICE):
        out.append(pickle.dumps(batch[start:start + PICKLE_SLICE], protocol=pickle.HIGHEST_PROTOCOL))
        pace()
    return out


_link: Link | None = None
_link_lock = threading.Lock()


def link() -> Link:
    """This process's writer process link (the process itself starts on the first write)."""
    global _link
    with _link_lock:
        if _link is None:
            _link = Link()
        return _link


def stop(timeout: float = STOP_TIMEOUT_S) -> None:
    current = _link
    if current is not None:
        current.stop(timeout)


def _after_fork_in_child() -> None:
    global _link_lock
    _link_lock = threading.Lock()
    if _link is not None:
        _link.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
