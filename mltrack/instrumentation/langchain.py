"""What is patched in LangChain: every ``BaseChatModel`` subclass, at the two places a chat request is made.

* ``BaseChatModel._generate_with_cache`` / ``_agenerate_with_cache``: one request per prompt for ``invoke``,
  ``ainvoke``, ``batch``, ``generate`` and ``agenerate`` (and for models that stream internally); usage comes
  from the ``AIMessage.usage_metadata`` of the result.
* ``BaseChatModel.stream`` / ``astream``: the request is made while the caller iterates, so the stream is
  proxied and the call is recorded when it ends (usage from the chunks' ``usage_metadata``).

The call is marked "inside an LLM call" only while LangChain works (around the request, and around each
``next()`` of a stream), so the OpenAI / Anthropic SDK call LangChain makes underneath is logged once, here,
and the caller's own code between two chunks is not affected. Field names live in
:mod:`mltrack.providers.langchain`.

This module also holds the small helpers the other framework instrumentations share (running a wrapped call
inside a :class:`CallScope`, and stream proxies whose request is made lazily, during iteration).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

import wrapt

from mltrack import _safety
from mltrack.config import get_settings
from mltrack.instrumentation._call import CallScope
from mltrack.instrumentation._patching import Patch, apply, remove
from mltrack.instrumentation._streams import AsyncStreamProxy, SyncStreamProxy
from mltrack.providers import langchain as _lc
from mltrack.providers._base import Extracted, Request, StreamAccumulator

# --- shared by the framework instrumentations -----------------------------------------------------------------


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


def finish(scope: CallScope, result: Any, extract: Callable[[Any], tuple[Extracted | None, dict]]) -> None:
    extracted, extra = _safety.guarded("reading an LLM response", extract, result, default=(None, {}))
    scope.finish(extracted=extracted, extra_metadata=extra)


def call_sync(scope: CallScope, wrapped: Any, args: tuple, kwargs: dict,
              extract: Callable[[Any], tuple[Extracted | None, dict]]) -> Any:
    scope.enter()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        scope.exit()
        scope.finish(error=exc)
        raise
    scope.exit()
    finish(scope, result, extract)
    return result


async def call_async(scope: CallScope, wrapped: Any, args: tuple, kwargs: dict,
                     extract: Callable[[Any], tuple[Extracted | None, dict]]) -> Any:
    scope.enter()
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        scope.exit()
        scope.finish(error=exc)
        raise
    scope.exit()
    finish(scope, result, extract)
    return result


def stream_proxy(result: Any, scope: CallScope, accumulator: StreamAccumulator,
                 asynchronous: bool | None = None) -> Any:
    """Proxy a lazily-requested stream (async iterables get the async proxy unless told otherwise)."""
    if asynchronous if asynchronous is not None else hasattr(result, "__anext__"):
        return LazyAsyncStreamProxy(result, scope, accumulator)
    return LazySyncStreamProxy(result, scope, accumulator)


# --- LangChain --------------------------------------------------------------------------------------------------


def _ls_params(instance: Any, kwargs: dict) -> dict:
    try:
        params = instance._get_ls_params(**kwargs)
    except Exception:  # noqa: BLE001 - a model without LangSmith params still gets logged
        params = {}
    return params if isinstance(params, dict) else {}


def _provider(instance: Any, ls_params: dict) -> str:
    return _lc.provider_name(ls_params.get("ls_provider") or type(instance).__name__)


def _extract(provider: str) -> Callable[[Any], tuple[Extracted | None, dict]]:
    def extract(result: Any) -> tuple[Extracted | None, dict]:
        extracted, cache_hit = _lc.extract_result(result, provider)
        return extracted, ({"cache_hit": True} if cache_hit else {})

    return extract


def _scope_for_messages(instance: Any, messages: Any, kwargs: dict) -> tuple[CallScope | None, str]:
    """``kwargs``: the call's keyword arguments (``stop`` and the model's own), as ``_get_ls_params`` takes them."""
    params = _ls_params(instance, kwargs)
    provider = _provider(instance, params)
    scope = begin(lambda: provider, lambda: _lc.request(messages, params), {"framework": "langchain"})
    return scope, provider


def _generate_args(args: tuple, kwargs: dict) -> tuple[Any, dict]:
    """``_generate_with_cache(messages, stop=None, run_manager=None, **kwargs)``: the messages and the call kwargs."""
    messages = args[0] if args else kwargs.get("messages")
    call_kwargs = {k: v for k, v in kwargs.items() if k not in ("messages", "run_manager")}
    if len(args) > 1:
        call_kwargs["stop"] = args[1]
    return messages, call_kwargs


def _generate_with_cache(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    messages, call_kwargs = _generate_args(args, kwargs)
    scope, provider = _scope_for_messages(instance, messages, call_kwargs)
    if scope is None:
        return wrapped(*args, **kwargs)
    return call_sync(scope, wrapped, args, kwargs, _extract(provider))


def _agenerate_with_cache(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    async def call() -> Any:
        messages, call_kwargs = _generate_args(args, kwargs)
        scope, provider = _scope_for_messages(instance, messages, call_kwargs)
        if scope is None:
            return await wrapped(*args, **kwargs)
        return await call_async(scope, wrapped, args, kwargs, _extract(provider))

    return call()


def _ask_stream_usage(instance: Any, kwargs: dict) -> bool:
    """Models with a ``stream_usage`` switch left unset (ChatOpenAI on a custom base URL): ask for usage."""
    if "stream_usage" in kwargs or getattr(instance, "stream_usage", False) is not None:
        return False
    return bool(get_settings().stream_include_usage)


def _stream_wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        stream_input = args[0] if args else kwargs.get("input")
        messages = instance._convert_input(stream_input).to_messages()
    except Exception:  # noqa: BLE001 - LangChain raises its own error for bad input when iterated
        return wrapped(*args, **kwargs)
    call_kwargs = {k: v for k, v in kwargs.items() if k not in ("input", "config")}
    scope, provider = _scope_for_messages(instance, messages, call_kwargs)
    if scope is None:
        return wrapped(*args, **kwargs)
    hide = _safety.guarded("preparing a stream", _ask_stream_usage, instance, kwargs, default=False)
    if hide:
        kwargs = {**kwargs, "stream_usage": True}
    scope.enter()
    try:
        result = wrapped(*args, **kwargs)  # a generator: nothing is sent yet
    except BaseException as exc:
        scope.exit()
        scope.finish(error=exc)
        raise
    scope.exit()
    return stream_proxy(result, scope, _lc.MessageChunkAccumulator(provider, hide_usage_chunk=hide))


_CHAT = "langchain_core.language_models.chat_models"
PATCHES = [
    Patch(_CHAT, "BaseChatModel._generate_with_cache", _generate_with_cache),
    Patch(_CHAT, "BaseChatModel._agenerate_with_cache", _agenerate_with_cache),
    Patch(_CHAT, "BaseChatModel.stream", _stream_wrapper),
    Patch(_CHAT, "BaseChatModel.astream", _stream_wrapper),
]


_DEFERRED = Deferred(_CHAT, lambda: PATCHES)


def instrument() -> None:
    _DEFERRED.instrument()


def uninstrument() -> None:
    _DEFERRED.uninstrument()
