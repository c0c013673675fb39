"""Short pauses in the writer thread's own Python work (pricing deferred calls, building records, pickling).

An application thread that wants the GIL while another thread runs Python waits for the interpreter's switch
interval (5 ms by default) unless that thread blocks first. Every socket read of an SDK call wants the GIL back,
so a writer thread working in one long stretch adds milliseconds to the calls it overlaps. Pausing for a few tens
of microseconds after every fraction of a millisecond of work hands the GIL over at once instead.
"""

from __future__ import annotations

import time

WORK_S = 0.0002  # the longest stretch of writer work between two pauses
PAUSE_S = 0.00002  # asks the OS for 20 µs; Linux's timer slack makes it about 70 µs

_clock = time.perf_counter
_sleep = time.sleep
_next = 0.0


def pace() -> None:
    """Call between small pieces of writer work: pauses (releasing the GIL) once ``WORK_S`` has passed."""
    global _next
    now = _clock()
    if now >= _next:
        if _next:
            _sleep(PAUSE_S)
        _next = _clock() + WORK_S


def restart() -> None:
    """Call when the writer starts a stretch of work after waiting (the time before it was not work)."""
    global _next
    _next = _clock() + WORK_S
