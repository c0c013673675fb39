"""Streams handed to the caller and not finished yet, so that one left early is still recorded in time.

A stream the consumer leaves with ``break`` (and keeps) would otherwise be recorded only when garbage-collected,
or never (held in a global). Each open stream proxy is listed here by weak reference with the run it logs into:
the run's close path records what the stream delivered so far (before the run's end is handed to the writer),
and so does interpreter exit, for streams of any run (before the writer's own exit handling).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Any

from mltrack import _safety, writer

_open: dict[int, tuple[weakref.ref, Any]] = {}  # id(proxy) -> (weak reference to it, the run it logs into)
_lock = threading.Lock()


def register(proxy: Any, handle: Any) -> None:
    """``proxy`` is an open stream of run ``handle`` (None: no run of its own to end)."""
    key = id(proxy)
    ref = weakref.ref(proxy, lambda dead, key=key: _drop(key, dead))
    with _lock:
        _open[key] = (ref, handle)
    # atexit runs handlers last-registered first: with the writer's registered (get_writer does that), moving
    # ours to the end makes it run before the writer's.
    writer.get_writer()
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)


def forget(proxy: Any) -> None:
    """The stream is finished (by whatever came first): nothing left to do for it."""
    key = id(proxy)
    with _lock:
        entry = _open.get(key)
        if entry is not None and entry[0]() is proxy:
            del _open[key]


def _drop(key: int, dead: weakref.ref) -> None:
    with _lock:
        entry = _open.get(key)
        if entry is not None and entry[0] is dead:
            del _open[key]


def _within(handle: Any, run: Any) -> bool:
    """Is ``handle`` the run ``run`` or one nested in it?"""
    while handle is not None:
        if handle is run:
            return True
        handle = getattr(handle, "parent", None)
    return False


def finish_run_streams(run: Any, keep: Any = None) -> int:
    """Record the streams of ``run`` (and of runs nested in it) still open, except ``keep`` (a stream the
    ``@track`` function returns: its caller consumes it after the run). Returns how many were recorded."""
    with _lock:
        if not _open:
            return 0
        found = [ref() for ref, handle in list(_open.values()) if _within(handle, run)]
    return _finish(found, keep)


def finish_all() -> int:
    """Record every stream still open (interpreter exit)."""
    with _lock:
        found = [ref() for ref, _handle in list(_open.values())]
    return _finish(found, None)


def _finish(found: list[Any], keep: Any) -> int:
    done = 0
    for proxy in found:
        if proxy is None or proxy is keep:
            continue
        try:
            proxy._self_finish(complete=False, left=True)
            done += 1
        except Exception as exc:  # noqa: BLE001 - the safety net
            _safety.report_internal_error("recording a stream left open", exc)
    return done


def _forget_all_after_fork() -> None:
    """A forked child does not record its parent's streams (the parent does, at its run's end or exit)."""
    global _lock
    _lock = threading.Lock()
    _open.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_after_fork)


def _at_exit() -> None:
    """Before the writer's exit handling: record what open streams delivered, so the writer writes it."""
    try:
        finish_all()
    except Exception as exc:  # noqa: BLE001 - never raise at exit
        _safety.report_internal_error("recording streams at exit", exc)
