"""The background writer: the caller's thread only appends an operation to an in-memory lane; threads do the rest.

One *lane* per tracking URI keeps that store's operations in order. Two threads serve all lanes:

* the **sender** turns operations into records (:mod:`mltrack.writer.records`) and writes them to MLflow in
  batches, by size (``WAKE_AT`` waiting) and by time (``writer_flush_interval``), coalesced per run, through
  the writer process (:mod:`mltrack.writer.worker`) or, without one, a :class:`Sink` in this process;
* the **spiller** moves what waits in memory to the on-disk journal (:mod:`mltrack.writer.journal`) when there
  is more than half of ``writer_queue_size`` of it (a caller at the full size waits for room), when the store is down, or when a write has been hanging for
  ``STUCK_AFTER_S``. From then on the lane goes through the journal (so order is kept) until the sender has
  written all of it; then it is back to memory only.

A batch that fails because the store is down stays first in line: it goes to the journal ahead of everything
that came after it, and the sender retries with backoff. Writing a record twice writes nothing twice (see
:mod:`mltrack.writer.sink`), which is what makes "at least once" here "exactly once" in MLflow.
"""

from __future__ import annotations

import itertools
import random
import sys
import threading
import time
import warnings
from collections import deque
from typing import Any, Callable

from mltrack import _safety
from mltrack.writer import _pace, records
from mltrack.writer.journal import Journal, Owner, Segment
from mltrack.writer.ops import Barrier, EndRun, LogCall, StartRun
from mltrack.writer.sink import Outage, Sink, Skip
from mltrack.writer._quiet import logger, warn_once
from mltrack.writer import worker
from mltrack.writer.worker import Link, RemoteSink, WorkerGone
from mltrack.writer.spilling import Spilling


BATCH_OPS = 2000  # most records one round writes for one lane
WAKE_AT = 1000  # operations waiting in one lane that wake the sender before the flush interval is up
STUCK_AFTER_S = 5.0  # no MLflow call completed for this long: the store hangs, what waits goes to the journal
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
MIN_RETRY_GAP_S = 0.5  # flush() brings the next retry forward, but not closer than this to the previous one
MIN_HARD = 1000  # smaller bounds stall callers while mlflow is first imported (seconds), for ~3 MB saved
PROBE_OPS = 100  # records a retry reads from the journal while the store is down
ROOM_WAIT_S = 1.0  # at the hard memory limit a caller waits while the journal makes room, in slices of this
ROOM_GIVE_UP_S = 10.0  # no record moved to the journal for this long (a hung disk): drop rather than hang
EXIT_WHEN_DOWN_S = 3.0  # at exit with a store known to be down: how long its last retry may take
AHEAD_WITHOUT_PROGRESS_S = 1.0  # encoding the next batch ahead stops when MLflow has not answered for this long
REPLAY_AT_EXIT_S = 5.0  # at exit, once this process's records are written: the most to wait for adopted journals
_IDLE_S = 30.0


class _Lane:
    """The operations of one store, in order: memory (``mem``), a batch being written, and journal segments."""

    __slots__ = ("uri", "index", "mem", "inflight", "inflight_spilled", "inflight_seq", "next_seq", "journal",
                 "segments", "tail", "markers", "sink", "urgent", "last_write", "owner")

    _count = 0

    def __init__(self, uri: str | None, owner: Owner | None = None) -> None:
        _Lane._count += 1
        self.uri = uri
        self.index = _Lane._count
        self.mem: deque[Any] = deque()
        self.inflight: list[Any] | None = None  # the batch the sender is writing from memory
        self.inflight_spilled = False
        self.inflight_seq = 0  # the journal position reserved for that batch, should it fail
        self.next_seq = 0  # orders this lane's journal segments (file names sort by it)
        self.journal = owner is not None  # records go through the journal until it is drained
        self.segments: deque[Segment] = deque()  # not fully written yet, oldest first
        self.tail: Segment | None = None  # this process's segment being appended
        self.markers: deque[tuple[Segment | None, int, Barrier]] = deque()  # flush barriers inside the journal
        self.sink: Sink | RemoteSink | None = None
        self.urgent = False  # a flush is waiting: write now, whatever the interval
        self.last_write = 0.0
        self.owner = owner  # set for lanes replaying the journal of a dead process


