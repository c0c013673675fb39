"""The plain form of an operation: what the writer needs to write it, as JSON-ready data (no live objects).

The writer builds records in its own threads, right before writing a batch or when spilling to the journal,
so the caller's thread never pays for it. A record names its run by the client-generated run key
(``RunHandle.key``) and, when already known, by its MLflow run id. One record is one journal line.

    start  {"t": "s", "k": key, "n": name, "st": start ms, "kd": who opened it (function, context, ...), "g": tags, "a": params,
            "x": experiment name | null, "xe": $MLFLOW_EXPERIMENT_ID | null, "xn": $MLFLOW_EXPERIMENT_NAME | null,
            "p": parent run key | null, "pr": parent run id | null}
    log    {"t": "l", "k": key, "r": run id | null, "m": [[metric, value, step, timestamp ms], ...],
            "g": tags, "c": the call's artifact line as an object, "sp": write a trace span for it}
    tags   {"t": "g", "k": key, "r": run id | null, "g": tags}
    retrieval {"t": "r", "k": key, "r": run id | null, "n": span name, "i": step, "st": start ms, "et": end ms,
            "q": query | null, "d": [document text, ...] | null, "nd": number of documents, "s": "OK" | "ERROR",
            "sp": write a trace span for it}
    judged {"t": "j", "k": key, "r": run id | null, "m": [[metric, value, step, timestamp ms], ...], "g": tags,
            "fb": [{"n": name, "v": score, "ra": rationale, "src": judge model}, ...]}
    end    {"t": "e", "k": key, "r": run id | null, "s": status, "et": end ms, "m": {metric: value},
            "g": tags, "o": owned (mltrack opened the run, so it ends it)}

Times are explicit (start, end, every metric's timestamp), so a record written late, or twice, writes the
same thing as on time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrack._version import __version__
from mltrack.writer.ops import EndRun, LogCall, SetTags, StartRun
from mltrack.writer.payload import call_metrics, call_record

if TYPE_CHECKING:
    from mltrack.run_state import RunHandle

START, LOG, TAGS, END, RETRIEVAL, JUDGED = "s", "l", "g", "e", "r", "j"
RUN_KEY_TAG = "mltrack.run_key"


@dataclass(frozen=True)
class LogRetrieval:
    """One ``track_retrieval`` block (documents are None when their text must not be kept)."""

    handle: RunHandle
    name: str
    step: int
    start: float
    end: float
    query: str | None
    documents: tuple[str, ...] | None
    count: int
    failed: bool
    span: bool  # False inside the user's own MLflow trace (its span was made there)


@dataclass(frozen=True)
class LogJudged:
    """A run's judge scores: ``judge.*`` metric rows, and feedback for the run's trace."""

    handle: RunHandle
    metrics: tuple[tuple[str, float, int, int], ...]
    feedback: tuple[dict[str, Any], ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


def encode(op: Any) -> dict[str, Any] | None:
    """The record of one operation, or None when it writes nothing (LLM tracking was off for that call)."""
    if isinstance(op, LogCall):
        return _log(op)
    handle = op.handle
    if isinstance(op, LogRetrieval):
        return {"t": RETRIEVAL, "k": handle.key, "r": handle.known_run_id, "n": op.name, "i": op.step,
                "st": round(op.start * 1000, 3), "et": round(op.end * 1000, 3), "q": op.query,
                "d": list(op.documents) if op.documents is not None else None, "nd": op.count,
                "s": "ERROR" if op.failed else "OK", "sp": op.span}
    if isinstance(op, LogJudged):
        return {"t": JUDGED, "k": handle.key, "r": handle.known_run_id, "m": [list(row) for row in op.metrics],
                "g": dict(op.tags), "fb": list(op.feedback)}
    if isinstance(op, StartRun):
        parent = handle.parent
        parent_key = parent.key if parent is not None and parent.owned else None
        return {
            "t": START, "k": handle.key, "n": handle.name, "st": int(handle.start_time * 1000), "kd": handle.kind,
            "g": {"mltrack.version": __version__, **handle.tags, RUN_KEY_TAG: handle.key},
            "a": {str(k): str(v) for k, v in op.params.items()},
            "x": handle.experiment,
            "xe": os.environ.get("MLFLOW_EXPERIMENT_ID") or None,
            "xn": os.environ.get("MLFLOW_EXPERIMENT_NAME") or None,
            "p": parent_key,
            "pr": parent.known_run_id if parent is not None else None,
        }
    if isinstance(op, EndRun):
        return {"t": END, "k": handle.key, "r": handle.known_run_id, "s": op.status, "et": int(op.end_time * 1000),
                "m": {str(k): float(v) for k, v in op.metrics.items()},
                "g": {str(k): str(v) for k, v in op.tags.items()}, "o": bool(handle.owned)}
    if isinstance(op, SetTags):
        return {"t": TAGS, "k": handle.key, "r": handle.known_run_id,
                "g": {str(k): str(v) for k, v in op.tags.items()}}
    raise TypeError(f"not a writer operation: {type(op).__name__}")


def _log(op: LogCall) -> dict[str, Any] | None:
    if op.processed is None:
        op.handle.settle()
    processed, flags = op.processed, op.flags
    if processed is None or flags is None or not flags.llm:  # None: pricing failed (reported where it did)
        return None
    tags: dict[str, str] = {}
    snap = processed.snapshot
    if snap is not None:
        if snap.models:
            tags["llm.model"] = snap.models
        if snap.providers:
            tags["llm.provider"] = snap.providers
    if processed.call.error:
        tags["llm.error.type"] = processed.call.error
    if op.budget_tag:
        tags["mltrack.budget.exceeded"] = op.budget_tag
    handle = op.handle
    return {"t": LOG, "k": handle.key, "r": handle.known_run_id, "m": call_metrics(processed, flags), "g": tags,
            "c": call_record(processed, flags), "sp": flags.traces}


def dumps(record: dict[str, Any]) -> str:
    """One journal line (ASCII, so any text survives the file whatever its encoding)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str)


def loads(line: bytes | str) -> dict[str, Any]:
    record = json.loads(line)
    if not isinstance(record, dict) or record.get("t") not in (START, LOG, TAGS, END, RETRIEVAL, JUDGED) or not record.get("k"):
        raise ValueError("not a journal record")
    return record
