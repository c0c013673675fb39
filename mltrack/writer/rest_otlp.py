"""Finished spans as an OTLP/HTTP JSON export request, the way MLflow's server reads them at ``/v1/traces``.

The server decodes each attribute's AnyValue and stores it JSON-encoded, as MLflow's own span attributes are
(``mlflow.spanType``, ``mlflow.spanInputs``, ...), so a dict travels as a key-value list, not as JSON text.
Standard library only (no protobuf): the server accepts ``application/json`` with hex ids.
"""

from __future__ import annotations

import base64
from typing import Any, Iterable, Mapping

from mltrack.writer.rest_entities import FinishedSpan, json_double

__all__ = ["export_request"]


def _any_value(value: Any) -> dict[str, Any]:
    """A Python value as an OTLP JSON AnyValue (the server JSON-encodes it back as MLflow's span attribute)."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": json_double(value)}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": [{"key": str(k), "value": _any_value(v)} for k, v in value.items()]}}
    return {"stringValue": str(value)}


# The span types MLflow's UI shows at its default verbosity (mlflow.tracing.utils.default_log_level); others DEBUG.
_INFO_SPAN_TYPES = frozenset({"LLM", "CHAT_MODEL", "TOOL", "RETRIEVER", "AGENT", "EMBEDDING"})


def _otlp_span(span: FinishedSpan) -> dict[str, Any]:
    attributes = {"mlflow.spanType": span.span_type,
                  "mlflow.spanLogLevel": 20 if span.span_type in _INFO_SPAN_TYPES else 10, **span.attributes}
    if span.inputs is not None:
        attributes["mlflow.spanInputs"] = span.inputs
    if span.outputs is not None:
        attributes["mlflow.spanOutputs"] = span.outputs
    if span.parent_id is None:  # what MLflow's client records as the trace's name
        attributes.setdefault("mlflow.traceTag.mlflow.traceName", span.name)
    out: dict[str, Any] = {
        "traceId": span.trace_id, "spanId": span.span_id, "name": span.name, "kind": 1,  # SPAN_KIND_INTERNAL
        "startTimeUnixNano": str(int(span.start_time_ns)), "endTimeUnixNano": str(int(span.end_time_ns)),
        "attributes": [{"key": k, "value": _any_value(v)} for k, v in attributes.items()],
        "status": {"code": 2 if span.status == "ERROR" else 1, "message": span.status_message},
    }
    if span.parent_id:
        out["parentSpanId"] = span.parent_id
    return out



def export_request(spans: Iterable[FinishedSpan]) -> dict[str, Any]:
    """The JSON body of one OTLP export request holding ``spans``."""
    scope = {"scope": {"name": "mltrack"}, "spans": [_otlp_span(s) for s in spans]}
    return {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [scope]}]}
