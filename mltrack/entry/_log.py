"""The one path every entry point uses to log a call: engine → budgets → writer, under the safety net.

A call whose record somebody receives (``log_prompt_response``) is priced at the call: :func:`safe_record_call`.
A call whose record nobody receives (instrumentation, the response ``@track`` returns, ``track_llm_call``) is
priced later, off the caller's thread: see :func:`defer_call`."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Callable

from mltrack import _safety, writer
from mltrack.config import get_settings
from mltrack.engine.budgets import check_limits
from mltrack.engine.process import RawCall, freeze, freeze_kwargs, process
from mltrack.record import LLMCall
from mltrack.run_state import RunHandle
from mltrack.writer.ops import CallFlags, LogCall


_flags_cache: tuple[Any, CallFlags, CallFlags] | None = None


def flags_from(settings: Any, provider: str | None = None) -> CallFlags:
    """The switches for one call (built once per settings object); no span where MLflow's autolog made one."""
    global _flags_cache
    cached = _flags_cache
    if cached is None or cached[0] is not settings:
        flags = CallFlags(llm=settings.llm_tracking_enabled, tokens=settings.llm_track_token_usage,
                          costs=settings.llm_track_costs, prompts=settings.llm_log_prompts,
                          responses=settings.llm_log_responses, traces=settings.llm_log_traces)
        cached = _flags_cache = (settings, flags, replace(flags, traces=False))
    return cached[2] if cached[1].traces and _mlflow_autolog_on(provider) else cached[1]


def _mlflow_autolog_on(provider: str | None) -> bool:
    """Is ``mlflow.<provider>.autolog()`` on (it makes its own span for the call)? Only asked if mlflow is loaded."""
    if provider is None or "mlflow" not in sys.modules:
        return False
    utils = sys.modules.get("mlflow.utils.autologging_utils")
    flavor = "openai" if provider == "azure" else provider
    return utils is not None and not utils.autologging_is_disabled(flavor)


def record_call(raw: RawCall, handle: RunHandle | None) -> LLMCall:
    """Process one call and hand it to the writer. Raises only on malformed input (callers guard it)."""
    settings = get_settings()
    if not settings.enabled or not settings.llm_tracking_enabled:
        return process(raw, settings, None).call
    if handle is not None:
        handle.settle()  # deferred calls of this run come first: steps and totals stay in call order
    processed = process(raw, settings, handle)
    if handle is not None and processed.snapshot is not None:
        budget_tag = check_limits(handle, processed.snapshot, settings)
        writer.submit(LogCall(handle, processed, flags_from(settings, processed.call.provider), budget_tag))
    return processed.call


def safe_record_call(raw: RawCall, handle: RunHandle | None) -> LLMCall:
    """:func:`record_call` that never raises into user code: a failure is one warning and an empty record."""
    try:
        return record_call(raw, handle)
    except Exception as exc:  # noqa: BLE001 - the safety net
        _safety.report_internal_error("logging an LLM call", exc)
        return failed_call(raw, exc)


def failed_call(raw: RawCall, exc: BaseException) -> LLMCall:
    """The record of a call that could not be logged: what the entry point knew, no tokens, and why."""
    return LLMCall(model=raw.model or raw.fallback_model, provider=raw.provider or raw.fallback_provider,
                   prompt_tokens=0, completion_tokens=0, total_tokens=0, latency_ms=raw.latency_ms,
                   error=raw.error, metadata={"mltrack_error": f"{type(exc).__name__}: {exc}"})


@dataclass(slots=True)
class _Unpriced:
    """A call handed to the writer before the engine saw it; :meth:`RunHandle.settle` resolves it, in order."""

    raw: RawCall
    settings: Any
    op: LogCall

    def resolve(self) -> None:
        try:
            processed = process(self.raw, self.settings, self.op.handle)
            self.op.flags = flags_from(self.settings, processed.call.provider)
            self.op.processed = processed
        except Exception as exc:  # noqa: BLE001 - the safety net (re-raised in strict mode)
            _safety.report_internal_error("logging an LLM call", exc)


def _cost_needed_now(settings: Any) -> bool:
    """A budget limit must see each call's tokens and cost before the next call (and warn on the caller's thread)."""
    return (settings.llm_cost_limit_error is not None or settings.llm_cost_limit_warning is not None
            or settings.llm_token_limit_warning is not None)


def defer_call(raw: RawCall, handle: RunHandle | None) -> Callable[[], LLMCall | None]:
    """Log a call whose record nobody receives. The caller's thread only copies the prompt or the call's kwargs
    (the caller may append to its message list next) and hands the call over; it is priced and totalled on the
    writer thread, or sooner by whoever reads the run's totals. With a budget limit set, it is priced at once.
    Returns a ticket: calling it gives the record (pricing it then if needed), for ``entry/_seen.py``.
    Never raises."""
    try:
        settings = get_settings()
        if handle is None or not settings.enabled or not settings.llm_tracking_enabled or _cost_needed_now(settings):
            done = safe_record_call(raw, handle)
            return lambda: done
        raw.prompt = freeze(raw.prompt)
        if raw.call_kwargs is not None:
            raw.call_kwargs = freeze_kwargs(raw.call_kwargs)
        op = LogCall(handle, None, None)
        handle.defer(_Unpriced(raw, settings, op))
        writer.submit(op)
        return _ticket(op)
    except Exception as exc:  # noqa: BLE001 - the safety net
        _safety.report_internal_error("logging an LLM call", exc)
        return lambda: None


def _ticket(op: LogCall) -> Callable[[], LLMCall | None]:
    """The record of a deferred call once priced (None if pricing failed)."""
    def record() -> LLMCall | None:
        op.handle.settle()
        return op.processed.call if op.processed is not None else None
    return record