class MlflowWriter(Spilling):
    """Owns the lanes, the journal and the threads; the caller's thread only calls :meth:`submit`."""

    def __init__(self, max_queue: int = 10000, flush_interval: float = 1.0, journal_dir: Any = None, *,
                 on_start: Callable[[], None] | None = None, use_process: bool = True) -> None:
        self._soft = max(0, int(max_queue))
        self._batch = max(100, min(BATCH_OPS, self._soft // 5))  # a batch taken from memory is memory too
        # The bound, batch in flight included: a caller at it waits while the spiller makes room.
        self._hard = max(self._soft - self._batch, MIN_HARD)
        self._spill_at = self._soft // 2  # beyond this many waiting, the oldest go to the journal
        self._signal_at = max(1, min(WAKE_AT, self._spill_at + 1))
        self._interval = float(flush_interval) if flush_interval and flush_interval > 0 else 1.0
        self._journal = Journal(journal_dir)
        self._on_start = on_start
        self._use_process = use_process  # MLflow's work in the writer process (see mltrack.writer.worker)
        self._lanes: dict[str | None, _Lane] = {}
        self._replays: list[_Lane] = []
        self._sinks: dict[str, Sink | RemoteSink] = {}
        self._replay_sinks: dict[str, Sink | RemoteSink] = {}  # adopted journals: own connections, own outage state, own thread
        self._lock = threading.Lock()  # lane modes, batches in flight, journal appends and markers
        self._lanes_lock = threading.Lock()
        self._sinks_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._replay_wake = threading.Event()
        self._spill_wake = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._adopted = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._idle = False
        self._closed = False  # close() ran (at exit): a write cut short from now on is no outage to warn about
        self._busy: tuple[_Lane, float] | None = None
        self._pending_handles: dict[str, Any] = {}  # run key -> handle still waiting for its run id
        self._open: dict[str, Any] = {}  # run key -> handle of runs started and not ended
        self._errors: list[BaseException] = []
        self._journal_ok = True
        self._journal_retry_at = 0.0
        self.dropped = 0
        self.written = 0
        self._moved = 0  # operations taken out of memory so far (by the sender or the spiller)

    # caller side ----------------------------------------------------------------------------------------
    def submit(self, op: Any) -> None:
        """Hand an operation to the writer: an append to a queue in memory; never blocks on the store."""
        if not self._started:
            self._start()
        uri = op.handle.tracking_uri
        lane = self._lanes.get(uri) or self._new_lane(uri)
        mem = lane.mem
        if len(mem) >= self._hard and not self._make_room(lane):
            self._drop()
            return
        mem.append(op)
        if self._idle:
            self._idle = False
            self._wake.set()
        if len(mem) >= self._signal_at:
            self._pressure(lane)

    def _new_lane(self, uri: str | None) -> _Lane:
        with self._lanes_lock:
            lane = self._lanes.get(uri)
            if lane is None:
                lane = self._lanes[uri] = _Lane(uri)
            return lane

    def _pressure(self, lane: _Lane) -> None:
        n = len(lane.mem)
        if (n > self._spill_at or (lane.sink is not None and lane.sink.down)) and not self._spill_wake.is_set():
            self._spill_wake.set()
        if n >= WAKE_AT and not self._wake.is_set():
            self._wake.set()

    def _make_room(self, lane: _Lane) -> bool:
        """At the hard memory limit (the caller outruns even the local journal): wait while the writer makes room.
        False (drop the record) only when the journal is broken or nothing moved for ``ROOM_GIVE_UP_S``."""
        stalled_since = None
        while len(lane.mem) >= self._hard:
            if not self._journal_usable():
                return False
            moved = self._moved
            self._spill_wake.set()
            with self._room:
                self._room.wait(ROOM_WAIT_S)
            if self._moved != moved:
                stalled_since = None
            elif stalled_since is None:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since >= ROOM_GIVE_UP_S and len(lane.mem) >= self._hard:
                return False
        return True

    def _drop(self) -> None:
        self.dropped += 1
        warn_once("writer-dropped", "mltrack: the MLflow store is down and the journal cannot be written; "
                          "records beyond writer_queue_size are being dropped.")

    def flush(self, timeout: float | None = None, replays: bool = True) -> bool:
        """Block until everything submitted so far is written; True when it all was.

        Returns False at ``timeout``, or as soon as the store has failed a (re)try made after this call and
        everything submitted so far is safe in the journal: it is written when the store is back. With
        ``replays``, also waits for the journals of dead processes adopted at start."""
        if not self._started:
            return True
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if not self._adopted.wait(remaining()):
            return False
        barriers: list[Barrier] = []
        for lane in list(self._lanes.values()):
            barrier = Barrier()
            lane.mem.append(barrier)
            lane.urgent = True
            barriers.append(barrier)
        for lane in list(self._replays) if replays else ():
            barrier = Barrier()
            if self._lock.acquire(timeout=5.0):
                try:
                    if lane.segments:
                        last = lane.segments[-1]
                        lane.markers.append((last, last.size, barrier))
                    else:
                        barrier.resolve(True)
                finally:
                    self._lock.release()
            barriers.append(barrier)
        for sink in list(self._sinks.values()) + (list(self._replay_sinks.values()) if replays else []):
            if sink.down:
                sink.next_try = min(sink.next_try, sink.last_attempt + MIN_RETRY_GAP_S)
        self._idle = False
        self._wake.set()
        self._replay_wake.set()
        self._spill_wake.set()
        ok = True
        for barrier in barriers:
            if not barrier.done.wait(remaining()):
                ok = False
                break
            ok = ok and barrier.ok
        traced = [sink for sink in list(self._sinks.values()) + list(self._replay_sinks.values()) if sink.spans_written]
        if ok and traced:
            for sink in traced:
                sink.spans_written = False
            ok = all([sink.flush_traces(remaining()) for sink in traced])
        if self._errors and _safety.strict():
            errors, self._errors = self._errors, []
            raise errors[0]
        return ok

    def _waiting(self) -> tuple[int, int]:
        """Records not written yet: (in memory, batch in flight included; in the journal, adopted ones included)."""
        in_memory = journaled = 0
        for lane in self._all_lanes():
            in_memory += sum(1 for op in list(lane.mem) if not isinstance(op, Barrier))
            inflight = lane.inflight
            if inflight is not None and not lane.inflight_spilled:
                in_memory += sum(1 for op in inflight if not isinstance(op, Barrier))
            journaled += sum(segment.pending for segment in list(lane.segments))
        return in_memory, journaled

    def pending(self) -> int:
        """Records handed over and not written yet (in memory and in the journal, incl. adopted journals)."""
        return sum(self._waiting())

    def status(self) -> dict[str, Any]:
        """What the writer is doing: counts, and which stores are unreachable since when."""
        in_memory, journaled = self._waiting()
        down = {sink.uri: {"since": sink.down_since, "error": sink.last_error}
                for sink in list(self._replay_sinks.values()) + list(self._sinks.values()) if sink.down}
        return {"running": self._started, "pending": in_memory + journaled, "in_memory": in_memory,
                "journaled": journaled, "written": self.written, "dropped": self.dropped,
                "journal_dir": str(self._journal.directory), "unreachable": down}

    # lifecycle ------------------------------------------------------------------------------------------
    def _start(self) -> None:
        # Importing mlflow (in the writer thread) imports concurrent.futures.thread, which refuses to be imported once
        # the interpreter shuts down: a short script may exit before the writer got to it, so import it now (stdlib,
        # a few ms once, usually imported already).
        import concurrent.futures.thread  # noqa: F401  (imported for its side effect)

        with self._start_lock:
            if self._started:
                return
            self._stop.clear()
            self._threads = [threading.Thread(target=self._send_loop, name="mltrack-writer", daemon=True),
                             threading.Thread(target=self._spill_loop, name="mltrack-journal", daemon=True),
                             threading.Thread(target=self._replay_loop, name="mltrack-replay", daemon=True)]
            for thread in self._threads:
                thread.start()
            self._started = True
        if self._on_start is not None:
            try:
                self._on_start()
            except Exception as exc:  # noqa: BLE001
                self._fail("starting the writer", exc)

    def end_open_runs(self, status: str = "FINISHED") -> None:
        """End the runs mltrack opened and nobody closed (e.g. a tracker's own run), at exit."""
        handles = dict(self._open)
        ended: set[str] = set()
        for lane in list(self._lanes.values()):
            ops = list(lane.mem) + list(lane.inflight or ())
            for op in ops:
                if isinstance(op, StartRun):
                    handles.setdefault(op.handle.key, op.handle)
                elif isinstance(op, EndRun):
                    ended.add(op.handle.key)
        now = time.time()
        for key, handle in handles.items():
            if key not in ended and handle.owned:
                self.submit(EndRun(handle, status, now))

    def close(self, timeout: float = 30.0, end_status: str | None = "FINISHED") -> bool:
        """At exit: end open runs, put what waits in memory on disk first (so a kill during the rest loses
        nothing), then write within ``timeout``; what is not written by then stays in the journal."""
        if not self._started:
            return True
        ok = False
        try:
            if end_status:
                self.end_open_runs(end_status)
            self._spill_everything(inflight=False)
            self._sync_journal(force=True)
            started = time.monotonic()
            if self._stuck(time.monotonic()) or any(sink.down for sink in list(self._sinks.values())):
                timeout = min(timeout, EXIT_WHEN_DOWN_S)  # all is on disk already: one short last try, not 30 s
            ok = self.flush(timeout, replays=False)
            if ok and self._replays:  # journals of dead processes: a little longer, the rest is for the next one
                self.flush(min(REPLAY_AT_EXIT_S, max(0.0, timeout - (time.monotonic() - started))))
        except Exception:  # noqa: BLE001 - strict-mode errors must not stop the exit path
            ok = False
        finally:
            if not ok:
                self._spill_everything(inflight=True)
            self._sync_journal(force=True)
            if ok and not any(lane.segments for lane in self._all_lanes()):
                self._journal.close(remove_if_empty=True)
            self._closed = True
        return ok

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop the threads (tests); what was not written stays in the journal or is dropped from memory."""
        self._stop.set()
        self._wake.set()
        self._replay_wake.set()
        self._spill_wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._sync_journal(force=True)
        for lane in self._all_lanes():
            for segment in list(lane.segments):
                segment.close_write()
            if lane.owner is not None:
                lane.owner.close_fd()
        self._journal.close(remove_if_empty=False)
        for sink in list(self._sinks.values()) + list(self._replay_sinks.values()):
            if isinstance(sink, RemoteSink):
                sink.close()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's file locks (its threads did not survive the fork)."""
        self._journal.forget_after_fork()
        for lane in self._replays:
            if lane.owner is not None:
                lane.owner.fd = None

    # shared helpers -------------------------------------------------------------------------------------
    def _all_lanes(self) -> list[_Lane]:
        return list(self._lanes.values()) + list(self._replays)

    def _sink_of(self, lane: _Lane) -> Sink | RemoteSink:
        sink = lane.sink
        if sink is None:
            sink = lane.sink = self._sink_for(lane.uri)
        return sink

    def _sink_for(self, uri: str | None, replay: bool = False) -> Sink | RemoteSink:
        link = self._process_link()
        if uri is None:
            uri = _default_uri(link)
        sinks = self._replay_sinks if replay else self._sinks
        with self._sinks_lock:
            sink = sinks.get(uri)
            if sink is None:
                if link is not None:
                    sink = RemoteSink(link, uri, on_run_id=self._run_id_known, on_skip=self._skipped)
                else:
                    sink = Sink(uri, sleep=self._stop.wait, on_run_id=self._run_id_known, on_skip=self._skipped)
                sinks[uri] = sink
            return sink

    def _process_link(self) -> Link | None:
        """The writer process to write through, or None to write from a thread here (off, or it cannot start)."""
        if not self._use_process:
            return None
        link = worker.link()
        try:
            link.ensure()
        except WorkerGone as exc:
            self._use_process = False
            warn_once("writer-process", f"mltrack: {exc}; writing to MLflow from a thread of this process instead "
                                        "(MLflow's work then shares the GIL with your code).")
            return None
        return link

    def _run_id_known(self, key: str, run_id: str | None) -> None:
        handle = self._pending_handles.pop(key, None)
        if handle is not None:
            handle.set_run_id(run_id)

    def _skipped(self, skip: Skip) -> None:
        self._fail(f"writing to MLflow ({skip.what})", skip.cause)

    def _fail(self, where: str, exc: BaseException) -> None:
        if _safety.strict():
            self._errors.append(exc)
            return
        warn_once(f"writer:{where}:{type(exc).__name__}",
                          f"mltrack: {where} failed ({type(exc).__name__}: {exc}); your code is unaffected.")

    def _encode(self, op: Any) -> dict[str, Any] | None:
        encoded = op.encoded if type(op) is LogCall else None
        if encoded is not None:  # built ahead (see _encode_ahead); the run's id may have become known since
            record = encoded[0]
            if record is not None and record["r"] is None:
                record["r"] = op.handle.known_run_id
            return record
        try:
            record = records.encode(op)
        except Exception as exc:  # noqa: BLE001 - a bug must cost one record, not the writer
            self._fail("preparing a record", exc)
            return None
        if record is not None:
            kind, key = record["t"], record["k"]
            if kind == records.START:
                self._open[key] = op.handle
                if op.handle.known_run_id is None:
                    self._pending_handles[key] = op.handle
            elif kind == records.END:
                self._open.pop(key, None)
        return record

    def _encode_all(self, batch: list[Any]) -> list[dict[str, Any]]:
        """The records of a batch, pricing deferred calls first; paced (see :mod:`mltrack.writer._pace`)."""
        _pace.restart()
        out: list[dict[str, Any]] = []
        for op in batch:
            if isinstance(op, Barrier):
                continue
            if isinstance(op, LogCall) and op.processed is None and op.encoded is None:
                try:
                    _settle_until(op)
                except Exception as exc:  # noqa: BLE001 - strict mode re-raises a call's failure: report it at flush
                    self._fail("preparing a record", exc)
            record = self._encode(op)
            if record is not None:
                out.append(record)
            _pace.pace()
        return out

    def _encode_ahead(self, lane: _Lane, sink: Sink | RemoteSink, done: threading.Event) -> None:
        """While the writer process writes a batch, price and encode the calls of the next one (kept on each
        :class:`LogCall`), so that this thread's work overlaps MLflow's instead of adding to it. Best effort:
        stops when the write is done; anything that fails here is left to :meth:`_encode_all`, which reports it.

        Only while the store is known to work: an encoded call takes more memory than one waiting to be priced,
        so not for a store that has not been written yet or stops answering (those calls may wait a long time,
        and go to the journal, which encodes them anyway), nor when memory is already spilling."""
        if lane.last_write == 0.0 or sink.down or len(lane.mem) > self._spill_at:
            return
        try:
            upcoming = list(itertools.islice(lane.mem, self._batch))  # one C call: no append can interleave
        except RuntimeError:
            return
        started = time.monotonic()
        _pace.restart()
        for op in upcoming:
            if done.is_set() or self._stop.is_set():
                return
            if time.monotonic() - max(started, sink.last_progress) > AHEAD_WITHOUT_PROGRESS_S:
                return  # no MLflow call has completed for a while: this write may be failing
            if type(op) is not LogCall or op.encoded is not None:
                continue
            try:
                if op.processed is None:
                    _settle_until(op)
                op.encoded = (records.encode(op),)
            except Exception:  # noqa: BLE001 - reported when the batch is encoded for real
                return
            _pace.pace()

    def _release_waiters(self) -> None:
        """The store is down: whoever waits for a run id gets None now (the id is set when the run is made)."""
        for handle in list(self._pending_handles.values()):
            if handle.known_run_id is None:
                handle.set_run_id(None)

    # sender thread --------------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        """This process's records."""
        self._serve(lambda: list(self._lanes.values()), self._wake, live=True)

    def _replay_loop(self) -> None:
        """Journals of dead processes, in a thread of their own: a store that never comes back (or hangs in
        MLflow's HTTP retries) must not hold up this process's own records."""
        try:
            self._adopt_orphans()
        finally:
            self._adopted.set()
        if self._replays:
            self._serve(lambda: list(self._replays), self._replay_wake, live=False, until_empty=True)

    def _serve(self, lanes: Callable[[], list[_Lane]], wake: threading.Event, live: bool,
               until_empty: bool = False) -> None:
        while not self._stop.is_set():
            wake.clear()
            current = lanes()
            if until_empty and not current:
                return
            try:
                due = self._send_round(current, live)
            except Exception as exc:  # noqa: BLE001 - the writer must survive anything
                self._fail("the writer", exc)
                due = time.monotonic() + 1.0
            if due is None:
                continue
            wake.wait(max(0.0, due - time.monotonic()))

    def _send_round(self, lanes: list[_Lane], live: bool) -> float | None:
        """One pass over the lanes: None when something was written (go again), else when to look next."""
        now = time.monotonic()
        due = now + _IDLE_S
        worked = False
        for lane in lanes:
            sink = self._sink_of(lane)
            if sink.down and now < sink.next_try:
                if lane.mem or lane.segments:
                    due = min(due, sink.next_try)
                continue
            if lane.journal:
                result = self._send_journal(lane, sink, now)
            else:
                result = self._send_memory(lane, sink, now)
            if result is True:
                worked = True
            elif result is not None:
                due = min(due, result)
        if worked:
            return None
        if live and due >= now + _IDLE_S:
            self._idle = True
            if any(lane.mem for lane in lanes):
                self._idle = False
                return now
        return due

    def _send_memory(self, lane: _Lane, sink: Sink, now: float) -> bool | float | None:
        mem = lane.mem
        n = len(mem)
        if n == 0:
            return None
        if not (n >= WAKE_AT or lane.urgent or sink.down or now - lane.last_write >= self._interval):
            return lane.last_write + self._interval
        with self._lock:
            if lane.journal:
                return True
            batch: list[Any] = []
            while len(batch) < self._batch:
                try:
                    batch.append(mem.popleft())
                except IndexError:
                    break
            lane.inflight, lane.inflight_spilled = batch, False
            self._moved += len(batch)
            lane.inflight_seq = lane.next_seq
            lane.next_seq += 1
            lane.urgent = lane.urgent and bool(mem)
        barriers = [op for op in batch if isinstance(op, Barrier)]
        batch_records = self._encode_all(batch)
        try:
            self._write(lane, sink, batch_records, replay=False,
                        meanwhile=lambda done: self._encode_ahead(lane, sink, done))
        except Outage as exc:
            with self._lock:
                # Only the batch: what waits in memory follows in chunks (the spiller), not as a second copy now.
                kept = lane.inflight_spilled or self._spill_locked(lane, len(mem), inflight=True)
                lane.inflight = None
                if not kept:  # no journal: keep the batch first in memory
                    mem.extendleft(reversed(batch))
            self._outage(sink, exc)
            return True
        except Exception as exc:  # noqa: BLE001 - a bug: report it, never retry it forever
            self._fail("writing to MLflow", exc)
        with self._lock:
            lane.inflight = None
        for barrier in barriers:
            barrier.resolve(True)
        lane.last_write = time.monotonic()
        return True

    def _send_journal(self, lane: _Lane, sink: Sink, now: float) -> bool | float | None:
        segment = lane.segments[0] if lane.segments else None
        if segment is None:
            if sink.down and lane.owner is None:
                return None  # stay on the journal while the store is down (the spiller keeps filling it)
            with self._lock:
                if not lane.segments:
                    self._drained(lane)
            return True
        try:
            batch, end, consumed = segment.read(PROBE_OPS if sink.down else BATCH_OPS)  # down: a retry is a probe
        except OSError as exc:
            self._journal_failed(exc)
            return now + 1.0
        if consumed == 0:
            with self._lock:
                if segment is not lane.tail:  # closed and fully written: done with it
                    lane.segments.popleft()
                    segment.delete()
                    self._resolve_markers(lane)
                    if not lane.segments:
                        self._drained(lane)
                    return True
                if segment.size > segment.acked:  # appended meanwhile (or a line being written): read again
                    return now + 0.01
                lane.segments.popleft()  # caught up with the spiller: back to memory
                lane.tail = None
                segment.delete()
                self._drained(lane)
            return True
        if (batch and len(batch) < WAKE_AT and segment is lane.tail and not lane.markers and not lane.urgent
                and now - lane.last_write < self._interval):
            return lane.last_write + self._interval  # more is coming: batch by time, as from memory
        if batch:
            try:
                ids = self._write(lane, sink, batch, replay=True)
            except Outage as exc:
                self._outage(sink, exc)
                return True
            except Exception as exc:  # noqa: BLE001 - a bug: report it, never retry it forever
                self._fail("writing to MLflow", exc)
                ids = {}
            if ids:
                try:
                    segment.owner.record_ids(ids)
                except OSError:
                    pass
        lane.last_write = time.monotonic()
        try:
            segment.ack(end, consumed)
        except OSError as exc:
            self._journal_failed(exc)
        with self._lock:
            if segment is not lane.tail and not segment.writable and segment.acked >= segment.size:
                lane.segments.popleft()  # closed and all written: delete it now, not a round later
                segment.delete()
                if not lane.segments:
                    self._drained(lane)
            self._resolve_markers(lane)
        return True

    def _drained(self, lane: _Lane) -> None:
        """Everything the lane journaled is written (caller holds the lock). Files first, then the waiters."""
        lane.urgent = lane.urgent and bool(lane.mem)
        if lane.owner is not None:
            if lane in self._replays:
                self._replays.remove(lane)
            lane.owner.lanes_open -= 1
            if lane.owner.lanes_open <= 0:
                lane.owner.release(remove=True)
            logger.info("mltrack: replayed the journal of an earlier process into %s",
                        lane.sink.uri if lane.sink else lane.uri)
        else:
            lane.journal = False
        while lane.markers:
            lane.markers.popleft()[2].resolve(True)

    def _resolve_markers(self, lane: _Lane) -> None:
        head = lane.segments[0] if lane.segments else None
        while lane.markers:
            segment, offset, barrier = lane.markers[0]
            if segment is not None and segment in lane.segments and (segment is not head or offset > head.acked):
                break
            lane.markers.popleft()
            barrier.resolve(True)

    def _write(self, lane: _Lane, sink: Sink, batch: list[dict[str, Any]], replay: bool,
               meanwhile: Callable[[threading.Event], None] | None = None) -> dict[str, str]:
        if not batch:
            return {}
        sink.last_attempt = time.monotonic()
        sink.client()  # importing mlflow and opening the store is not a write hanging
        live = lane.owner is None
        if live:  # what the spiller watches for a hanging store (only this process's records wait on it)
            self._busy = (lane, time.monotonic())
            self._spill_wake.set()
        try:
            ids = sink.write(batch, replay, meanwhile)
        finally:
            if live:
                self._busy = None
        if sink.down:
            self._recovered(sink)
        self.written += sum(1 for record in batch if record.get("t") == records.LOG)
        return ids

    def _outage(self, sink: Sink, exc: Outage) -> None:
        now = time.monotonic()
        sink.backoff = BACKOFF_MIN_S if not sink.down else min(BACKOFF_MAX_S, sink.backoff * 2)
        sink.next_try = now + sink.backoff * random.uniform(0.8, 1.2)
        sink.last_error = str(exc)
        for lane in self._all_lanes():
            if lane.sink is sink:
                with self._lock:
                    while lane.markers:
                        lane.markers.popleft()[2].resolve(False)
                    if not lane.journal:  # no journal: barriers wait in memory, say "not written" now
                        for op in list(lane.mem):
                            if isinstance(op, Barrier):
                                op.resolve(False)
        self._release_waiters()
        if not sink.down:
            sink.down = True
            sink.down_since = time.time()
            if self._closed:
                return  # the process is leaving and its writer process was stopped: what waits is in the journal
            message = (f"mltrack: cannot write to MLflow at {sink.uri} ({exc}); {self.pending()} records are kept "
                       f"(journal: {self._journal.directory}) and written when it is back. Your code is unaffected.")
            logger.warning(message)
            try:
                warnings.warn(message, _safety.TrackingWarning, stacklevel=2)
            except Exception:  # noqa: BLE001 - warnings turned into errors: the log line above is enough
                pass

    def _recovered(self, sink: Sink) -> None:
        down_for = time.time() - sink.down_since
        sink.down, sink.backoff, sink.next_try = False, 0.0, 0.0
        logger.warning("mltrack: MLflow at %s is reachable again after %.1fs; writing the %d records kept meanwhile.",
                       sink.uri, down_for, self.pending())

    # journal --------------------------------------------------------------------------------------------
    def _adopt_orphans(self) -> None:
        """At start: take over the journals of dead processes (theirs to replay, in their order)."""
        try:
            for owner, segments in self._journal.orphans():
                lanes: dict[str, _Lane] = {}
                for segment in segments:
                    lane = lanes.get(segment.uri)
                    if lane is None:
                        lane = lanes[segment.uri] = _Lane(segment.uri, owner=owner)
                        lane.sink = self._sink_for(segment.uri, replay=True)
                    lane.segments.append(segment)
                ids = owner.load_ids()
                for lane in lanes.values():
                    lane.sink.remember_all(ids)  # type: ignore[union-attr]
                owner.lanes_open = len(lanes)
                with self._lock:
                    self._replays.extend(lanes.values())
                logger.info("mltrack: replaying %d records journaled by process %s", sum(s.pending for s in segments),
                            owner.name)
        except Exception as exc:  # noqa: BLE001
            self._fail("reading the journal", exc)

    def _stuck(self, now: float) -> bool:
        """A write to MLflow has been hanging for ``STUCK_AFTER_S`` (a server that does not answer, retries)."""
        busy = self._busy
        return (busy is not None and busy[0].sink is not None
                and now - max(busy[1], busy[0].sink.last_progress) > STUCK_AFTER_S)


def _settle_until(op: LogCall) -> None:
    """Price the run's waiting calls up to this one (the rest wait for their own batch), paced."""
    op.handle.settle(_pace.pace, until=lambda: op.processed is not None)


def _default_uri(link: Link | None) -> str:
    """MLflow's tracking URI when mltrack's config names none: this process's (the application may have set it)
    when mlflow is loaded here, else what the writer process reads from the environment."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None and link is not None:
        try:
            return link.default_uri()
        except WorkerGone:
            pass
    import mlflow

    return mlflow.get_tracking_uri()
