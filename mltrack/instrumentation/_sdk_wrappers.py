"""Wrapper factories shared by the SDK instrumentations: plain calls, ``stream=True`` calls, sync and async."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from mltrack import _safety
from mltrack.config import get_settings
from mltrack.instrumentation._call import CallScope
from mltrack.instrumentation._streams import AsyncStreamProxy, SyncStreamProxy
from mltrack.providers import _registry
from mltrack.providers._base import Request, StreamAccumulator

# describe(instance, kwargs) -> (provider, metadata): which provider/endpoint this client talks to.
Describe = Callable[[Any, dict], tuple[str, Mapping[str, Any]]]
# stream_setup(kwargs, settings) -> (accumulator, kwargs to send): may add stream_options.
StreamSetup = Callable[[dict, Any], tuple[StreamAccumulator, dict]]


def _begin(describe: Describe, instance: Any, args: tuple, kwargs: dict) -> CallScope | None:
    try:
        provider, metadata = describe(instance, kwargs)
        request = _registry.extract_request(provider, args, kwargs)
    except Exception as exc:  # noqa: BLE001
        _safety.report_internal_error("reading an LLM request", exc)
        return None
    return CallScope.begin(provider, request, metadata)


def _unwrap_raw(result: Any) -> Any:
    """``with_raw_response`` calls return an API response object: its parsed body is the LLM response."""
    if _registry.is_llm_response(result):
        return result
    parse = getattr(result, "parse", None)
    if callable(parse) and type(result).__name__ in ("LegacyAPIResponse", "APIResponse"):
        return parse()
    return None


def sync_wrapper(describe: Describe, stream_setup: StreamSetup | None = None) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        scope = _begin(describe, instance, args, kwargs)
        if scope is None:
            return wrapped(*args, **kwargs)
        accumulator = None
        if kwargs.get("stream") is True and stream_setup is not None:
            accumulator, kwargs = _safety.guarded("preparing a stream", stream_setup, kwargs, get_settings(),
                                                  default=(None, kwargs))
        scope.enter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            scope.exit()
            scope.finish(error=exc)
            raise
        scope.exit()
        if accumulator is not None:
            return SyncStreamProxy(result, scope, accumulator)
        scope.finish(response=_safety.guarded("reading an LLM response", _unwrap_raw, result))
        return result

    return wrapper


def async_wrapper(describe: Describe, stream_setup: StreamSetup | None = None) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        async def call() -> Any:
            nonlocal kwargs
            scope = _begin(describe, instance, args, kwargs)
            if scope is None:
                return await wrapped(*args, **kwargs)
            accumulator = None
            if kwargs.get("stream") is True and stream_setup is not None:
                accumulator, kwargs = _safety.guarded("preparing a stream", stream_setup, kwargs, get_settings(),
                                                      default=(None, kwargs))
            scope.enter()
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                scope.exit()
                scope.finish(error=exc)
                raise
            scope.exit()
            if accumulator is not None:
                return AsyncStreamProxy(result, scope, accumulator)
            scope.finish(response=_safety.guarded("reading an LLM response", _unwrap_raw, result))
            return result

        return call()

    return wrapper


def request_of(provider: str, args: tuple, kwargs: dict) -> Request:
    return _registry.extract_request(provider, args, kwargs)
