"""The background writer: the caller's thread only appends an operation to an in-memory lane; threads do the rest.

One *lane* per tracking URI keeps that store's operations in order. Two threads serve all lanes:

* the **sender** turns operations into records (:mod:`mltrack.writer.records`) and writes them to MLflow in
  batches, by size (``WAKE_AT`` waiting) and by time (``writer_flush_interval``), coalesced per run, through
  the writer process (:mod:`mltrack.writer.worker`) or, without one, a :class:`Sink` in this process
  (its methods: :mod:`mltrack.writer.sending`);
* the **spiller** moves what waits in memory to the on-disk journal (:mod:`mltrack.writer.journal`) when there
  is more than half of ``writer_queue_size`` of it (a caller at the full size waits for room), when the store is down, or when a write has been hanging for
  ``STUCK_AFTER_S``. From then on the lane goes through the journal (so order is kept) until the sender has
  written all of it; then it is back to memory only (its methods: :mod:`mltrack.writer.spilling`).

A batch that fails because the store is down stays first in line: it goes to the journal ahead of everything
that came after it, and the sender retries with backoff. Writing a record twice writes nothing twice (see
:mod:`mltrack.writer.sink`), which is what makes "at least once" here "exactly once" in MLflow.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import Any, Callable

from mltrack import _safety
from mltrack.writer.journal import Journal, Owner, Segment
from mltrack.writer.ops import Barrier, EndRun, StartRun
from mltrack.writer.sink import Sink, Skip
from mltrack.writer._quiet import logger, warn_once
from mltrack.writer import worker
from mltrack.writer.worker import Link, RemoteSink, WorkerGone
from mltrack.writer.sending import BATCH_OPS, WAKE_AT, Sending
from mltrack.writer.spilling import Spilling


STUCK_AFTER_S = 5.0  # no MLflow call completed for this long: the store hangs, what waits goes to the journal
MIN_RETRY_GAP_S = 0.5  # flush() brings the next retry forward, but not closer than this to the previous one
MIN_HARD = 1000  # smaller bounds stall callers while mlflow is first imported (seconds), for ~3 MB saved
ROOM_WAIT_S = 1.0  # at the hard memory limit a caller waits while the journal makes room, in slices of this
ROOM_GIVE_UP_S = 10.0  # no record moved to the journal for this long (a hung disk): drop rather than hang
EXIT_WHEN_DOWN_S = 3.0  # at exit with a store known to be down: how long its last retry may take
REPLAY_AT_EXIT_S = 5.0  # at exit, once this process's records are written: the most to wait for adopted journals


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


class MlflowWriter(Sending, Spilling):
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
