"""The application's half of the writer: operations go to a queue in memory, a thread appends them to this
process's journal segments (one per store), and the journal folder's server writes them to MLflow.

The caller's thread only appends to a deque. The journal thread prices what waits to be priced, encodes records
(:mod:`mltrack.writer.records`) and appends them, so that everything handed over is on local disk within
``writer_flush_interval``. ``flush`` waits until the server has written (acked) what this process appended
before it was called — never for other processes' leftovers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from mltrack import _safety
from mltrack.writer import journal
from mltrack.writer import stores as stores_mod
from mltrack.writer.journal import Folder, Segment
from mltrack.writer.launch import ServerKeeper
from mltrack.writer.ops import Barrier, EndRun, StartRun
from mltrack.writer.records import dumps, encode
from mltrack.writer._quiet import warn_once

NO_PROGRESS_AT_EXIT_S = 4.0
ROOM_GIVE_UP_S = 10.0  # a caller at the memory bound waits this long for the journal thread before dropping  # at exit, with nothing acked for this long, leave (the journal keeps the rest)


class Producer:
    """One per process (a new one after a fork): the queue, the journal thread, and this process's segments."""

    def __init__(self, folder: Folder | None, *, max_queue: int, interval: float, use_process: bool,
                 retention_s: float) -> None:
        self.folder = folder
        self._max_queue = max(1000, int(max_queue))
        self._interval = interval
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._urgent = threading.Event()  # someone waits (flush, exit, fork): write without gathering
        self._idle = True
        self._lock = threading.RLock()  # held while appending to segments (and across a fork)
        self._thread: threading.Thread | None = None
        self._owner = journal.new_owner()
        self._owner_lock: journal.Lock | None = None
        self._segments: dict[str, Segment] = {}  # store URI -> this process's current segment for it
        self._rotated: dict[Path, tuple[int, str]] = {}  # earlier segments not known written: path -> (size, URI)
        self._seq = 0
        self._open: dict[str, Any] = {}  # run key -> handle of runs mltrack opened and has not ended
        self._handles: dict[str, Any] = {}  # run key -> handle, to hand them the run ids the server made
        self._ids_read: dict[Path, int] = {}
        self._keeper = ServerKeeper(folder, use_process=use_process, retention_s=retention_s)
        self._error: BaseException | None = None
        self.written_to_journal = 0
        self.dropped = 0
        self.closed = False
        self._hurry_until: float | None = None  # a SIGTERM during the exit: the exit's wait ends by then

    # the caller's side ------------------------------------------------------------------------------------
    def submit(self, op: Any) -> None:
        """Hand an operation over: an append to a deque; never blocks on disk or on the store."""
        if self._thread is None:
            self._start()
        queue = self._queue
        if len(queue) >= self._max_queue // 2:
            self._urgent.set()  # no gathering: write now
            if len(queue) >= self._max_queue and not self._room(queue):
                self.dropped += 1
                warn_once("writer-queue-full", f"mltrack: {self._max_queue} records wait to be journaled and the "
                          f"journal thread made no room for {ROOM_GIVE_UP_S:g} s (a disk that hangs); records are "
                          "dropped until it does.")
                return
        queue.append(op)
        if self._idle:
            self._idle = False
            self._wake.set()

    def _room(self, queue: deque) -> bool:
        """At the bound: wait while the journal thread makes room (it writes to local disk: milliseconds)."""
        self._wake.set()
        deadline = time.monotonic() + ROOM_GIVE_UP_S
        while len(queue) >= self._max_queue:
            if time.monotonic() > deadline or self.closed:
                return False
            time.sleep(0.001)
        return True

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything submitted before this call is written to MLflow; False when ``timeout`` passed
        first or a store could not take it (it stays in the journal)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        targets = self._journal_all(deadline)
        if targets is None:
            return False
        self._raise_strict()
        return self._wait_acked(targets, deadline, started=time.time())

    def close(self, timeout: float, end_status: str | None = "FINISHED", wait_written: bool = True) -> bool:
        """At exit: end the runs left open, put everything on disk, and wait (while the server makes progress,
        at most ``timeout``) for it to be written. What is not written stays in the journal for later.
        ``wait_written=False``: once on disk, leave it to the writer process if one serves the folder."""
        if self.closed or self._thread is None:
            return True
        self.closed = True
        try:
            deadline = time.monotonic() + timeout
            if end_status:
                if self._journal_all(deadline) is None:  # the starts still in memory count as open too
                    return False
                now = time.time()
                for handle in list(self._open.values()):
                    if handle.owned:
                        self._queue.append(EndRun(handle, end_status, now))
            targets = self._journal_all(deadline)
            if targets is None:
                return False
            if not wait_written and self._keeper.served_by_another_process():
                return True
            return self._wait_acked(targets, deadline, started=time.time(), stall_s=NO_PROGRESS_AT_EXIT_S)
        except Exception:  # noqa: BLE001 - nothing may stop the exit path
            return False
        finally:
            self._keeper.stop()

    def hurry(self, within: float) -> None:
        """A close under way must end within ``within`` seconds (set from a signal handler: no locks here)."""
        self._hurry_until = time.monotonic() + within

    def pending(self) -> int:
        """Records this process handed over that are not written to MLflow yet."""
        waiting = len(self._queue)
        for segment in list(self._segments.values()):
            if not _written(segment.path, segment.size):
                waiting += 1  # not exact in records: at least one waits in that segment
        return waiting

    def status(self) -> dict[str, Any]:
        stores = self.folder.read_status().get("stores", {}) if self.folder is not None else {}
        unreachable = {uri: {"since": s.get("since"), "error": s.get("error")}
                       for uri, s in stores.items() if s.get("down") and uri in self._segments}
        for uri in self._segments:
            problem = stores_mod.local_problem(uri)
            if problem and uri not in unreachable:
                unreachable[uri] = {"since": None, "error": problem}
        return {"running": self._thread is not None, "pending": self.pending(), "in_memory": len(self._queue),
                "journaled": self.written_to_journal, "dropped": self.dropped,
                "journal_dir": str(self.folder.root) if self.folder is not None else None,
                "unreachable": unreachable, "server": self._keeper.kind}

    # the journal thread ---------------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            if self.folder is not None:
                try:
                    self._owner_lock = journal.Lock.try_take(self.folder.owners / f"{self._owner}.lock")
                except OSError as exc:
                    warn_once("journal-unusable", f"mltrack: cannot use the journal folder {self.folder.root} "
                              f"({exc}); records are not kept.")
                    self.folder = self._keeper.folder = None
            thread = threading.Thread(target=self._loop, name="mltrack-journal", daemon=True)
            thread.start()
            self._thread = thread

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            if self._interval > 0:
                self._urgent.wait(self._interval)  # gather what comes next into the same write
            self._wake.clear()
            self._urgent.clear()
            self._idle = True
            try:
                self._drain()
            except BaseException as exc:  # noqa: BLE001 - the thread must live on
                self._fail("writing the journal", exc)

    def _drain(self) -> None:
        with self._lock:
            queue = self._queue
            lines: dict[str, list[str]] = {}
            while queue:
                op = queue.popleft()
                if isinstance(op, Barrier):
                    self._append(lines)
                    lines = {}
                    op.targets = {path: size for path, (size, _uri) in self._rotated.items()}
                    op.targets.update({seg.path: seg.size for seg in self._segments.values()})
                    op.resolve(True)
                    continue
                try:
                    record = encode(op)
                except Exception as exc:  # noqa: BLE001 - one bad record costs that record only
                    self._fail("encoding a record", exc)
                    continue
                self._remember(op)
                if record is not None:
                    lines.setdefault(op.handle.tracking_uri, []).append(dumps(record))
            self._append(lines)

    def _remember(self, op: Any) -> None:
        key = op.handle.key
        if isinstance(op, StartRun):
            self._open[key] = op.handle
            if op.handle.known_run_id is None:
                self._handles[key] = op.handle
        elif isinstance(op, EndRun):
            self._open.pop(key, None)

    def _append(self, lines: dict[str, list[str]]) -> None:
        if not lines:
            return
        if self.folder is None:
            self.dropped += sum(len(v) for v in lines.values())
            return
        for uri, store_lines in lines.items():
            data = ("\n".join(store_lines) + "\n").encode("utf-8")
            try:
                self._segment(uri).append(data)
                self.written_to_journal += len(store_lines)
            except OSError as exc:
                self.dropped += len(store_lines)
                warn_once(f"journal-write:{type(exc).__name__}", f"mltrack: cannot write the journal in "
                          f"{self.folder.root} ({exc}); {len(store_lines)} records were dropped.")
        self._keeper.notify()

    def _segment(self, uri: str) -> Segment:
        segment = self._segments.get(uri)
        if segment is not None and segment.size > journal.SEGMENT_MAX_BYTES:
            segment.close(mark_closed=True)
            self._rotated = {p: v for p, v in self._rotated.items() if not _written(p, v[0])}
            self._rotated[segment.path] = (segment.size, uri)
            segment = None
        if segment is None:
            assert self.folder is not None
            problem = stores_mod.local_problem(uri)
            if problem:
                warn_once(f"store-down:{uri}", f"mltrack: cannot write to the MLflow store {uri} ({problem}); "
                          f"records are kept in {self.folder.root} and written when it can be.")
            self._seq += 1
            path = self.folder.store_dir(uri) / f"{self._owner}.{self._seq:06d}.jsonl"
            segment = self._segments[uri] = Segment(path)
        return segment

    def _journal_all(self, deadline: float | None) -> dict[Path, int] | None:
        """Put everything submitted so far on disk; the segment sizes to wait for (None: timed out)."""
        barrier = Barrier()
        if self._thread is None:
            return {}
        self._queue.append(barrier)
        self._idle = False
        self._wake.set()
        self._urgent.set()
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not barrier.done.wait(wait):
            return None
        return barrier.targets

    # waiting for the server ----------------------------------------------------------------------------------
    def _wait_acked(self, targets: dict[Path, int], deadline: float | None, started: float,
                    stall_s: float | None = None) -> bool:
        if not targets:
            return True
        self._keeper.notify(force=True)
        pause = 0.002
        last_progress = time.monotonic()
        progress = -1
        uris = {path: uri for path, (_size, uri) in self._rotated.items()}
        uris.update({seg.path: uri for uri, seg in self._segments.items()})
        while True:
            remaining = {path: size for path, size in targets.items() if not _written(path, size)}
            self._read_ids(targets)
            stores = self._store_report()
            if not remaining:
                return True
            now = time.monotonic()
            if (deadline is not None and now >= deadline) or (self._hurry_until is not None and now >= self._hurry_until):
                return False
            if all(self._down_since(stores.get(uris.get(path, ""), {}), started)
                   or stores_mod.local_problem(uris.get(path, "")) for path in remaining):
                return False  # the store does not answer (the server tried after we asked) or cannot: all is on disk
            done = sum(journal.read_ack(path)[0] for path in remaining)
            tried = any(float(stores.get(uris.get(path, ""), {}).get("tried", 0) or 0) >= started
                        for path in remaining)
            if done != progress or not tried:  # a server still starting (importing MLflow) is not a stall
                progress, last_progress = done, now
            elif stall_s is not None and now - last_progress > stall_s:
                return False
            self._keeper.ensure()
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    @staticmethod
    def _down_since(report: dict[str, Any], started: float) -> bool:
        return bool(report.get("down")) and float(report.get("tried", 0) or 0) >= started

    def _store_report(self) -> dict[str, Any]:
        """The server's word on each store; warns (once per cause) about stores that fail and skipped records."""
        if self.folder is None:
            return {}
        stores = self.folder.read_status().get("stores", {})
        for uri, report in stores.items():
            if report.get("dropped"):
                why = "; ".join(report.get("dropped_why") or ()) or "see status.json"
                warn_once(f"dropped:{uri}", f"mltrack: dropped {report['dropped']} records for {uri} from the journal "
                          f"in {self.folder.root}: {why}.")
            if uri not in self._segments:
                continue
            if report.get("down"):
                warn_once(f"store-down:{uri}", f"mltrack: cannot write to the MLflow store {uri} "
                          f"({report.get('error')}); records are kept in {self.folder.root} and written when it "
                          "answers (by this process or a later one).")
            for reason in report.get("skipped") or ():
                warn_once(f"skipped:{uri}:{reason}", f"mltrack: a record for {uri} was left out: {reason}")
        return stores

    def _read_ids(self, targets: dict[Path, int]) -> None:
        """Give run handles the MLflow run ids the server made for them."""
        for path in targets:
            ids_path = path.with_suffix(".ids")
            start = self._ids_read.get(path, 0)
            lines, end = journal.read_lines(ids_path, start, 1 << 24)
            self._ids_read[path] = end
            for line in lines:
                try:
                    ids = json.loads(line)
                except ValueError:
                    continue
                for key, run_id in ids.items():
                    handle = self._handles.pop(key, None)
                    if handle is not None:
                        handle.set_run_id(run_id)

    def wait_run_id(self, handle: Any, timeout: float) -> None:
        """Someone needs a run's MLflow id now: write what waits, then read the ids the server made."""
        if handle.known_run_id is None and self._thread is not None:
            self.flush(timeout)

    def _fail(self, where: str, exc: BaseException) -> None:
        """A failure in the journal thread: a warning (once per cause); in strict mode, raised at the next flush."""
        if _safety.strict():
            self._error = exc
        else:
            _safety.report_internal_error(where, exc)

    def _raise_strict(self) -> None:
        error, self._error = self._error, None
        if error is not None and _safety.strict():
            raise error

    # fork ---------------------------------------------------------------------------------------------------
    def before_fork(self) -> None:
        """Put what waits on disk, so the parent's records are in the journal before any child's."""
        self._lock.acquire()
        try:
            self._drain()
        except BaseException:  # noqa: BLE001
            pass

    def after_fork_in_parent(self) -> None:
        self._lock.release()

    def forget_in_child(self) -> None:
        """A forked child keeps nothing of this producer: no queue, no segment, no lock (the parent owns them)."""
        for segment in self._segments.values():
            try:
                os.close(segment.fd)
            except OSError:
                pass
        if self._owner_lock is not None:
            try:
                os.close(self._owner_lock.fd)  # the parent still holds the lock through its own descriptor
            except OSError:
                pass


def _written(path: Path, size: int) -> bool:
    """Has the writer written ``path`` up to ``size``? A segment it deleted was written whole (or dropped)."""
    return journal.read_ack(path)[0] >= size or not path.exists()
