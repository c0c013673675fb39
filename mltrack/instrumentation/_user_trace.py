"""Instrumented calls inside the user's own MLflow trace (``@mlflow.trace``, ``mlflow.start_span``).

Such a call becomes a child ``LLM`` span of the user's live span, made here on the caller's thread with
MLflow's own span API (the writer may run in another process, which cannot reach the user's trace), so the
call is priced at once. Its record goes to the writer marked "no span of its own", and it never opens a
``chat-*`` run: it logs into the active run if there is one, else only the span is written.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, Callable

from mltrack import writer
from mltrack.config import get_settings
from mltrack.engine.budgets import check_limits
from mltrack.engine.process import RawCall, process
from mltrack.entry._log import flags_from
from mltrack.record import LLMCall
from mltrack.run_state import RunHandle
from mltrack.writer.ops import LogCall


def user_span(settings: Any) -> Any | None:
    """The user's live MLflow span in this context, or None (MLflow not imported, or no span, or traces off)."""
    if not settings.llm_log_traces:
        return None
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or getattr(mlflow.__spec__, "_initializing", False):
        return None
    get_span = getattr(mlflow, "get_current_active_span", None)
    return get_span() if callable(get_span) else None


def record_in_user_trace(raw: RawCall, handle: RunHandle | None, parent: Any) -> Callable[[], LLMCall | None]:
    """Price the call now, hand it to the writer without a span, and add its span under ``parent``.

    Returns the ticket of the record (see ``entry/_seen.py``). Raises on malformed input (callers guard it)."""
    settings = get_settings()
    if handle is not None:
        handle.settle()  # calls of this run priced later but made earlier come first: steps stay in call order
    processed = process(raw, settings, handle)
    flags = flags_from(settings, processed.call.provider)
    if handle is not None and processed.snapshot is not None:
        budget_tag = check_limits(handle, processed.snapshot, settings)
        writer.submit(LogCall(handle, processed, replace(flags, traces=False), budget_tag))
    if flags.traces:  # off when MLflow's autolog traced the call already
        _child_span(parent, processed, flags)
    call = processed.call
    return lambda: call


def _child_span(parent: Any, processed: Any, flags: Any) -> None:
    """The same ``LLM`` span (attributes, times, inputs/outputs) mltrack's writer would write, under ``parent``."""
    import mlflow

    from mltrack.writer.payload import call_record
    from mltrack.writer.spans import llm_span

    piece = llm_span(call_record(processed, flags))
    span = mlflow.start_span_no_context(piece["name"], span_type="LLM", parent_span=parent, inputs=piece["inputs"],
                                        attributes=piece["attributes"], start_time_ns=piece["start_ns"])
    span.end(outputs=piece["outputs"], status=piece["status"], end_time_ns=piece["end_ns"])
