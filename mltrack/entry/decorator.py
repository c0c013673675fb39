"""``@track``: one MLflow run per call of the decorated function (sync, async, generator, async generator)."""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any, Callable, Mapping, TypeVar, overload

from mltrack import _safety
from mltrack.config import get_settings
from mltrack.engine.process import RawCall
from mltrack.entry import _runs, _seen
from mltrack.instrumentation._open_streams import finish_run_streams
from mltrack.entry._log import defer_call
from mltrack.providers import _registry
from mltrack.run_state import RunHandle

F = TypeVar("F", bound=Callable[..., Any])
_SECRET_HINTS = ("key", "token", "secret", "password", "passwd", "authorization", "credential", "auth")
_MAX_PARAM = 500


def _arg_params(func: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, str]:
    """The function's arguments as run params (``log_args=True``), secrets left out, values cut to 500 chars."""
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return {}
    out = {}
    for name, value in bound.arguments.items():
        if name in ("self", "cls") or any(hint in name.lower() for hint in _SECRET_HINTS):
            continue
        out[name] = repr(value)[:_MAX_PARAM]
    return out


class _Scope:
    """One run opened by ``@track`` for one call of the function."""

    __slots__ = ("handle", "started", "closed")

    def __init__(self, handle: RunHandle) -> None:
        self.handle = handle
        self.started = time.perf_counter()
        self.closed = False

    @classmethod
    def open(cls, func: Callable[..., Any], name: str, tags: Mapping[str, Any] | None, experiment: str | None,
             log_args: bool, args: tuple, kwargs: dict) -> "_Scope | None":
        settings = get_settings()
        if not settings.enabled:
            return None
        try:
            params = _arg_params(func, args, kwargs) if log_args else None
            return cls(_runs.open_run(name, settings, tags=tags, experiment=experiment, params=params))
        except Exception as exc:  # noqa: BLE001
            _safety.report_internal_error("opening a run", exc)
            return None

    def log_result(self, result: Any) -> None:
        """A function that returns an LLM response gets that call logged into its run, with no other code."""
        try:
            if _registry.is_llm_response(result) and not _seen.logged(result):
                latency = (time.perf_counter() - self.started) * 1000.0
                _seen.remember(result, defer_call(RawCall(response=result, latency_ms=latency), self.handle))
        except Exception as exc:  # noqa: BLE001
            _safety.report_internal_error("logging the returned response", exc)

    def close(self, error: BaseException | None, keep: Any = None) -> None:
        """End the run; streams of it still open are recorded first, except ``keep`` (the returned value)."""
        if self.closed:
            return
        self.closed = True
        _safety.guarded("recording streams left open", finish_run_streams, self.handle, keep)
        try:
            _runs.close_run(self.handle, error, time.perf_counter() - self.started)
        except Exception as exc:  # noqa: BLE001
            _safety.report_internal_error("closing a run", exc)


def _wrap_function(func: Callable[..., Any], open_scope: Callable[[tuple, dict], _Scope | None]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = open_scope(args, kwargs)
        if scope is None:
            return func(*args, **kwargs)
        token = _runs.activate(scope.handle)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            _runs.deactivate(token)
            scope.close(exc)
            raise
        _runs.deactivate(token)
        scope.log_result(result)
        scope.close(None, keep=result)
        return result

    return wrapper


def _wrap_coroutine(func: Callable[..., Any], open_scope: Callable[[tuple, dict], _Scope | None]) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = open_scope(args, kwargs)
        if scope is None:
            return await func(*args, **kwargs)
        token = _runs.activate(scope.handle)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            _runs.deactivate(token)
            scope.close(exc)
            raise
        _runs.deactivate(token)
        scope.log_result(result)
        scope.close(None, keep=result)
        return result

    return wrapper


def _wrap_generator(func: Callable[..., Any], open_scope: Callable[[tuple, dict], _Scope | None]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = open_scope(args, kwargs)
        if scope is None:
            return (yield from func(*args, **kwargs))
        gen = func(*args, **kwargs)
        send_value: Any = None
        pending: BaseException | None = None
        try:
            while True:
                token = _runs.activate(scope.handle)
                try:
                    if pending is not None:
                        exc, pending = pending, None
                        item = gen.throw(exc)
                    else:
                        item = gen.send(send_value)
                except StopIteration as stop:
                    scope.close(None)
                    return stop.value
                finally:
                    _runs.deactivate(token)
                try:
                    send_value = yield item
                except GeneratorExit:
                    token = _runs.activate(scope.handle)
                    try:
                        gen.close()
                    finally:
                        _runs.deactivate(token)
                    raise
                except BaseException as exc:  # thrown in by the consumer: pass it to the wrapped generator
                    pending = exc
        except BaseException as exc:
            scope.close(exc)
            raise

    return wrapper


def _wrap_async_generator(func: Callable[..., Any],
                          open_scope: Callable[[tuple, dict], _Scope | None]) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = open_scope(args, kwargs)
        agen = func(*args, **kwargs)
        if scope is None:
            async for item in agen:
                yield item
            return
        send_value: Any = None
        pending: BaseException | None = None
        try:
            while True:
                token = _runs.activate(scope.handle)
                try:
                    if pending is not None:
                        exc, pending = pending, None
                        item = await agen.athrow(exc)
                    else:
                        item = await agen.asend(send_value)
                except StopAsyncIteration:
                    scope.close(None)
                    return
                finally:
                    _runs.deactivate(token)
                try:
                    send_value = yield item
                except GeneratorExit:
                    token = _runs.activate(scope.handle)
                    try:
                        await agen.aclose()
                    finally:
                        _runs.deactivate(token)
                    raise
                except BaseException as exc:
                    pending = exc
        except BaseException as exc:
            scope.close(exc)
            raise

    return wrapper


@overload
def track(func: F) -> F: ...
@overload
def track(func: str | None = None, *, name: str | None = None, tags: Mapping[str, Any] | None = None,
          experiment: str | None = None, log_args: bool = False) -> Callable[[F], F]: ...


def track(func: Any = None, *, name: str | None = None, tags: Mapping[str, Any] | None = None,
          experiment: str | None = None, log_args: bool = False) -> Any:
    """Run each call of the decorated function in its own MLflow run (nested inside an active one).

    Usable bare (``@track``) or called (``@track(name=..., tags=..., experiment=..., log_args=...)``).
    """
    if isinstance(func, str) and name is None:
        func, name = None, func
    if func is None:
        return lambda f: track(f, name=name, tags=tags, experiment=experiment, log_args=log_args)
    if not callable(func):
        raise TypeError(f"@track decorates a function, got {type(func).__name__}")
    run_name = name or getattr(func, "__name__", "tracked")

    def open_scope(args: tuple, kwargs: dict) -> _Scope | None:
        return _Scope.open(func, run_name, tags, experiment, log_args, args, kwargs)

    if inspect.isasyncgenfunction(func):
        return _wrap_async_generator(func, open_scope)
    if inspect.isgeneratorfunction(func):
        return _wrap_generator(func, open_scope)
    if inspect.iscoroutinefunction(func):
        return _wrap_coroutine(func, open_scope)
    return _wrap_function(func, open_scope)
