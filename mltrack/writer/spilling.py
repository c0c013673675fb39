"""The spiller's half of the writer: moving what waits in memory to the on-disk journal, in order, in chunks.

Mixed into :class:`~mltrack.writer.mlflow_writer.MlflowWriter`, whose state it works on (lanes, the lock, the
journal); the sender's half (writing to MLflow, reading the journal back) is :mod:`mltrack.writer.sending`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mltrack.writer import records
from mltrack.writer._quiet import warn_once
from mltrack.writer.journal import Segment, lane_id
from mltrack.writer.ops import Barrier

if TYPE_CHECKING:
    from mltrack.writer.mlflow_writer import _Lane
    from mltrack.writer.sink import Sink

SPILL_CHUNK = 500  # records the spiller moves to disk at a time
SPILL_POLL_S = 0.1  # how often the spiller looks while a lane goes through the journal or a write is running
JOURNAL_RETRY_S = 30.0  # after the journal failed, how long before trying it again


class Spilling:
    """Methods of the writer that run in its spiller thread (and at exit): memory -> journal."""

    def _journal_usable(self) -> bool:
        return self._journal_ok or time.monotonic() >= self._journal_retry_at

    def _journal_failed(self, exc: BaseException) -> None:
        self._journal_ok = False
        self._journal_retry_at = time.monotonic() + JOURNAL_RETRY_S
        warn_once(f"journal:{type(exc).__name__}",
                          f"mltrack: cannot write the journal in {self._journal.directory} ({type(exc).__name__}: "
                          f"{exc}); while the store is down, only writer_queue_size records are kept (in memory).")

    def _spill_in_chunks(self, lane: _Lane, keep: int, inflight: bool) -> None:
        """:meth:`_spill_locked` ``SPILL_CHUNK`` records at a time: what is on its way to disk is never a second
        queue's worth of memory, and a caller waiting for room goes on after each chunk."""
        left = len(lane.mem) - keep
        while left > 0 or inflight:
            with self._lock:
                chunk = min(left, SPILL_CHUNK)
                ok = self._spill_locked(lane, max(keep, len(lane.mem) - chunk), inflight)
            inflight = False
            left -= chunk
            with self._room:
                self._room.notify_all()
            if not ok:
                return

    def _spill_locked(self, lane: _Lane, keep: int = 0, inflight: bool = False) -> bool:
        """Move what waits in memory, oldest first, to the journal, leaving the newest ``keep`` in memory; with
        ``inflight`` also the batch being written (it may be written twice then: harmless, see sink). The lane
        then reads the journal first until it is drained; order holds because the journal only ever holds what is
        older than memory, and a batch in flight goes into a segment of its own that sorts before anything
        spilled while it was being written. Caller holds ``self._lock``. False when the journal failed."""
        batch = lane.inflight if inflight and lane.inflight is not None and not lane.inflight_spilled else None
        drained: list[Any] = []
        mem = lane.mem
        while len(mem) > keep:
            try:
                drained.append(mem.popleft())
            except IndexError:
                break
        if batch is None and not drained:
            return True
        try:
            if batch is not None and lane.segments:
                self._append_before(lane, batch)
                self._append(lane, drained)
            else:
                self._append(lane, (batch or []) + drained)
        except OSError as exc:
            mem.extendleft(reversed(drained))
            self._journal_failed(exc)
            return False
        self._journal_ok = True
        self._moved += len(drained)
        if batch is not None:
            lane.inflight_spilled = True
        lane.journal = True
        return True

    def _append_before(self, lane: _Lane, batch: list[Any]) -> None:
        """The batch in flight, into its own segment ahead of the lane's journal (its reserved position)."""
        sink = lane.sink
        assert sink is not None
        segment = Segment.create(self._journal.own(), sink.uri, self._lane_name(lane, sink), lane.inflight_seq)
        markers: list[tuple[Segment | None, int, Barrier]] = []
        lines: list[str] = []
        for op in batch:
            if isinstance(op, Barrier):
                segment.append(lines)
                lines = []
                markers.append((segment, segment.size, op))
                continue
            record = self._encode(op)
            if record is not None:
                lines.append(records.dumps(record))
        segment.append(lines)
        segment.close_write()
        lane.segments.appendleft(segment)
        lane.markers.extendleft(reversed(markers))

    @staticmethod
    def _lane_name(lane: _Lane, sink: Sink) -> str:
        return f"{lane_id(sink.uri)}x{lane.index}"

    def _append(self, lane: _Lane, ops: list[Any]) -> None:
        sink = lane.sink
        assert sink is not None
        lines: list[str] = []
        for op in ops:
            if isinstance(op, Barrier):
                self._append_lines(lane, sink, lines)
                lines = []
                if lane.segments:
                    last = lane.segments[-1]
                    lane.markers.append((last, last.size, op))
                elif lane.inflight is None or lane.inflight_spilled:
                    op.resolve(True)  # nothing before it is pending
                else:
                    lane.markers.append((None, 0, op))
                continue
            record = self._encode(op)
            if record is None:
                continue
            if sink.down and record["t"] == records.START:
                self._release_waiters()
            lines.append(records.dumps(record))
            if len(lines) >= 1000:
                self._append_lines(lane, sink, lines)
                lines = []
        self._append_lines(lane, sink, lines)

    def _append_lines(self, lane: _Lane, sink: Sink, lines: list[str]) -> None:
        if not lines:
            return
        tail = lane.tail
        if tail is None or tail.full:
            if tail is not None:
                tail.close_write()
            tail = Segment.create(self._journal.own(), sink.uri, self._lane_name(lane, sink), lane.next_seq)
            lane.next_seq += 1
            lane.segments.append(tail)
            lane.tail = tail
        tail.append(lines)

    def _spill_everything(self, inflight: bool) -> None:
        """At exit: whatever waits in memory (and, with ``inflight``, the batch being written) goes to the journal."""
        for lane in list(self._lanes.values()):
            if not lane.mem and (not inflight or lane.inflight is None or lane.inflight_spilled):
                continue
            try:
                self._sink_of(lane)
            except Exception:  # noqa: BLE001
                continue
            if self._lock.acquire(timeout=2.0):
                try:
                    self._spill_locked(lane, 0, inflight=inflight)
                finally:
                    self._lock.release()

    def _sync_journal(self, force: bool = False) -> None:
        for lane in list(self._lanes.values()):
            tail = lane.tail
            if tail is not None:
                try:
                    tail.sync(force)
                except Exception:  # noqa: BLE001
                    pass

    def _spill_loop(self) -> None:
        while not self._stop.is_set():
            self._spill_wake.clear()
            try:
                watching = self._spill_round()
            except Exception as exc:  # noqa: BLE001
                self._fail("the journal", exc)
                watching = True
            with self._room:
                self._room.notify_all()
            self._spill_wake.wait(SPILL_POLL_S if watching else 5.0)

    def _spill_round(self) -> bool:
        """Move to the journal what must go there; True while there is something to watch closely."""
        now = time.monotonic()
        stuck = self._stuck(now)
        watching = self._busy is not None
        for lane in list(self._lanes.values()):
            n = len(lane.mem)
            watching = watching or lane.journal
            down = lane.sink is not None and lane.sink.down
            if down or stuck:  # durability first: everything that waits goes to disk
                if not n and not (stuck and lane.inflight is not None and not lane.inflight_spilled):
                    continue
                keep, inflight = 0, stuck
            elif n > self._spill_at:  # too much in memory: the oldest go to disk, the newest stay
                keep, inflight = self._soft // 4, False
            else:
                continue
            if not self._journal_usable():
                continue
            self._sink_of(lane)
            self._spill_in_chunks(lane, keep, inflight)
            watching = True
        self._sync_journal()
        return watching
