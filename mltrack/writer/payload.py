"""What one call becomes in MLflow: its metric rows and its line in the ``llm/`` calls artifact."""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the writer process reads records without the engine
    from mltrack.engine.process import Processed
    from mltrack.writer.ops import CallFlags

Row = tuple[str, float, int, int]  # key, value, step, timestamp ms


def call_metrics(processed: Processed, flags: CallFlags) -> list[Row]:
    """Per-call and cumulative ``llm.*`` metrics at step = the call's index in its run."""
    if not flags.llm:
        return []
    call, snap = processed.call, processed.snapshot
    step, ts = call.step, int(call.timestamp * 1000)
    rows: list[Row] = []
    if flags.tokens:
        rows += [
            ("llm.tokens.prompt", call.prompt_tokens, step, ts),
            ("llm.tokens.completion", call.completion_tokens, step, ts),
            ("llm.tokens.total", call.total_tokens, step, ts),
        ]
        if snap is not None:
            rows += [
                ("llm.tokens.cumulative.prompt", snap.prompt_tokens, step, ts),
                ("llm.tokens.cumulative.completion", snap.completion_tokens, step, ts),
                ("llm.tokens.cumulative.total", snap.total_tokens, step, ts),
            ]
    if flags.costs:
        if call.cost is not None:
            rows += [
                ("llm.cost.prompt", float(call.cost.prompt), step, ts),
                ("llm.cost.completion", float(call.cost.completion), step, ts),
                ("llm.cost.total", float(call.cost.total), step, ts),
            ]
        if snap is not None and snap.cost is not None:
            rows.append(("llm.cost.cumulative", float(snap.cost), step, ts))
    if call.latency_ms is not None:
        rows.append(("llm.latency", float(call.latency_ms), step, ts))
    if call.ttft_ms is not None:
        rows.append(("llm.ttft_ms", float(call.ttft_ms), step, ts))
    if call.inter_token_latency_ms is not None:
        rows.append(("llm.inter_token_latency_ms", float(call.inter_token_latency_ms), step, ts))
    if call.tokens_per_second is not None:
        rows.append(("llm.tokens_per_second", float(call.tokens_per_second), step, ts))
    if snap is not None:
        rows += [("llm.calls", snap.calls, step, ts), ("llm.errors", snap.errors, step, ts)]
    return rows


_MAX_DEPTH = 32


def _text_of(value: Any) -> str:
    for render in (str, repr):
        try:
            return render(value)
        except Exception:  # noqa: BLE001 - a user object that cannot even print itself
            continue
    return f"<{type(value).__name__}>"


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Plain JSON data for any user value (SDK models dumped, containers walked, the rest as text); never raises."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if depth >= _MAX_DEPTH:
        return _text_of(value)
    try:
        if isinstance(value, dict):
            return {_text_of(k) if not isinstance(k, str) else k: _jsonable(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v, depth + 1) for v in value]
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            return _jsonable(dump(mode="json", exclude_none=True), depth + 1)
    except Exception:  # noqa: BLE001 - fall back to text
        pass
    return _text_of(value)


def call_record(processed: Processed, flags: CallFlags) -> dict[str, Any]:
    """One call as plain JSON data: its line in the calls artifact (and what a trace span would carry).

    Prompt / response text only when their switches are on."""
    call = processed.call
    line: dict[str, Any] = {
        "step": call.step,
        "timestamp": _dt.datetime.fromtimestamp(call.timestamp, _dt.timezone.utc).isoformat(),
        "model": call.model,
        "provider": call.provider,
    }
    if flags.tokens:
        line.update(prompt_tokens=call.prompt_tokens, completion_tokens=call.completion_tokens,
                    total_tokens=call.total_tokens, cached_prompt_tokens=call.cached_prompt_tokens,
                    cache_write_tokens=call.cache_write_tokens, reasoning_tokens=call.reasoning_tokens,
                    tokens_estimated=call.tokens_estimated)
    if flags.costs and call.cost is not None:
        line.update(prompt_cost=str(call.cost.prompt), completion_cost=str(call.cost.completion),
                    total_cost=str(call.cost.total))
    line.update(latency_ms=call.latency_ms, ttft_ms=call.ttft_ms, error=call.error)
    if call.inter_token_latency_ms is not None or call.tokens_per_second is not None:
        line.update(inter_token_latency_ms=call.inter_token_latency_ms, tokens_per_second=call.tokens_per_second)
    if call.params:
        line["params"] = _jsonable(call.params)
    if call.metadata:
        line["metadata"] = _jsonable(call.metadata)
    if flags.prompts:
        line["prompt"] = _jsonable(processed.prompt)
    if flags.responses:
        line["response"] = processed.response_text
    return line


def dump_line(record: dict[str, Any]) -> str:
    """The artifact line of a call record."""
    return json.dumps(record, ensure_ascii=False, default=str)


def call_line(processed: Processed, flags: CallFlags) -> str:
    """One JSON line for the calls artifact; prompt/response text only when their switches are on."""
    return dump_line(call_record(processed, flags))
