"""The sender's half of the writer: turning operations into records and writing them to MLflow in batches.

Mixed into :class:`~mltrack.writer.mlflow_writer.MlflowWriter`, whose state it works on (lanes, the lock, the
sinks, the journal); the spiller's half (memory -> journal) is :mod:`mltrack.writer.spilling`. The sender thread
serves this process's lanes, the replay thread the journals of dead processes: a batch from memory or from the
journal, priced and encoded here, written by a sink (in the writer process, or in this one), and while that
write runs the next batch is prepared (:meth:`Sending._encode_ahead`).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

from mltrack import _safety
from mltrack.writer import _pace, records
from mltrack.writer._quiet import logger
from mltrack.writer.ops import Barrier, LogCall
from mltrack.writer.sink import Outage, Sink
from mltrack.writer.worker import RemoteSink

if TYPE_CHECKING:
    from mltrack.writer.mlflow_writer import _Lane

BATCH_OPS = 2000  # most records one round writes for one lane
WAKE_AT = 1000  # operations waiting in one lane that wake the sender before the flush interval is up
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
PROBE_OPS = 100  # records a retry reads from the journal while the store is down
AHEAD_WITHOUT_PROGRESS_S = 1.0  # encoding the next batch ahead stops when MLflow has not answered for this long
_IDLE_S = 30.0


class Sending:
    """Methods of the writer that run in its sender and replay threads: memory or journal -> MLflow."""

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


def _settle_until(op: LogCall) -> None:
    """Price the run's waiting calls up to this one (the rest wait for their own batch), paced."""
    op.handle.settle(_pace.pace, until=op.priced)
