"""Stand-ins for the MLflow entities mltrack's writer passes and reads (same attribute names, same values), and
how MLflow's REST JSON becomes them. Standard library only."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = ["Experiment", "FinishedSpan", "Metric", "PagedList", "Param", "Run", "RunData", "RunInfo", "RunTag",
           "SpanHandle", "ViewType", "experiment_from_json", "json_double", "run_from_json"]


class ViewType:
    """The same values as ``mlflow.entities.ViewType``."""

    ACTIVE_ONLY, DELETED_ONLY, ALL = 1, 2, 3
    _NAMES = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}

    @classmethod
    def name_of(cls, view: int | str) -> str:
        return view if isinstance(view, str) else cls._NAMES[int(view)]


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int = 0


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str = ""
    lifecycle_stage: str = "active"
    tags: Mapping[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str = ""
    user_id: str = ""
    status: str = "RUNNING"
    start_time: int | None = None
    end_time: int | None = None
    artifact_uri: str = ""
    lifecycle_stage: str = "active"

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass(frozen=True)
class RunData:
    metrics: Mapping[str, float] = field(default_factory=dict)  # the latest value of each metric, as in MLflow
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    info: RunInfo
    data: RunData


class PagedList(list):
    """A page of results; ``token`` is the next page's token, or None (like MLflow's PagedList)."""

    def __init__(self, items: Iterable[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


@dataclass(frozen=True)
class FinishedSpan:
    """One finished span, in MLflow's terms. ``trace_id`` is 32 hex digits (MLflow's trace id is ``tr-`` + it),
    ``span_id`` 16; ``parent_id`` None for a trace's root. ``status`` is ``OK`` or ``ERROR``."""

    trace_id: str
    span_id: str
    name: str
    start_time_ns: int
    end_time_ns: int
    parent_id: str | None = None
    span_type: str = "UNKNOWN"
    inputs: Any = None
    outputs: Any = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    status: str = "OK"
    status_message: str = ""


@dataclass(frozen=True)
class SpanHandle:
    """What ``start_trace`` / ``start_span`` return: the ids the later calls take (as MLflow's LiveSpan has)."""

    trace_id: str  # MLflow's form: "tr-" + 32 hex digits
    span_id: str
    request_id: str = ""


def json_double(value: float) -> float | str:
    """A double for proto3 JSON: NaN and infinities as the strings MLflow's server parses."""
    value = float(value)
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _float(value: Any) -> float:
    return float(value)  # float("NaN") / float("Infinity") read proto3 JSON's strings too


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _pairs(items: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {item["key"]: item.get("value", "") for item in items or ()}


def experiment_from_json(raw: Mapping[str, Any]) -> Experiment:
    return Experiment(experiment_id=str(raw["experiment_id"]), name=raw.get("name", ""),
                      artifact_location=raw.get("artifact_location", ""),
                      lifecycle_stage=raw.get("lifecycle_stage", "active"), tags=_pairs(raw.get("tags")),
                      creation_time=_int(raw.get("creation_time")), last_update_time=_int(raw.get("last_update_time")))


def run_from_json(raw: Mapping[str, Any]) -> Run:
    info = raw.get("info") or {}
    data = raw.get("data") or {}
    metrics = {m["key"]: _float(m.get("value", 0.0)) for m in data.get("metrics") or ()}
    return Run(RunInfo(run_id=info.get("run_id") or info.get("run_uuid", ""),
                       experiment_id=str(info.get("experiment_id", "")), run_name=info.get("run_name", ""),
                       user_id=info.get("user_id", ""), status=info.get("status", "RUNNING"),
                       start_time=_int(info.get("start_time")), end_time=_int(info.get("end_time")),
                       artifact_uri=info.get("artifact_uri", ""),
                       lifecycle_stage=info.get("lifecycle_stage", "active")),
               RunData(metrics=metrics, params=_pairs(data.get("params")), tags=_pairs(data.get("tags"))))
