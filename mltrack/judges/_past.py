"""``judge(run_id)``: judge one past run now, reading what MLflow has of it (synchronous, so it writes the scores
with MLflow's client directly instead of through the background writer)."""

from __future__ import annotations

import json
import time
from typing import Any

from mltrack.judges._config import judge_config
from mltrack.judges._prompts import Judge, question_of
from mltrack.judges._runner import SPEND, judge_name, keep_rationale, resolve_judges, run_judges


class NothingToJudge(ValueError):
    """The run has no LLM call with a logged response."""


def _client(tracking_uri: str | None) -> Any:
    from mlflow import MlflowClient

    from mltrack.config import get_settings

    return MlflowClient(tracking_uri=tracking_uri or get_settings().tracking_uri)


def last_call(client: Any, run_id: str) -> tuple[str, str]:
    """(question, answer) of the run's last call that has a logged response, from its ``llm/calls-*.jsonl``."""
    lines: list[dict[str, Any]] = []
    for item in client.list_artifacts(run_id, "llm"):
        if item.path.endswith(".jsonl"):
            text = client.download_artifacts(run_id, item.path)
            with open(text, encoding="utf-8") as fh:
                lines += [json.loads(line) for line in fh if line.strip()]
    answered = [line for line in lines if line.get("response") is not None]
    if not answered:
        raise NothingToJudge(f"run {run_id} has no LLM call with a logged response to judge (llm/ artifacts missing, "
                         "or llm_log_responses was off)")
    last = max(answered, key=lambda line: (line.get("step", 0), line.get("timestamp", "")))
    return question_of(last.get("prompt")), str(last["response"])


def trace_and_context(client: Any, run_id: str) -> tuple[str | None, list[str]]:
    """The run's trace id (the first one) and the documents of its ``RETRIEVER`` spans, in order."""
    experiment_id = client.get_run(run_id).info.experiment_id
    traces = client.search_traces(locations=[experiment_id], run_id=run_id, max_results=10)
    if not traces:
        return None, []
    docs: list[str] = []
    for trace in traces:
        spans = sorted((s for s in trace.data.spans if s.span_type == "RETRIEVER"), key=lambda s: s.start_time_ns)
        for span in spans:
            if isinstance(span.outputs, list):
                docs += [str(d.get("page_content", "")) if isinstance(d, dict) else str(d) for d in span.outputs]
    return traces[0].info.trace_id, docs


def judge_run(run_id: str, metrics: Any = None, *, tracking_uri: str | None = None) -> dict[str, float]:
    """Judge the run's last answered call now; writes ``judge.*`` metrics, ``mltrack.judged.<name>`` tags and
    feedback on the run's trace. Returns ``{judge name: score}``. Raises ValueError when there is nothing to judge."""
    from mlflow.entities import AssessmentSource, Feedback, Metric, RunTag
    from mlflow.tracing.client import TracingClient

    from mltrack.config import get_settings
    from mltrack.judges._client import JudgeClient
    from mltrack.judges._runner import JUDGMENT_DEADLINE_S

    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"judge: run_id must be an MLflow run id (string), got {run_id!r}")
    settings = get_settings()
    config = judge_config(settings)
    judges = resolve_judges(config, metrics)
    client = _client(tracking_uri)
    question, answer = last_call(client, run_id)
    trace_id, context = trace_and_context(client, run_id)
    judge_client = JudgeClient(config, JUDGMENT_DEADLINE_S) if any(isinstance(j, Judge) for j in judges) else None
    outcome = run_judges(question, answer, context, config, settings, judge_client, judges)
    ts = int(time.time() * 1000)
    rows = [Metric(f"judge.{s.name}", s.score, ts, 0) for s in outcome.scores]
    rows += [Metric("judge.cost", float(outcome.cost), ts, 0), Metric("judge.errors", float(outcome.errors), ts, 0)]
    tags = [RunTag(f"mltrack.judged.{s.name}", config.model) for s in outcome.scores]
    client.log_batch(run_id, metrics=rows, tags=tags)
    if trace_id is not None and outcome.scores:
        tracing = TracingClient(client.tracking_uri)
        for s in outcome.scores:
            rationale = (s.rationale or None) if keep_rationale(settings) else None
            tracing.log_assessment(trace_id, Feedback(name=s.name, value=s.score, rationale=rationale,
                                                      source=AssessmentSource(source_type="LLM_JUDGE",
                                                                              source_id=config.model)))
    return {s.name: s.score for s in outcome.scores}


def pending_judges(run: Any, model: str, metrics: Any = None) -> list[Any]:
    """The judges not yet run on ``run`` with ``model`` (tag ``mltrack.judged.<name>``)."""
    from mltrack.config import get_settings

    config = judge_config(get_settings())
    tags = run.data.tags
    return [j for j in resolve_judges(config, metrics) if tags.get(f"mltrack.judged.{judge_name(j)}") != model]


__all__ = ["SPEND", "NothingToJudge", "judge_run", "last_call", "pending_judges", "trace_and_context"]
