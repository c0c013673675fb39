"""The frozen, effective settings: one attribute per key of the table, plus ``enabled`` and ``source``."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class Settings:
    """Effective configuration; mappings are read-only views. Fields mirror ``keys.KEYS`` (a test checks it)."""

    tracking_uri: str | None
    experiment_name: str | None
    llm_tracking_enabled: bool
    llm_log_prompts: bool
    llm_log_responses: bool
    llm_track_token_usage: bool
    llm_track_costs: bool
    llm_token_limit_warning: int | None
    llm_cost_limit_warning: float | None
    llm_cost_limit_error: float | None
    llm_providers: Mapping[str, Mapping[str, str]]
    pricing: Mapping[str, Mapping[str, float | int | str]]
    pricing_dir: str | None
    auto_instrument: bool
    tags: Mapping[str, str]
    stream_include_usage: bool
    llm_log_traces: bool
    standalone_runs: bool
    writer_queue_size: int
    writer_flush_interval: float
    writer_process: bool
    journal_dir: str | None
    journal_retention_days: float
    prometheus_enabled: bool
    prometheus_port: int | None
    prometheus_addr: str
    prometheus_max_models: int
    judges: Mapping[str, Any]
    enabled: bool = True
    source: str | None = None

    def default_model(self, provider: str | None) -> str | None:
        """``llm_providers.<provider>.default_model``, or None."""
        entry = self.llm_providers.get(provider) if provider else None
        return entry.get("default_model") if entry else None


def freeze(value: Any) -> Any:
    """Read-only view of nested dicts."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    return value


def thaw(value: Any) -> Any:
    """Plain nested dicts from read-only views."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    return value
