"""The safety net: failures inside tracking become one warning per cause, never an exception in user code.

``MLTRACK_STRICT=1`` (set only by mltrack's own test suite) re-raises instead, so bugs cannot hide.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Any, Callable, TypeVar

logger = logging.getLogger("mltrack")

T = TypeVar("T")

_seen: set[str] = set()
_seen_lock = threading.Lock()


class TrackingWarning(RuntimeWarning):
    """Something inside tracking failed; the user's code was not affected."""


def strict() -> bool:
    return os.environ.get("MLTRACK_STRICT", "").lower() in ("1", "true", "yes")


def warn_once(cause: str, message: str, category: type[Warning] = TrackingWarning, stacklevel: int = 3) -> bool:
    """Warn (and log) once per ``cause`` for the life of the process; returns whether it warned."""
    with _seen_lock:
        if cause in _seen:
            return False
        _seen.add(cause)
    if logger.hasHandlers():
        logger.warning(message)
    warnings.warn(message, category, stacklevel=stacklevel)
    return True


def report_internal_error(where: str, exc: BaseException) -> None:
    """Handle a failure inside tracking: re-raise in strict mode, else warn once per (where, type)."""
    if strict():
        raise exc
    warn_once(f"{where}:{type(exc).__name__}", f"mltrack: {where} failed ({type(exc).__name__}: {exc}); "
              "tracking continues, your code is unaffected.")


def guarded(where: str, fn: Callable[..., T], *args: Any, default: Any = None, **kwargs: Any) -> T | Any:
    """Call ``fn``; a failure is reported through :func:`report_internal_error` and ``default`` returned."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the safety net is the point
        report_internal_error(where, exc)
        return default


def reset_warnings_for_tests() -> None:
    with _seen_lock:
        _seen.clear()
