"""Wrapper factories shared by the SDK instrumentations: plain calls, ``stream=True`` calls, sync and async."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from mltrack import _safety
from mltrack.config import get_settings
from mltrack.instrumentation._call import CallScope
from mltrack.instrumentation._streams import AsyncStreamProxy, SyncStreamProxy
from mltrack.providers import _registry
from mltrack.providers._base import StreamAccumulator

# describe(instance, kwargs) -> (provider, metadata): which provider/endpoint this client talks to.
Describe = Callable[[Any, dict], tuple[str, Mapping[str, Any]]]
# stream_setup(kwargs, settings) -> (accumulator, kwargs to send): may add stream_options.
StreamSetup = Callable[[dict, Any], tuple[StreamAccumulator, dict]]


def _begin(describe: Describe, instance: Any, kwargs: dict) -> CallScope | None:
    """The call's scope; its kwargs are read (prompt, model, params) when the call is priced, off this thread."""
    try:
        provider, metadata = describe(instance, kwargs)
    except Exception as exc:  # noqa: BLE001
        _safety.report_internal_error("reading an LLM request", exc)
        return None
    return CallScope.begin(provider, None, metadata, call_kwargs=kwargs)


def _unwrap_raw(result: Any) -> Any:
    """``with_raw_response`` calls return an API response object: its parsed body is the LLM response."""
    if _registry.is_llm_response(result):
        return result
    parse = getattr(result, "parse", None)
    if callable(parse) and type(result).__name__ in ("LegacyAPIResponse", "APIResponse"):
        return parse()
    return None


def _stream_kwargs(kwargs: dict, stream_setup: StreamSetup | None) -> tuple[StreamAccumulator | None, dict]:
    """For ``stream=True`` calls: the accumulator to watch the stream with, and the kwargs to send."""
    if kwargs.get("stream") is not True or stream_setup is None:
        return None, kwargs
    return _safety.guarded("preparing a stream", stream_setup, kwargs, get_settings(), default=(None, kwargs))


def _completed(scope: CallScope, result: Any, accumulator: StreamAccumulator | None, proxy: type) -> Any:
    """After the SDK returned: a stream is handed back wrapped (recorded when it ends), anything else recorded now."""
    if accumulator is not None:
        return proxy(result, scope, accumulator)
    scope.finish(response=_safety.guarded("reading an LLM response", _unwrap_raw, result))
    return result


def sync_wrapper(describe: Describe, stream_setup: StreamSetup | None = None) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        scope = _begin(describe, instance, kwargs)
        if scope is None:
            return wrapped(*args, **kwargs)
        accumulator, kwargs = _stream_kwargs(kwargs, stream_setup)
        result = scope.run(wrapped, args, kwargs)
        return _completed(scope, result, accumulator, SyncStreamProxy)

    return wrapper


def async_wrapper(describe: Describe, stream_setup: StreamSetup | None = None) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        async def call(kwargs: dict) -> Any:
            scope = _begin(describe, instance, kwargs)
            if scope is None:
                return await wrapped(*args, **kwargs)
            accumulator, kwargs = _stream_kwargs(kwargs, stream_setup)
            result = await scope.arun(wrapped, args, kwargs)
            return _completed(scope, result, accumulator, AsyncStreamProxy)

        return call(kwargs)

    return wrapper
