"""mltrack's Prometheus instruments (names, types, labels and buckets of CONTRACT §8) and how a call updates them.

``prometheus_client`` is imported only here, and only when the metrics are enabled.
"""

from __future__ import annotations

import os
import time
from typing import Any

from mltrack.metrics._models import ModelLabels
from mltrack.record import LLMCall

INSTALL_HINT = 'mltrack\'s Prometheus metrics need the prometheus-client package: pip install "mltrack[prometheus]"'

# OpenTelemetry GenAI semantic conventions' recommended boundaries.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

GENAI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
TOKEN_TYPES = ("prompt", "completion", "cached_prompt", "cache_write", "reasoning")
UNKNOWN = "unknown"  # label value of a call whose provider or model nobody could tell
WRITER_REFRESH_S = 1.0  # multiprocess mode: how often a process re-reads its writer's status (it walks the queue)


def import_client() -> Any:
    """The ``prometheus_client`` module, or an ImportError that says which extra to install."""
    try:
        import prometheus_client
        import prometheus_client.core  # noqa: F401 - metric families of the writer collector
        import prometheus_client.multiprocess  # noqa: F401 - used in multiprocess mode
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return prometheus_client


def multiprocess_dir() -> str | None:
    """The folder of prometheus-client's multiprocess mode, when the environment sets one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


class WriterCollector:
    """``mltrack_writer_pending`` and ``mltrack_writer_dropped_total``, read from ``mltrack.writer.status()`` at
    scrape time (single-process mode)."""

    def __init__(self, client: Any) -> None:
        self._core = client.core

    def _families(self, status: dict[str, Any]) -> list[Any]:
        core = self._core
        return [core.GaugeMetricFamily("mltrack_writer_pending", "Records mltrack's writer has not written to MLflow "
                                       "yet (in memory and in the journal).", value=status.get("pending", 0)),
                core.CounterMetricFamily("mltrack_writer_dropped", "Records mltrack's writer dropped (queue and "
                                         "journal both full).", value=status.get("dropped", 0))]

    def describe(self) -> list[Any]:
        return self._families({})

    def collect(self) -> list[Any]:
        from mltrack import writer

        return self._families(writer.status())


class Instruments:
    """The metrics, registered into ``registry`` (multiprocess mode: into prometheus-client's files instead, for a
    ``MultiProcessCollector`` to aggregate), and :meth:`observe`, the observer that feeds them one call at a time."""

    def __init__(self, registry: Any, multiprocess: bool, models: ModelLabels) -> None:
        client = import_client()
        self.registry = registry
        self.multiprocess = multiprocess
        self.own_registry = False  # made by enable_prometheus (multiprocess mode, no registry given)
        self._models = models
        into = None if multiprocess else registry
        self._metrics: list[Any] = []

        def make(kind: Any, name: str, doc: str, labels: tuple[str, ...], **kw: Any) -> Any:
            metric = kind(name, doc, labels, registry=into, **kw)
            self._metrics.append(metric)
            return metric

        self.token_usage = make(client.Histogram, "gen_ai_client_token_usage", "Tokens used per LLM call.",
                                (*GENAI_LABELS, "gen_ai_token_type"), buckets=TOKEN_BUCKETS)
        self.duration = make(client.Histogram, "gen_ai_client_operation_duration_seconds",
                             "Duration of LLM calls, in seconds.", (*GENAI_LABELS, "error_type"),
                             buckets=DURATION_BUCKETS)
        self.ttft = make(client.Histogram, "gen_ai_client_operation_time_to_first_chunk_seconds",
                         "Time to the first content chunk of streamed LLM calls, in seconds.", GENAI_LABELS,
                         buckets=DURATION_BUCKETS)
        self.calls = make(client.Counter, "mltrack_llm_calls", "LLM calls.", ("provider", "model", "status"))
        self.tokens = make(client.Counter, "mltrack_llm_tokens", "LLM tokens, by type.", ("provider", "model", "type"))
        self.cost = make(client.Counter, "mltrack_llm_cost_usd", "Cost of priced LLM calls, in USD.",
                         ("provider", "model"))
        self._collector: WriterCollector | None = None
        if multiprocess:
            self.pending = client.Gauge("mltrack_writer_pending", "Records mltrack's writer has not written to MLflow "
                                        "yet (in memory and in the journal).", registry=None,
                                        multiprocess_mode="livesum")
            self.dropped = client.Counter("mltrack_writer_dropped", "Records mltrack's writer dropped (queue and "
                                          "journal both full).", registry=None)
            self._writer_read = 0.0
            self._dropped_seen = 0
            self._pid = os.getpid()
        else:
            self._collector = WriterCollector(client)
            registry.register(self._collector)
        self._per_call: dict[tuple[str, str, str, str], tuple[Any, ...]] = {}
        self._lazy: dict[tuple[Any, ...], Any] = {}

    def unregister(self) -> None:
        """Take these metrics out of their registry (when the feed moves to another one)."""
        if self.multiprocess:
            return
        for collector in (*self._metrics, self._collector):
            try:
                self.registry.unregister(collector)
            except KeyError:
                pass

    def _children(self, key: tuple[str, str, str, str]) -> tuple[Any, ...]:
        provider, model, operation, error = key
        genai = (operation, provider, model)
        children = (self.calls.labels(provider, model, "error" if error else "ok"),
                    self.duration.labels(*genai, error),
                    self.ttft.labels(*genai),
                    self.token_usage.labels(*genai, "input"),
                    self.token_usage.labels(*genai, "output"))
        self._per_call[key] = children
        return children

    def _lazy_child(self, metric: Any, *labels: str) -> Any:
        """A child created only when first used, so that e.g. an unpriced model has no cost series at all."""
        key = (id(metric), *labels)
        child = self._lazy.get(key)
        if child is None:
            child = self._lazy[key] = metric.labels(*labels)
        return child

    def observe(self, call: LLMCall, operation: str) -> None:
        """Count one priced call (the observer :mod:`mltrack.engine.observers` calls)."""
        provider = call.provider or UNKNOWN
        model = self._models(call.model or UNKNOWN)
        error = call.error or ""
        key = (provider, model, operation, error)
        calls, duration, ttft, input_usage, output_usage = self._per_call.get(key) or self._children(key)
        calls.inc()
        if call.latency_ms is not None:
            duration.observe(call.latency_ms / 1000.0)
        if call.ttft_ms is not None:
            ttft.observe(call.ttft_ms / 1000.0)
        if not error or call.total_tokens:  # a failed call that used nothing has no usage to record
            input_usage.observe(call.prompt_tokens)
            if operation != "embeddings":  # embeddings have input tokens only
                output_usage.observe(call.completion_tokens)
        counts = (call.prompt_tokens, call.completion_tokens, call.cached_prompt_tokens, call.cache_write_tokens,
                  call.reasoning_tokens)
        for kind, count in zip(TOKEN_TYPES, counts):
            if count:
                self._lazy_child(self.tokens, provider, model, kind).inc(count)
        cost = call.cost
        if cost is not None:
            self._lazy_child(self.cost, provider, model).inc(float(cost.total))  # Decimal -> float only here
        if self.multiprocess:
            self._refresh_writer()

    def _refresh_writer(self) -> None:
        """Multiprocess mode: a scrape runs in another process, so the writer's figures are set here, at most
        once per :data:`WRITER_REFRESH_S`."""
        if self._pid != os.getpid():  # a forked worker: its writer starts from zero
            self._pid, self._writer_read, self._dropped_seen = os.getpid(), 0.0, 0
        now = time.monotonic()
        if now - self._writer_read < WRITER_REFRESH_S:
            return
        self._writer_read = now
        from mltrack import writer

        status = writer.status()
        self.pending.set(status.get("pending", 0))
        dropped = status.get("dropped", 0)
        if dropped > self._dropped_seen:
            self.dropped.inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped
