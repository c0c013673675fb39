"""What the framework instrumentations (LangChain, LlamaIndex, LiteLLM, DSPy) share: patches deferred until the
framework is imported, a scope per call, and stream proxies for streams whose request is made during iteration."""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

import wrapt

from mltrack import _safety
from mltrack.instrumentation._call import CallScope
from mltrack.instrumentation._patching import Patch, apply, remove
from mltrack.instrumentation._streams import AsyncStreamProxy, SyncStreamProxy
from mltrack.providers._base import Extracted, Request, StreamAccumulator

# extract(result) -> (what the framework's result says, extra metadata for the record)
Extract = Callable[[Any], tuple[Extracted | None, dict]]


class Deferred:
    """Patches applied when their ``trigger`` module is imported, or at once when it already is.

    ``mltrack.instrument()`` patches every installed framework; importing one the program never uses would cost
    seconds (LiteLLM even fetches a price list from the internet at import), so nothing is imported here.
    """

    def __init__(self, trigger: str, patches: Callable[[], list[Patch]]) -> None:
        self.trigger = trigger
        self._patches = patches
        self._lock = threading.Lock()
        self._active = False
        self._hooked = False
        self._applied: list[Patch] = []

    def instrument(self) -> None:
        with self._lock:
            self._active = True
            hook = self.trigger not in sys.modules and not self._hooked
            self._hooked = self._hooked or hook
        if hook:
            wrapt.register_post_import_hook(self._on_import, self.trigger)
        else:
            self._apply()

    def _on_import(self, _module: Any) -> None:
        with self._lock:
            self._hooked = False
        _safety.guarded("instrumenting a framework at its import", self._apply)

    def _apply(self) -> None:
        with self._lock:
            if not self._active or self.trigger not in sys.modules:
                return
            patches = self._patches()
            apply(patches)
            self._applied = patches

    def uninstrument(self) -> None:
        with self._lock:
            self._active = False
            applied, self._applied = self._applied, []
        remove(applied)


class LazySyncStreamProxy(SyncStreamProxy):
    """A stream whose request is made while it is iterated (a generator): each ``next()`` runs inside the scope."""

    def __next__(self) -> Any:
        scope = self._self_scope
        scope.enter()
        try:
            return super().__next__()
        finally:
            scope.exit()


class LazyAsyncStreamProxy(AsyncStreamProxy):
    """The async counterpart: each ``__anext__`` runs inside the scope."""

    async def __anext__(self) -> Any:
        scope = self._self_scope
        scope.enter()
        try:
            return await super().__anext__()
        finally:
            scope.exit()

    async def aclose(self) -> None:
        """Async generators close with ``aclose()`` (the SDK streams' ``close()`` is not theirs)."""
        closer = getattr(self.__wrapped__, "aclose", None)
        try:
            if closer is not None:
                await closer()
        finally:
            self._self_finish(complete=False)


def begin(provider: Callable[[], str], request: Callable[[], Request],
          metadata: dict | None = None) -> CallScope | None:
    """A scope for a framework call (None: pass it through); reading the request never breaks the call."""
    try:
        name, req = provider(), request()
    except Exception as exc:  # noqa: BLE001
        _safety.report_internal_error("reading an LLM request", exc)
        return None
    return CallScope.begin(name, req, metadata)


def finish(scope: CallScope, result: Any, extract: Extract) -> None:
    extracted, extra = _safety.guarded("reading an LLM response", extract, result, default=(None, {}))
    scope.finish(extracted=extracted, extra_metadata=extra)


def call_sync(scope: CallScope, wrapped: Any, args: tuple, kwargs: dict, extract: Extract) -> Any:
    result = scope.run(wrapped, args, kwargs)
    finish(scope, result, extract)
    return result


async def call_async(scope: CallScope, wrapped: Any, args: tuple, kwargs: dict, extract: Extract) -> Any:
    result = await scope.arun(wrapped, args, kwargs)
    finish(scope, result, extract)
    return result


def stream_proxy(result: Any, scope: CallScope, accumulator: StreamAccumulator,
                 asynchronous: bool | None = None) -> Any:
    """Proxy a lazily-requested stream (async iterables get the async proxy unless told otherwise)."""
    if asynchronous if asynchronous is not None else hasattr(result, "__anext__"):
        return LazyAsyncStreamProxy(result, scope, accumulator)
    return LazySyncStreamProxy(result, scope, accumulator)
