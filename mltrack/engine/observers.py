"""Who sees each priced call besides the writer (e.g. the Prometheus metrics): subscribe once, notified per call.

:func:`mltrack.engine.process.process` calls :func:`notify` once per call, on whichever thread priced it; with
nobody subscribed that costs one check of :data:`active`. An observer that raises is reported through the
safety net and never stops the call's record or the other observers.
"""

from __future__ import annotations

import threading
from typing import Callable

from mltrack import _safety
from mltrack.record import LLMCall

Observer = Callable[[LLMCall, str], None]
"""``fn(call, operation)``: the priced record and its GenAI operation name (chat, text_completion, ...)."""

_observers: tuple[Observer, ...] = ()  # replaced whole (never mutated), so notify() reads it without a lock
_lock = threading.Lock()
active = False
"""True while anyone is subscribed (the one check the hot path makes)."""


def subscribe(fn: Observer) -> None:
    """Call ``fn(call, operation)`` for every priced call from now on (once, however often subscribed)."""
    global _observers, active
    with _lock:
        if fn not in _observers:
            _observers = (*_observers, fn)
        active = True


def unsubscribe(fn: Observer) -> None:
    """Stop calling ``fn``; unknown observers are ignored."""
    global _observers, active
    with _lock:
        _observers = tuple(o for o in _observers if o != fn)
        active = bool(_observers)


def notify(call: LLMCall, operation: str) -> None:
    """Hand one priced call to every observer; a failing observer is one warning (re-raised in strict mode)."""
    for fn in _observers:
        try:
            fn(call, operation)
        except Exception as exc:  # noqa: BLE001 - an observer must never cost the call its record
            _safety.report_internal_error("updating call observers", exc)
