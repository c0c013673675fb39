"""Provider responses already logged, so one response is one record whichever entry points see it.

Instrumentation, ``track_llm_call``, ``log_prompt_response`` and ``@track``'s returned value may all see the
same SDK response object; the first to log it wins and the others find it here (see docs/concepts.md).
Responses are remembered by identity without being kept alive: a weak reference where the object allows it
(the openai / anthropic pydantic models do), else a strong one in a small bounded table. An entry never
outlives its object, so a new object that reuses a dead one's ``id()`` is never taken for it.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from contextvars import ContextVar
from typing import Any, Callable

from mltrack.record import LLMCall

Ticket = Callable[[], "LLMCall | None"]
"""Gives the record logged for a response (priced when first asked, if it was priced off the caller's thread)."""

STRONG_MAX = 256  # objects that cannot be weakly referenced: the most recent ones are kept, alive, this many

_weak: dict[int, tuple[weakref.ref, Ticket]] = {}
_strong: OrderedDict[int, tuple[Any, Ticket]] = OrderedDict()
_lock = threading.Lock()


def _never_shared(obj: Any) -> bool:
    """Plain values may be the very same object for two calls (interned strings, a dict the caller reuses):
    only response objects are deduplicated."""
    return obj is None or isinstance(obj, (str, bytes, int, float, bool, dict, list, tuple))


def remember(response: Any, ticket: Ticket) -> None:
    """``response`` has been logged; ``ticket()`` gives its record. The first one remembered wins."""
    if _never_shared(response):
        return
    key = id(response)
    try:
        ref = weakref.ref(response, lambda dead, key=key: _forget(key, dead))
    except TypeError:
        with _lock:
            if key not in _strong:
                _strong[key] = (response, ticket)
                if len(_strong) > STRONG_MAX:
                    _strong.popitem(last=False)
        return
    with _lock:
        entry = _weak.get(key)
        if entry is None or entry[0]() is None:
            _weak[key] = (ref, ticket)


def _forget(key: int, dead: weakref.ref) -> None:
    with _lock:
        entry = _weak.get(key)
        if entry is not None and entry[0] is dead:
            del _weak[key]


def ticket_of(response: Any) -> Ticket | None:
    """The ticket of an already-logged response, or None when no entry point logged this very object."""
    if _never_shared(response):
        return None
    key = id(response)
    entry = _weak.get(key)
    if entry is not None and entry[0]() is response:
        return entry[1]
    strong = _strong.get(key)
    if strong is not None and strong[0] is response:
        return strong[1]
    return None


def logged(response: Any) -> bool:
    return ticket_of(response) is not None


# Instrumented calls made inside a ``track_llm_call`` function: that call is instrumentation's to log.
_watch: ContextVar[list[int] | None] = ContextVar("mltrack_instrumented_inside", default=None)


def watch() -> tuple[list[int], Any]:
    """Start counting instrumented calls made in this context; returns the counter and a reset token."""
    box = [0]
    return box, _watch.set(box)


def unwatch(token: Any) -> None:
    try:
        _watch.reset(token)
    except ValueError:  # reset from another context (a generator finished elsewhere): nothing to undo
        pass


def note_instrumented() -> None:
    """An instrumented call starts here (it will log itself)."""
    box = _watch.get()
    if box is not None:
        box[0] += 1
