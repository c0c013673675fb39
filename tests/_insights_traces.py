"""Six traces of known composition, written with MLflow's own tracing client, for the insights tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BASE_MS = 1_700_000_000_000


@dataclass
class Spec:
    name: str
    duration_ms: int
    error: bool
    tags: dict[str, str]
    spans: list[tuple[str, str, bool, dict[str, Any]]]  # name, type, failed, attributes
    feedback: dict[str, Any] = field(default_factory=dict)
    expectations: dict[str, Any] = field(default_factory=dict)


def _llm(model: str, tokens: int, cost: float | None, failed: bool = False) -> tuple[str, str, bool, dict[str, Any]]:
    attributes: dict[str, Any] = {"mlflow.llm.model": model, "mlflow.llm.provider": "openai" if "gpt" in model else
                                  "anthropic" if "claude" in model else "local",
                                  "mlflow.chat.tokenUsage": {"input_tokens": tokens - 1, "output_tokens": 1,
                                                             "total_tokens": tokens}}
    if cost is not None:
        attributes["mlflow.llm.cost"] = {"input_cost": 0.0, "output_cost": cost, "total_cost": cost}
    return (model, "LLM", failed, attributes)


SPECS = [
    Spec("chat-a", 100, False, {"env": "prod"}, [_llm("gpt-4o", 10, 0.001)], feedback={"rating": 5}),
    Spec("chat-b", 6000, True, {"env": "prod", "retries": "2"},
         [_llm("gpt-4o", 100, 0.002), _llm("gpt-4o", 100, 0.002), _llm("gpt-4o", 100, 0.002, failed=True)],
         feedback={"rating": 1}),
    Spec("agent-c", 300, False, {"env": "dev"},
         [_llm("claude-3-5-sonnet", 50, 0.01)] * 4 + [("search", "TOOL", False, {"query": "weather"})],
         feedback={"rating": 4}, expectations={"answer": "yes"}),
    Spec("agent-d", 7000, True, {"env": "dev", "retries": "1"},
         [_llm("claude-3-5-sonnet", 60, 0.01), _llm("claude-3-5-sonnet", 60, 0.01), ("search", "TOOL", True, {})],
         feedback={"rating": 2}),
    Spec("batch-e", 50, False, {}, [_llm("my-finetune", 5, None)]),
    Spec("plain-f", 20, False, {"env": "prod"}, [("lookup", "RETRIEVER", False, {"k": 3})], feedback={"tone": "good"}),
]


# (filter 1, filter 2, base filter) -> (filter 1, filter 2, joint, total) counts over SPECS: filters MLflow refuses
ONLY_MLTRACK_COUNTS = {
    ("count(span.type = 'LLM') > 2", "trace.status = 'ERROR'", None): (2, 2, 1, 6),
    ("trace.execution_time_ms > 5000 OR trace.status = 'ERROR'", "tags.env = 'prod'", None): (2, 3, 1, 6),
    ("trace.total_cost > 0.005", "feedback.rating < 3", None): (3, 2, 2, 6),
    ("span.attributes.mlflow.llm.model = 'gpt-4o'", "NOT trace.status = 'OK'", None): (2, 2, 1, 6),
    ("tags.retries > 0", "trace.status = 'ERROR'", None): (2, 2, 2, 6),
    ("count(span.type = 'LLM') >= 1", "trace.total_tokens > 100", "tags.env IN ('prod', 'dev')"): (4, 3, 3, 5),
}


def build(tracking_uri: str, specs: list[Spec] = SPECS, experiment_id: str = "0") -> dict[str, str]:
    """Write the traces; returns trace id -> trace name."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    ids = {}
    for i, spec in enumerate(specs):
        start = (BASE_MS + i * 10_000) * 1_000_000
        root = client.start_trace(spec.name, span_type="CHAIN", experiment_id=experiment_id, start_time_ns=start,
                                  tags=spec.tags or None)
        for j, (name, span_type, failed, attributes) in enumerate(spec.spans):
            child = client.start_span(name, trace_id=root.trace_id, parent_id=root.span_id, span_type=span_type,
                                      attributes=attributes, start_time_ns=start + j * 1_000_000)
            client.end_span(root.trace_id, child.span_id, status="ERROR" if failed else "OK",
                            end_time_ns=start + (j + 1) * 1_000_000)
        client.end_trace(root.trace_id, status="ERROR" if spec.error else "OK",
                         end_time_ns=start + spec.duration_ms * 1_000_000)
        ids[root.trace_id] = spec.name
    mlflow.flush_trace_async_logging()
    for trace_id, name in ids.items():
        spec = next(s for s in specs if s.name == name)
        for key, value in spec.feedback.items():
            mlflow.log_feedback(trace_id=trace_id, name=key, value=value)
        for key, value in spec.expectations.items():
            mlflow.log_expectation(trace_id=trace_id, name=key, value=value)
    return ids
