"""Budgets (warning once per run, hard limit before the call) and the on/off switches of contract §3/§4."""

from __future__ import annotations

import warnings
from decimal import Decimal

import pytest

import mltrack


def _log(tracker, prompt_tokens, completion_tokens=0):
    return tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": prompt_tokens,
                                                              "completion_tokens": completion_tokens})


def test_token_warning_once_per_run_with_tag(store):
    mltrack.configure(llm_token_limit_warning=100)
    with mltrack.track_llm_context("budget", model="gpt-4o-mini") as tracker:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _log(tracker, 60)
            _log(tracker, 60)  # 120 > 100: warns
            _log(tracker, 60)  # still over: no second warning
        budget = [w for w in caught if issubclass(w.category, mltrack.BudgetWarning)]
        assert len(budget) == 1 and "120" in str(budget[0].message)
    with mltrack.track_llm_context("budget-2", model="gpt-4o-mini") as tracker:
        with pytest.warns(mltrack.BudgetWarning):
            _log(tracker, 101)  # a new run warns again
    mltrack.flush(timeout=30)
    assert store.run_named("budget").data.tags["mltrack.budget.exceeded"] == "tokens"


def test_cost_warning(store):
    mltrack.configure(llm_cost_limit_warning=0.001)
    with mltrack.track_llm_context("cost-budget", model="gpt-4o") as tracker:
        _log(tracker, 200)  # $0.0005
        with pytest.warns(mltrack.BudgetWarning, match="llm_cost_limit_warning"):
            _log(tracker, 300)  # $0.00125 total
    mltrack.flush(timeout=30)
    assert store.run_named("cost-budget").data.tags["mltrack.budget.exceeded"] == "cost"


def test_cost_limit_error_refuses_next_call_before_it_runs(store):
    mltrack.configure(llm_cost_limit_error=0.01)
    tracker = mltrack.LLMTracker(model="gpt-4o")
    ran = []

    @tracker.track_llm_call(extract_token_usage=lambda r: {"prompt_tokens": 2000, "completion_tokens": 500})
    def call():
        ran.append(1)
        return "ok"

    with mltrack.track_llm_context("hard-limit"):
        call()  # $0.005 + $0.005 = $0.01: reaches the limit
        with pytest.raises(mltrack.BudgetExceededError) as exc:
            call()
        assert tracker.totals["cost"] == float(Decimal("0.01"))
    assert len(ran) == 1
    assert exc.value.cost == 0.01 and exc.value.limit == 0.01


def test_token_metrics_off(store):
    mltrack.configure(llm_track_token_usage=False)
    with mltrack.track_llm_context("no-tokens", model="gpt-4o-mini") as tracker:
        _log(tracker, 10, 10)
    mltrack.flush(timeout=30)
    metrics = store.run_named("no-tokens").data.metrics
    assert not any(k.startswith("llm.tokens") for k in metrics)
    assert metrics["llm.cost.total"] == float(Decimal(10 * 15 + 10 * 60) / 10**8)


def test_cost_metrics_off(store):
    mltrack.configure(llm_track_costs=False)
    with mltrack.track_llm_context("no-costs", model="gpt-4o-mini") as tracker:
        _log(tracker, 10, 10)
    mltrack.flush(timeout=30)
    metrics = store.run_named("no-costs").data.metrics
    assert not any(k.startswith("llm.cost") for k in metrics)
    assert metrics["llm.tokens.total"] == 20


def test_llm_tracking_off_keeps_runs(store):
    mltrack.configure(llm_tracking_enabled=False)

    @mltrack.track
    def job():
        _log(mltrack.LLMTracker(model="gpt-4o-mini"), 10, 10)
        return 7

    assert job() == 7
    mltrack.flush(timeout=30)
    run = store.run_named("job")
    assert run.info.status == "FINISHED"
    assert set(run.data.metrics) == {"execution_time_seconds"}
    assert store.client.list_artifacts(run.info.run_id) == []


@pytest.mark.parametrize("var", ["MLTRACK_ENABLED", "MLFLOW_ENABLED"])
def test_master_switch_writes_nothing(store, monkeypatch, var):
    from mltrack import config

    monkeypatch.setenv(var, "false")
    config.reset()
    sentinel = object()

    @mltrack.track
    def job():
        return sentinel

    def gen():
        yield 1

    assert job() is sentinel
    assert list(mltrack.track(gen)()) == [1]
    with mltrack.track_llm_context("ctx") as tracker:
        _log(tracker, 5, 5)
    assert mltrack.flush(timeout=30)
    assert store.runs() == []
