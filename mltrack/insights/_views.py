"""What a filter reads of one trace: a light view built from an MLflow ``Trace`` or straight from store rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

TOKEN_USAGE_KEY = "mlflow.trace.tokenUsage"  # MLflow's aggregate of a trace's token usage (trace metadata)
COST_KEY = "mlflow.trace.cost"  # MLflow's aggregate of a trace's cost in USD (trace metadata)
SPAN_TOKENS = "mlflow.chat.tokenUsage"  # what mltrack (and MLflow's autologgers) put on LLM spans
SPAN_COST = "mlflow.llm.cost"


class SpanView:
    """One span: name, type, status, and attributes decoded only when a filter reads them."""

    __slots__ = ("name", "type", "status", "_attributes", "_content")

    def __init__(self, name: str | None, type: str | None, status: str | None,
                 attributes: Mapping[str, Any] | None = None, content: str | None = None) -> None:
        self.name = name
        self.type = type
        self.status = status
        self._attributes = attributes
        self._content = content

    @property
    def attributes(self) -> Mapping[str, Any]:
        if self._attributes is None:
            self._attributes = _decode_content_attributes(self._content)
        return self._attributes


def _decode_content_attributes(content: str | None) -> dict[str, Any]:
    """A stored span's attributes: the span JSON keeps each attribute value JSON-encoded once more."""
    if not content:
        return {}
    raw = json.loads(content).get("attributes") or {}
    decoded = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            decoded[key] = value
    return decoded


@dataclass(frozen=True)
class AssessmentView:
    kind: str  # "feedback" or "expectation"
    name: str
    value: Any


@dataclass
class TraceView:
    """The parts of one trace a filter can read."""

    trace_id: str
    status: str
    timestamp_ms: int
    execution_time_ms: int | None
    name: str | None
    tags: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    spans: list[SpanView] = field(default_factory=list)
    assessments: list[AssessmentView] = field(default_factory=list)
    _tokens: Any = field(default=False, repr=False)
    _cost: Any = field(default=False, repr=False)

    @property
    def total_tokens(self) -> int | None:
        """The sum over the spans' token usage, else MLflow's aggregate in the trace metadata."""
        if self._tokens is False:
            self._tokens = _aggregate(self.metadata.get(TOKEN_USAGE_KEY), self.spans, SPAN_TOKENS, "total_tokens")
            if self._tokens is not None:
                self._tokens = int(self._tokens)
        return self._tokens

    @property
    def total_cost(self) -> Decimal | None:
        """The trace's cost in USD: the exact sum over the spans' cost, else MLflow's aggregate."""
        if self._cost is False:
            self._cost = _aggregate(self.metadata.get(COST_KEY), self.spans, SPAN_COST, "total_cost")
        return self._cost


def to_decimal(value: Any) -> Decimal | None:
    """A number as Decimal (floats through their shortest repr); None for anything else, booleans included."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, float)):
        return Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _aggregate(metadata_json: str | None, spans: list[SpanView], attribute: str, key: str) -> Decimal | None:
    """The exact sum over the spans that carry ``attribute``; MLflow's trace-level aggregate when none does."""
    total = None
    for span in spans:
        usage = span.attributes.get(attribute)
        if isinstance(usage, dict):
            part = to_decimal(usage.get(key))
            if part is not None:
                total = part if total is None else total + part
    if total is not None or not metadata_json:
        return total
    try:
        return to_decimal(json.loads(metadata_json).get(key))
    except (ValueError, AttributeError):
        return None


def _status_text(status: Any) -> str | None:
    code = getattr(status, "status_code", status)
    code = getattr(code, "value", code)
    return None if code is None else str(code)


def view_of_trace(trace: Any) -> TraceView:
    """The view of an MLflow ``Trace`` object (any store, including a remote server)."""
    info = trace.info
    spans = [SpanView(s.name, s.span_type, _status_text(s.status), attributes=s.attributes)
             for s in (trace.data.spans if trace.data else [])]
    assessments = [AssessmentView("feedback" if a.feedback is not None else "expectation", a.name,
                                  a.feedback.value if a.feedback is not None else a.expectation.value)
                   for a in (info.assessments or []) if a.valid is not False
                   and (a.feedback is not None or a.expectation is not None)]
    tags = dict(info.tags or {})
    return TraceView(trace_id=info.trace_id, status=_status_text(info.state) or "", timestamp_ms=info.request_time,
                     execution_time_ms=info.execution_duration, name=tags.get("mlflow.traceName"), tags=tags,
                     metadata=dict(info.trace_metadata or {}), spans=spans, assessments=assessments)
