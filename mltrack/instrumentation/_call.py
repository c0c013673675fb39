"""The life of one instrumented call: which run it goes to, the budget check, timing, and its one record."""

from __future__ import annotations

import datetime as _dt
import threading
import time
from contextvars import ContextVar
from typing import Any, Mapping

from mltrack import _safety
from mltrack.config import get_settings
from mltrack.engine.budgets import ensure_within_budget
from mltrack.engine.process import RawCall
from mltrack.entry import _runs, _seen
from mltrack.entry._log import defer_call
from mltrack.errors import BudgetExceededError, ConfigError
from mltrack.instrumentation._user_trace import record_in_user_trace, user_span
from mltrack.providers._base import Extracted, Request, StreamAccumulator
from mltrack.run_state import RunHandle

_finish_lock = threading.Lock()  # a stream may be finalized by its consumer and by its run's end at once

# Set while an instrumented call runs, so a framework that calls an SDK underneath is logged once, not twice.
_inside: ContextVar[bool] = ContextVar("mltrack_inside_llm_call", default=False)


class CallScope:
    """One instrumented call, from just before the request to its single record (finalized once)."""

    __slots__ = ("provider", "request", "call_kwargs", "metadata", "handle", "standalone", "started", "finished",
                 "_token", "user_span", "started_wall")

    def __init__(self, provider: str, request: Request | None, metadata: Mapping[str, Any], handle: RunHandle | None,
                 standalone: bool, call_kwargs: dict | None = None, user_span: Any = None) -> None:
        self.provider = provider
        self.request = request  # what a framework read from its call; SDK calls give their kwargs instead
        self.call_kwargs = call_kwargs
        self.metadata = dict(metadata)
        self.handle = handle
        self.standalone = standalone
        self.user_span = user_span  # the user's live MLflow span the call is a child of (see _user_trace.py)
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.finished = False
        self._token: Any = None

    @classmethod
    def begin(cls, provider: str, request: Request | None, metadata: Mapping[str, Any] | None = None, *,
              call_kwargs: dict | None = None) -> "CallScope | None":
        """A scope for a call about to be made, or None to pass it through untouched.

        Raises :class:`BudgetExceededError` (before any request is sent) once the run's hard limit is reached.
        """
        if _inside.get():
            return None
        try:
            settings = get_settings()
            if not settings.enabled or not settings.llm_tracking_enabled:
                return None
            handle = _runs.current_run()
            ensure_within_budget(handle, settings)
            standalone = False
            parent = user_span(settings)
            if handle is None and parent is None:
                if not settings.standalone_runs:
                    return None
                name = "chat-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
                handle, standalone = _runs.open_run(name, settings, kind="standalone"), True
            _seen.note_instrumented()
            return cls(provider, request, metadata or {}, handle, standalone, call_kwargs, parent)
        except BudgetExceededError:
            raise
        except ConfigError as exc:  # the SDK call is the user's: it goes through untracked, said once
            _safety.warn_once(f"config-error:{exc}", f"mltrack: invalid configuration, this LLM call is not "
                              f"tracked (mltrack's own entry points raise ConfigError):\n{exc}", UserWarning, 4)
            return None
        except Exception as exc:  # noqa: BLE001
            _safety.report_internal_error("preparing an instrumented call", exc)
            return None

    def enter(self) -> None:
        self._token = _inside.set(True)

    def exit(self) -> None:
        if self._token is not None:
            _inside.reset(self._token)
            self._token = None

    def run(self, wrapped: Any, args: tuple, kwargs: dict) -> Any:
        """Make the request inside the scope; a failure is recorded (once) and reaches the caller unchanged."""
        self.enter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            self.exit()
            self.finish(error=exc)
            raise
        self.exit()
        return result

    async def arun(self, wrapped: Any, args: tuple, kwargs: dict) -> Any:
        """:meth:`run` for coroutine functions."""
        self.enter()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            self.exit()
            self.finish(error=exc)
            raise
        self.exit()
        return result

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def finish(self, *, response: Any = None, extracted: Extracted | None = None, error: BaseException | None = None,
               ttft_ms: float | None = None, stream_end_ms: float | None = None, content_events: int = 0,
               extra_metadata: Mapping[str, Any] | None = None, ended_ms: float | None = None) -> None:
        """Record the call once (later calls do nothing, whichever thread makes them); never raises.
        ``ended_ms``: when the call ended, from its start, if not now (a stream left early: its last chunk)."""
        with _finish_lock:
            if self.finished:
                return
            self.finished = True
        try:
            latency = self.elapsed_ms() if ended_ms is None else ended_ms
            metadata = {**self.metadata, **extra_metadata} if extra_metadata else self.metadata
            request = self.request
            raw = RawCall(
                prompt=request.prompt if request is not None else None,
                call_kwargs=self.call_kwargs,
                response=extracted.text if extracted is not None else response,
                token_usage=extracted.usage if extracted is not None else None,
                model=extracted.model if extracted is not None else None,
                provider=self.provider,
                fallback_model=request.model if request is not None and isinstance(request.model, str) else None,
                latency_ms=latency,
                timestamp=self.started_wall + latency / 1000.0,
                ttft_ms=ttft_ms,
                stream_end_ms=stream_end_ms,
                content_events=content_events,
                params=request.params if request is not None else {},
                metadata=metadata,
                error=type(error).__name__ if error is not None else None,
                service_tier=extracted.service_tier if extracted is not None else None,
            )
            if self.user_span is not None:
                ticket = record_in_user_trace(raw, self.handle, self.user_span)
            else:
                ticket = defer_call(raw, self.handle)
            if response is not None:
                _seen.remember(response, ticket)  # log_prompt_response / @track / track_llm_call see it: one record
        except Exception as exc:  # noqa: BLE001
            _safety.report_internal_error("recording an instrumented call", exc)
        finally:
            if self.standalone and self.handle is not None:
                _safety.guarded("closing a run", _runs.close_run, self.handle, error, None)

    def finish_stream(self, accumulator: StreamAccumulator, *, complete: bool, error: BaseException | None,
                      first_ms: float | None, last_ms: float | None, ended_ms: float | None = None) -> None:
        extra: dict[str, Any] = {"stream": True}
        if not complete:
            extra["stream_incomplete"] = True
        self.finish(extracted=accumulator.finish(), error=error, ttft_ms=first_ms, stream_end_ms=last_ms,
                    content_events=accumulator.content_events, extra_metadata=extra, ended_ms=ended_ms)
