"""The one writer of a journal folder: reads what producers appended and writes it to MLflow, in order.

It runs in a helper process shared by every process of the user on this host (``python -m
mltrack.writer._daemon``), or, where no helper can be started, in a thread of the application (same code).
Segments of live producers come first; what dead processes left is written after them, a little per round, and
only while its store answers. A store that fails is retried with backoff; its state goes to ``status.json``,
where producers read it (they warn, and stop waiting for it).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from mltrack.writer import journal
from mltrack.writer.journal import Folder
from mltrack.writer.records import loads
from mltrack.writer.sink import Outage, Sink, Skip

READ_BYTES = 1 << 18  # what one round reads of a live segment: 256 KiB (~190 calls) keeps the writer ~6 MiB smaller than 1 MiB did, at the same rows/s; 128 KiB lost 10 % (bench_server.py, docs/performance.md)
LEFTOVER_BYTES = 64 << 10  # ... and of a dead process's segment: leftovers never hold up live producers
BACKOFF_MAX_S = 30.0
MIN_RETRY_GAP_S = 0.5  # a producer's flush brings a retry forward, but not closer than this to the last one
BUSY_WAIT_S = 0.02
IDLE_WAIT_S = 0.25


class _Store:
    """What the server knows of one store: its sink, and whether it answers."""

    def __init__(self, uri: str, cwd: str | None) -> None:
        self.uri = uri
        self.cwd = cwd
        self.sink: Sink | None = None
        self.down_since = 0.0
        self.error = ""
        self.backoff = 0.0
        self.next_try = 0.0
        self.last_try = 0.0
        self.skipped: deque[str] = deque(maxlen=20)  # the latest reasons (status.json; each warned once)
        self.dropped = 0
        self.dropped_why: set[str] = set()
        self.written = 0
        self.tried = 0.0  # wall time of the last attempt to write

    def report(self) -> dict[str, Any]:
        client = None if self.sink is None or self.sink._client is None else ("rest" if self.sink.rest else "mlflow")
        return {"down": bool(self.down_since), "since": self.down_since, "error": self.error, "tried": self.tried,
                "skipped": list(self.skipped), "dropped": self.dropped, "dropped_why": sorted(self.dropped_why), "written": self.written, "client": client}


class Server:
    """Serves one journal folder until stopped (or, as a helper process, until nobody needs it)."""

    def __init__(self, folder: Folder, *, retention_s: float, idle_exit_s: float | None,
                 in_process: bool = False) -> None:
        self.folder = folder
        self.in_process = in_process  # a thread of the application: MLflow's global state is the user's
        self.retention_s = retention_s
        self.idle_exit_s = idle_exit_s
        self.started = time.time()
        self._stores: dict[str, _Store] = {}
        self._offsets: dict[Path, int] = {}  # how far each segment is written (what its .ack says)
        self._replay: dict[Path, bool] = {}  # segments that may have been (partly) written before this server
        self._wake = threading.Event()
        self._sock: socket.socket | None = None
        self._status_text = ""
        self._status_at = 0.0

    # waking ---------------------------------------------------------------------------------------------
    def open_socket(self) -> None:
        if not hasattr(socket, "AF_UNIX"):
            return
        try:
            path = str(self.folder.socket)
            try:
                os.unlink(path)
            except OSError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            os.chmod(path, 0o600)
            sock.setblocking(False)
            self._sock = sock
        except OSError:  # a path too long for a socket: producers' wake-ups are not heard, rounds still run
            self._sock = None

    def wake(self) -> None:
        self._wake.set()

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        woken = False
        if self._sock is None:
            woken = self._wake.wait(seconds)
        else:
            import select

            try:
                ready, _, _ = select.select([self._sock], [], [], seconds)
                if ready:
                    woken = True
                    while True:
                        self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._sock = None
        if self._wake.is_set():
            woken = True
            self._wake.clear()
        if woken:  # someone waits: retry a down store soon
            for store in self._stores.values():
                store.next_try = min(store.next_try, store.last_try + MIN_RETRY_GAP_S)

    # the loop -------------------------------------------------------------------------------------------
    def serve(self, stop: threading.Event) -> None:
        idle_since = time.monotonic()
        while not stop.is_set():
            busy, needed = self.round()
            now = time.monotonic()
            if needed:
                idle_since = now
            elif self.idle_exit_s is not None and now - idle_since > self.idle_exit_s:
                return
            self._wait(BUSY_WAIT_S if busy else IDLE_WAIT_S, stop)

    def round(self) -> tuple[bool, bool]:
        """One pass over every store: returns (did work, someone still needs this server)."""
        busy = False
        needed = self._live_owner_exists()
        alive: dict[str, bool] = {}
        for path, meta in self.folder.store_dirs():
            store = self._store(meta)
            did, pending = self._serve_store(store, path, alive)
            busy |= did
            needed |= pending and not store.down_since  # leftovers are worth staying for only while writable
        self._write_status()
        return busy, needed

    def _live_owner_exists(self) -> bool:
        try:
            return any(journal.is_held(lock) for lock in self.folder.owners.glob("*.lock"))
        except OSError:
            return False

    def _store(self, meta: dict[str, Any]) -> _Store:
        uri = meta["uri"]
        store = self._stores.get(uri)
        if store is None:
            store = self._stores[uri] = _Store(uri, meta.get("cwd"))
        return store

    def _serve_store(self, store: _Store, path: Path, alive: dict[str, bool]) -> tuple[bool, bool]:
        try:
            segments = sorted(path.glob("*.jsonl"))
        except OSError:
            return False, False
        now = time.time()
        live, dead = [], []
        for segment in segments:
            owner = journal.owner_of(segment)
            if owner not in alive:
                alive[owner] = self.folder.owner_alive(owner)
            (live if alive[owner] else dead).append(segment)
        busy = pending = False
        unfinished: set[str] = set()  # owners with an earlier segment not written through: their later ones wait
        for segment in live + dead:
            is_live = segment in live
            owner = journal.owner_of(segment)
            if owner in unfinished:
                pending = True
                continue
            offset = self._offset(segment)
            try:
                stat = segment.stat()
            except OSError:
                continue
            if offset >= stat.st_size:
                if not is_live or self._closed(segment, stat.st_size):
                    self._delete(segment)
                continue
            pending = True
            unfinished.add(owner)
            if not is_live and now - stat.st_mtime > self.retention_s:
                self._drop(store, segment,
                           "older than the retention period (journal_retention_days); their store never answered")
                continue
            if store.down_since and time.monotonic() < store.next_try:
                continue
            lines, end = journal.read_lines(segment, offset, READ_BYTES if is_live else LEFTOVER_BYTES)
            if not lines:
                if not is_live and stat.st_size - offset < LEFTOVER_BYTES:  # a last line cut short by its dying writer
                    store.dropped += 1
                    store.dropped_why.add("a line cut short when the process writing it died")
                    self._delete(segment)
                continue
            if not self._write(store, segment, lines, offset, end, replay=self._replay[segment]):
                break  # the store is down: nothing more for it this round
            busy = True
        return busy, pending

    def _offset(self, segment: Path) -> int:
        offset = self._offsets.get(segment)
        if offset is None:
            offset, self._replay[segment] = journal.read_ack(segment)
            self._offsets[segment] = offset
        return offset

    @staticmethod
    def _closed(segment: Path, size: int) -> bool:
        try:
            with open(segment, "rb") as handle:
                handle.seek(max(0, size - len(journal.CLOSED)))
                return handle.read() == journal.CLOSED.encode()
        except OSError:
            return False

    def _write(self, store: _Store, segment: Path, lines: list[bytes], offset: int, end: int, replay: bool) -> bool:
        records = []
        for line in lines:
            if line.strip() == journal.CLOSED.strip().encode():
                continue  # the segment's end marker
            try:
                record = loads(line)
            except ValueError:
                store.skipped.append(f"an unreadable journal line in {segment.name}")
                continue
            if record.get("t") != "z":
                records.append(record)
        store.last_try = time.monotonic()
        store.tried = time.time()
        try:
            sink = self._sink(store)
            if not replay:  # should this server die during the write, the next one knows to replay it
                journal.write_ack(segment, offset, writing=end)
            ids = sink.write(records, replay) if records else {}
            if sink.tracing.written:
                sink.tracing.flush(10.0)
        except Outage as exc:
            self._down(store, exc.cause)
            self._replay[segment] = True  # part of it may be written: the retry looks up what exists
            return False
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop the server: skip these lines
            store.skipped.append(f"writing {len(records)} records failed: {type(exc).__name__}: {exc}")
            ids = {}
        if ids:
            self._append_ids(segment, ids)
        journal.write_ack(segment, end)
        self._offsets[segment] = end
        self._replay[segment] = False
        store.written += len(records)
        if store.down_since:
            store.down_since, store.error, store.backoff = 0.0, "", 0.0
        return True

    @staticmethod
    def _append_ids(segment: Path, ids: dict[str, str]) -> None:
        path = segment.with_suffix(".ids")
        fd = journal.open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, (json.dumps(ids) + "\n").encode("utf-8"))
        finally:
            os.close(fd)

    def _sink(self, store: _Store) -> Sink:
        if store.sink is None:
            store.sink = Sink(store.uri, on_skip=lambda skip: store.skipped.append(str(skip)))
            _open_client(store.sink, None if self.in_process else store.cwd)
        if not self.in_process and not store.sink.rest:
            _point_tracing_at(store.uri)
        return store.sink

    def _down(self, store: _Store, cause: BaseException) -> None:
        now = time.monotonic()
        if not store.down_since:
            store.down_since = time.time()
        store.error = f"{type(cause).__name__}: {cause}"[:500]
        store.backoff = min(BACKOFF_MAX_S, max(MIN_RETRY_GAP_S, store.backoff * 2))
        store.next_try = now + store.backoff
        if store.sink is not None and store.sink._client is None:
            store.sink = None  # could not even be opened: open it afresh next time

    def _drop(self, store: _Store, segment: Path, why: str) -> None:
        offset = self._offset(segment)
        lines, _ = journal.read_lines(segment, offset, None)
        store.dropped += sum(1 for line in lines if line.strip() and line.strip() != journal.CLOSED.strip().encode())
        store.dropped_why.add(why)
        self._delete(segment)

    def _delete(self, segment: Path) -> None:
        for path in (segment, journal.ack_path(segment), segment.with_suffix(".ids")):
            try:
                os.unlink(path)
            except OSError:
                pass
        self._offsets.pop(segment, None)
        self._replay.pop(segment, None)

    def _write_status(self) -> None:
        stores = {uri: store.report() for uri, store in self._stores.items()}
        text = json.dumps({"pid": os.getpid(), "stores": stores, "mlflow_imported": "mlflow" in sys.modules},
                          sort_keys=True)
        now = time.monotonic()
        if text != self._status_text or now - self._status_at > 1.0:
            try:
                journal.write_atomic(self.folder.status, text)
                self._status_text, self._status_at = text, now
            except OSError:
                pass


def _open_client(sink: Sink, cwd: str | None) -> None:
    """Open the store now (MLflow opens it lazily), from the working directory its URI was resolved in: a local
    store's default artifact folder is relative to it. A new SQLite file is created under a file lock next to it,
    so that processes of other users (other servers) never run its schema migrations at the same time."""
    lock = None
    path = _sqlite_path(sink.uri)
    if path is not None:
        try:
            lock_path = Path(path + ".mltrack-lock")
            deadline = time.monotonic() + 60
            while (lock := journal.Lock.try_take(lock_path)) is None and time.monotonic() < deadline:
                time.sleep(0.05)
        except OSError:
            lock = None
    here = os.getcwd()
    try:
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        client = sink.client()
        if not sink.rest:
            client._tracking_client.store  # noqa: B018 - opens the store (creates it, runs migrations)
    except Outage:
        raise
    except Exception as exc:  # noqa: BLE001
        sink._client = None
        raise Outage(exc) from exc
    finally:
        os.chdir(here)
        if lock is not None:
            lock.release()


def _sqlite_path(uri: str) -> str | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):]
    return None if path in ("", ":memory:") else path


_traced_uri: str | None = None


def _point_tracing_at(uri: str) -> None:
    """MLflow writes trace spans to its own tracking URI: make it the store being written."""
    global _traced_uri
    if _traced_uri != uri:
        import mlflow

        if mlflow.get_tracking_uri() != uri:
            mlflow.set_tracking_uri(uri)
        _traced_uri = uri


__all__ = ["Server", "Skip"]
