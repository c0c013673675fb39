"""``LLMTracker``: log LLM calls by hand, or through a decorator with custom extractors, into a run."""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import threading
import time
from typing import Any, Callable, Mapping

from mltrack import _safety, writer
from mltrack.config import get_settings
from mltrack.engine.budgets import ensure_within_budget
from mltrack.engine.process import RawCall
from mltrack.entry import _runs, _seen
from mltrack.entry._log import defer_call, safe_record_call
from mltrack.record import LLMCall
from mltrack.run_state import RunHandle


class LLMTracker:
    """Logs LLM calls into the active run, or into ``run_id``; with neither, into a run of its own.

    ``model`` / ``provider`` are defaults for calls that do not say (a response object's own model wins).
    """

    def __init__(self, model: str | None = None, provider: str | None = None, run_id: str | None = None) -> None:
        self.model = model
        self.provider = provider
        self._run_id = run_id
        self._bound: RunHandle | None = None
        self._own: RunHandle | None = None
        self._own_lock = threading.Lock()

    @classmethod
    def _bound_to(cls, handle: RunHandle, model: str | None, provider: str | None) -> "LLMTracker":
        tracker = cls(model=model, provider=provider)
        tracker._bound = handle
        return tracker

    def _handle(self) -> RunHandle | None:
        settings = get_settings()
        if not settings.enabled:
            return None
        if self._bound is not None:
            return _runs.for_this_process(self._bound)
        if self._run_id is not None:
            return _runs.for_this_process(_runs.external_run(self._run_id, settings.tracking_uri))
        handle = _runs.current_run()
        if handle is not None:
            return handle
        if self._own is None:
            with self._own_lock:  # threads sharing a tracker outside any run share its one run
                if self._own is None:
                    name = "llm-tracker-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
                    self._own = _runs.open_run(name, settings, kind="tracker")
        return _runs.for_this_process(self._own)

    @property
    def run_id(self) -> str | None:
        """The MLflow run id this tracker logs into now (waits for the run to be created if needed)."""
        handle = _safety.guarded("resolving the run", self._handle)
        if handle is None:
            return None
        if handle.known_run_id is None:
            writer.wait_run_id(handle)
        return handle.wait_run_id(timeout=0)

    @property
    def totals(self) -> dict[str, Any]:
        """``{"calls", "prompt_tokens", "completion_tokens", "total_tokens", "cost"}`` of its run so far."""
        handle = _safety.guarded("resolving the run", self._handle)
        if handle is None:
            return {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}
        return handle.totals()

    def log_prompt_response(
        self,
        prompt: Any,
        response: Any,
        model: str | None = None,
        provider: str | None = None,
        token_usage: Any = None,
        latency_ms: float | None = None,
        params: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> LLMCall:
        """Log one call that already happened; returns its normalized, priced record (a plain frozen value).

        Raises :class:`ConfigError` when the configuration is invalid (as every mltrack entry point does)."""
        get_settings()  # a bad config is loud here, not swallowed by the safety net below
        ticket = _seen.ticket_of(response)
        if ticket is not None:  # already logged (by instrumentation, usually): that record, not a second one
            logged = _safety.guarded("reading a logged call", ticket)
            if logged is not None:
                return logged
        raw = RawCall(prompt=prompt, response=response, token_usage=token_usage, model=model, provider=provider,
                      fallback_model=self.model, fallback_provider=self.provider, latency_ms=latency_ms,
                      params=_as_mapping(params, "params"), metadata=_as_mapping(metadata, "metadata"))
        call = safe_record_call(raw, _safety.guarded("resolving the run", self._handle))
        _seen.remember(response, lambda: call)
        return call

    def track_llm_call(
        self,
        model: str | None = None,
        provider: str | None = None,
        extract_prompt: Callable[[tuple, dict], Any] | None = None,
        extract_response: Callable[[Any], Any] | None = None,
        extract_token_usage: Callable[[Any], Any] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function that makes one LLM call: it is timed, logged, and refused once over budget."""

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            def before() -> RunHandle | None:
                get_settings()  # ConfigError reaches the caller, before the call is made
                try:
                    handle = self._handle()
                except Exception as exc:  # noqa: BLE001 - the safety net
                    _safety.report_internal_error("resolving the run", exc)
                    return None
                settings = get_settings()
                if settings.llm_cost_limit_error is not None and settings.enabled:
                    ensure_within_budget(handle, settings)
                return handle

            def after(handle: RunHandle | None, inside: list[int], args: tuple, kwargs: dict, result: Any,
                      error: BaseException | None, latency_ms: float) -> None:
                if inside[0] or (error is None and _seen.logged(result)):
                    return  # instrumentation (or another entry point) logged this call already: one record
                raw = RawCall(
                    prompt=_extract("extract_prompt", extract_prompt, args, kwargs) if extract_prompt else None,
                    call_kwargs=None if extract_prompt else kwargs,
                    response=_extract("extract_response", extract_response, result) if extract_response and
                    error is None else (result if error is None else None),
                    source=result if extract_response and error is None else None,
                    token_usage=_extract("extract_token_usage", extract_token_usage, result)
                    if extract_token_usage and error is None else None,
                    model=model or _string(kwargs.get("model")), provider=provider,
                    fallback_model=self.model, fallback_provider=self.provider,
                    latency_ms=latency_ms, error=type(error).__name__ if error is not None else None,
                )
                ticket = defer_call(raw, handle)
                if error is None:
                    _seen.remember(result, ticket)

            def enter(handle: RunHandle | None) -> tuple[list[int], Any, Any]:
                """Count instrumented calls made inside, and let them log into this tracker's run."""
                inside, watch_token = _seen.watch()
                return inside, watch_token, _runs.activate(handle) if handle is not None else None

            def leave(tokens: tuple[list[int], Any, Any]) -> None:
                if tokens[2] is not None:
                    _safety.guarded("leaving the run", _runs.deactivate, tokens[2])
                _seen.unwatch(tokens[1])

            if inspect.iscoroutinefunction(func):
                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    handle = before()
                    tokens = enter(handle)
                    started = time.perf_counter()
                    try:
                        result = await func(*args, **kwargs)
                    except Exception as exc:
                        leave(tokens)
                        after(handle, tokens[0], args, kwargs, None, exc, (time.perf_counter() - started) * 1000.0)
                        raise
                    except BaseException:
                        leave(tokens)
                        raise
                    leave(tokens)
                    after(handle, tokens[0], args, kwargs, result, None, (time.perf_counter() - started) * 1000.0)
                    return result

                return async_wrapper

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                handle = before()
                tokens = enter(handle)
                started = time.perf_counter()
                try:
                    result = func(*args, **kwargs)
                except Exception as exc:
                    leave(tokens)
                    after(handle, tokens[0], args, kwargs, None, exc, (time.perf_counter() - started) * 1000.0)
                    raise
                except BaseException:
                    leave(tokens)
                    raise
                leave(tokens)
                after(handle, tokens[0], args, kwargs, result, None, (time.perf_counter() - started) * 1000.0)
                return result

            return wrapper

        return decorate


def _extract(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a user's extractor must not break their call
        _safety.report_internal_error(f"the {what} extractor", exc)
        return None


def _as_mapping(value: Any, name: str) -> dict[str, Any]:
    """``params`` / ``metadata`` as a dict; anything else is kept as text rather than raised on."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    return {name: repr(value)}


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None
