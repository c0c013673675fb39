"""Proxies that look exactly like the SDK's stream while they watch it go by.

State lives in wrapt's ``_self_`` attributes (never on the SDK object). The call is recorded exactly once,
whichever comes first: exhaustion, ``close()``, leaving ``with``, an error, the end of the run it belongs to,
interpreter exit, or garbage collection (see ``_open_streams.py``).
"""

from __future__ import annotations

from typing import Any

import wrapt

from mltrack import _safety
from mltrack.instrumentation import _open_streams
from mltrack.instrumentation._call import CallScope
from mltrack.providers._base import StreamAccumulator


class _StreamWatcher:
    """What both proxies share: observing events and finishing the record once."""

    def _self_setup(self, scope: CallScope, accumulator: StreamAccumulator) -> None:
        self._self_scope = scope
        self._self_acc = accumulator
        self._self_first_ms: float | None = None
        self._self_last_ms: float | None = None
        self._self_seen_ms = scope.elapsed_ms()  # when the last chunk (of any kind) arrived; first: the response
        _open_streams.register(self, scope.handle)

    def _self_observe(self, event: Any) -> bool:
        """Feed one event to the accumulator; returns whether the caller should see it."""
        try:
            before = self._self_acc.content_events
            visible = self._self_acc.add(event)
            now = self._self_seen_ms = self._self_scope.elapsed_ms()
            if self._self_acc.content_events != before:
                if self._self_first_ms is None:
                    self._self_first_ms = now
                self._self_last_ms = now
            return visible
        except Exception as exc:  # noqa: BLE001
            _safety.report_internal_error("reading a stream event", exc)
            return True

    def _self_finish(self, complete: bool, error: BaseException | None = None, left: bool = False) -> None:
        """Record the call once. A stream not read to its end is timed by its last chunk, not by when it is
        finalized (closed, left at the end of its run, collected, or found open at exit)."""
        scope = self._self_scope
        if scope.finished:
            return
        _open_streams.forget(self)
        ended_at = None if complete or (error is not None and not left) else self._self_seen_ms
        scope.finish_stream(self._self_acc, complete=complete, error=error, first_ms=self._self_first_ms,
                            last_ms=self._self_last_ms, ended_ms=ended_at)


class SyncStreamProxy(_StreamWatcher, wrapt.ObjectProxy):
    """Behaves as the SDK's ``Stream``: iteration, ``with``, ``close()``, and every other attribute."""

    def __init__(self, wrapped: Any, scope: CallScope, accumulator: StreamAccumulator) -> None:
        wrapt.ObjectProxy.__init__(self, wrapped)
        self._self_setup(scope, accumulator)

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                event = self.__wrapped__.__next__()
            except StopIteration:
                self._self_finish(complete=True)
                raise
            except BaseException as exc:
                self._self_finish(complete=False, error=exc)
                raise
            if self._self_observe(event):
                return event

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_finish(complete=False)

    def __enter__(self) -> Any:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_finish(complete=False, error=exc)

    def __del__(self) -> None:
        try:
            self._self_finish(complete=False)
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


class AsyncStreamProxy(_StreamWatcher, wrapt.ObjectProxy):
    """Behaves as the SDK's ``AsyncStream``: ``async for``, ``async with``, ``await close()``."""

    def __init__(self, wrapped: Any, scope: CallScope, accumulator: StreamAccumulator) -> None:
        wrapt.ObjectProxy.__init__(self, wrapped)
        self._self_setup(scope, accumulator)

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                event = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                self._self_finish(complete=True)
                raise
            except BaseException as exc:
                self._self_finish(complete=False, error=exc)
                raise
            if self._self_observe(event):
                return event

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_finish(complete=False)

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> Any:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_finish(complete=False, error=exc)

    def __del__(self) -> None:
        try:
            self._self_finish(complete=False)
        except Exception:  # noqa: BLE001
            pass


def finish_helper_stream(raw_stream: Any) -> None:
    """An SDK stream helper was closed: finish the raw stream proxy it was reading, if it is ours."""
    if isinstance(raw_stream, _StreamWatcher):
        raw_stream._self_finish(complete=False)


