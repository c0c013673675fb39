"""What is patched in the ``anthropic`` SDK: ``messages.create`` (plain and ``stream=True``) and ``messages.stream``."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Mapping

import wrapt

from mltrack.instrumentation._call import CallScope
from mltrack.instrumentation._patching import Patch, apply, remove
from mltrack.instrumentation._sdk_wrappers import async_wrapper, sync_wrapper
from mltrack.instrumentation._streams import AsyncStreamProxy, SyncStreamProxy
from mltrack.providers.anthropic import MessageStreamAccumulator

# While a messages.stream() manager is being entered: the scope its raw stream is to be recorded into.
_capture: ContextVar[CallScope | None] = ContextVar("mltrack_anthropic_capture", default=None)


def _describe(instance: Any, kwargs: dict) -> tuple[str, Mapping[str, Any]]:
    return "anthropic", {}


def _stream_setup(kwargs: dict, settings: Any) -> tuple[Any, dict]:
    return MessageStreamAccumulator(), kwargs


class _ManagerProxy(wrapt.ObjectProxy):
    """``messages.stream(...)``'s manager: the request is made when it is entered, so the scope starts there."""

    def __init__(self, wrapped: Any, args: tuple, kwargs: dict) -> None:
        super().__init__(wrapped)
        self._self_args = args
        self._self_kwargs = kwargs

    def _self_scope(self) -> CallScope | None:
        return CallScope.begin("anthropic", None, {"stream_helper": True}, call_kwargs=self._self_kwargs)

    def __enter__(self) -> Any:
        scope = self._self_scope()
        token = _capture.set(scope)
        try:
            return self.__wrapped__.__enter__()
        except BaseException as exc:
            if scope is not None:
                scope.finish(error=exc)
            raise
        finally:
            _capture.reset(token)

    def __exit__(self, *exc: Any) -> Any:
        return self.__wrapped__.__exit__(*exc)

    async def __aenter__(self) -> Any:
        scope = self._self_scope()
        token = _capture.set(scope)
        try:
            return await self.__wrapped__.__aenter__()
        except BaseException as exc:
            if scope is not None:
                scope.finish(error=exc)
            raise
        finally:
            _capture.reset(token)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.__wrapped__.__aexit__(*exc)


def _stream_method(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    return _ManagerProxy(wrapped(*args, **kwargs), args, kwargs)


def _message_stream_init(proxy_cls: type) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        scope = _capture.get()
        if scope is not None:
            _capture.set(None)
            if args:
                args = (proxy_cls(args[0], scope, MessageStreamAccumulator()), *args[1:])
            elif "raw_stream" in kwargs:
                kwargs = {**kwargs, "raw_stream": proxy_cls(kwargs["raw_stream"], scope, MessageStreamAccumulator())}
        return wrapped(*args, **kwargs)

    return wrapper


_MESSAGES = "anthropic.resources.messages.messages"
_STREAMING = "anthropic.lib.streaming._messages"
PATCHES = [
    Patch(_MESSAGES, "Messages.create", sync_wrapper(_describe, _stream_setup)),
    Patch(_MESSAGES, "AsyncMessages.create", async_wrapper(_describe, _stream_setup)),
    Patch(_MESSAGES, "Messages.parse", sync_wrapper(_describe)),
    Patch(_MESSAGES, "AsyncMessages.parse", async_wrapper(_describe)),
    Patch(_MESSAGES, "Messages.stream", _stream_method),
    Patch(_MESSAGES, "AsyncMessages.stream", _stream_method),
    Patch(_STREAMING, "MessageStream.__init__", _message_stream_init(SyncStreamProxy)),
    Patch(_STREAMING, "AsyncMessageStream.__init__", _message_stream_init(AsyncStreamProxy)),
]


def instrument() -> None:
    apply(PATCHES)


def uninstrument() -> None:
    remove(PATCHES)
