"""Processes as users run them: forked children (multiprocessing "fork", gunicorn --preload, Celery prefork) log
into a nested run of the run they inherited, spawned ones are fresh processes, and one process that switches
between two MLflow stores writes every record to the store its run lives in. Every call is counted in MLflow."""

from __future__ import annotations

import multiprocessing
import os

import mlflow
import pytest
from conftest import Store, wait_until

import mltrack
from mltrack import config

USAGE = {"prompt_tokens": 3, "completion_tokens": 2}


def _calls(n: int, model: str = "gpt-4o-mini") -> int:
    tracker = mltrack.LLMTracker(model=model)
    for _ in range(n):
        tracker.log_prompt_response("p", "r", token_usage=USAGE)
    return os.getpid()


def _own_run(name: str, n: int) -> int:
    with mltrack.track_llm_context(name, model="gpt-4o-mini") as tracker:
        for _ in range(n):
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
    return os.getpid()


def _steps(store: Store, run) -> list[int]:
    return [step for step, _ in store.history(run.info.run_id, "llm.calls")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_forked_children_log_into_a_nested_run_each_and_the_parent_run_stays_exact(store):
    ctx = multiprocessing.get_context("fork")
    with mltrack.track_llm_context("parent", model="gpt-4o-mini") as tracker:
        _calls(10)
        children = [ctx.Process(target=_calls, args=(50,)) for _ in range(4)]
        for child in children:
            child.start()
        _calls(10)  # the parent goes on while its children work
        for child in children:
            child.join(120)
            assert child.exitcode == 0
        _calls(5)
        assert tracker.totals["calls"] == 25
    assert mltrack.flush(timeout=120) is True  # this process's own records
    parent = store.run_named("parent")
    assert _steps(store, parent) == list(range(25))
    assert parent.data.metrics["llm.tokens.cumulative.total"] == 125.0

    def children_landed() -> bool:  # a child leaves once its records are on disk; the shared writer writes them
        runs = [r for r in store.runs() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        return len(runs) == 4 and all(r.data.metrics.get("llm.calls") == 50 and r.info.status == "FINISHED"
                                      for r in runs)

    assert wait_until(children_landed, timeout=90)
    nested = [r for r in store.runs() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in nested) == sorted(f"parent-pid{c.pid}" for c in children)
    for run in nested:
        assert _steps(store, run) == list(range(50)), run.info.run_name
        assert run.data.metrics["llm.tokens.cumulative.total"] == 250.0 and run.info.status == "FINISHED"
        assert run.data.metrics["llm.cost.cumulative"] == pytest.approx(50 * parent.data.metrics["llm.cost.total"])
    assert len(store.runs()) == 5


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_with_and_without_an_inherited_run_land_every_call_once(store, method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    ctx = multiprocessing.get_context(method)
    with mltrack.track_llm_context("pool-parent", model="gpt-4o-mini"):
        _calls(3)
        with ctx.Pool(4) as pool:
            pids = pool.starmap(_own_run, [(f"task-{i}", 50) for i in range(8)], chunksize=1)
            inherited = pool.map(_calls, [20] * 4, chunksize=1)
            pool.close()
            pool.join()
    assert mltrack.flush(timeout=120) is True  # this process's own records

    def landed() -> bool:  # a worker leaves once its records are on disk; the shared writer writes them after it
        runs = store.runs()
        tasks = [r for r in runs if r.info.run_name.startswith("task-")]
        return len(tasks) == 8 and all(r.data.metrics.get("llm.calls") == 50 for r in tasks) and \
            sum(r.data.metrics.get("llm.calls", 0) for r in runs if not r.info.run_name.startswith("task-")) == 83

    assert wait_until(landed, timeout=90)
    runs = store.runs()
    for i in range(8):
        run = store.run_named(f"task-{i}")
        assert _steps(store, run) == list(range(50)) and run.data.metrics["llm.tokens.cumulative.total"] == 250.0
    parent = store.run_named("pool-parent")
    assert _steps(store, parent) == [0, 1, 2]
    calls_elsewhere = sum(r.data.metrics.get("llm.calls", 0) for r in runs
                          if not r.info.run_name.startswith("task-") and r.info.run_name != "pool-parent")
    assert calls_elsewhere == 80  # the 4 x 20 calls outside the tasks' own runs, each once
    if method == "fork":  # workers forked inside the run: a nested run of it per worker process
        nested = [r for r in runs if r.info.run_name.startswith("pool-parent-pid")]
        assert {r.info.run_name for r in nested} == {f"pool-parent-pid{p}" for p in set(inherited) | set(pids)}
        assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in nested)
        task_runs = [store.run_named(f"task-{i}") for i in range(8)]
        assert {r.data.tags["mlflow.parentRunId"] for r in task_runs} <= {r.info.run_id for r in nested}
    assert len(set(pids)) <= 4


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_left_by_its_with_block_terminates_workers_and_loses_no_call(store, method):
    """``with Pool() as pool: pool.map(...)`` ends with ``terminate()``: SIGTERM to workers that may be in their exit
    (a finalizer putting records on disk) right then. Every call still lands, once, and no worker hangs."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(4) as pool:
        pool.starmap(_own_run, [(f"{method}-task-{i}", 50) for i in range(8)], chunksize=1)

    def landed() -> bool:
        runs = [r for r in store.runs() if r.info.run_name.startswith(f"{method}-task-")]
        return len(runs) == 8 and all(r.data.metrics.get("llm.calls") == 50 and r.info.status == "FINISHED"
                                      for r in runs)

    assert wait_until(landed, timeout=90), [(r.info.run_name, r.data.metrics.get("llm.calls"), r.info.status)
                                            for r in store.runs()]
    for i in range(8):
        assert _steps(store, store.run_named(f"{method}-task-{i}")) == list(range(50))


def test_one_process_switching_between_two_stores_writes_each_run_to_its_own(store, _template_store, tmp_path,
                                                                             monkeypatch):
    import shutil

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    config.reset()
    a = Store(store.uri)
    b_db = tmp_path / "b" / "mlflow.db"
    b_db.parent.mkdir()
    shutil.copyfile(_template_store, b_db)
    b = Store(f"sqlite:///{b_db}")

    @mltrack.track
    def answer(name: str) -> None:
        _calls(2)

    mlflow.set_tracking_uri(a.uri)
    answer("first")
    mlflow.set_tracking_uri(b.uri)
    answer("second")
    with mlflow.start_run(run_name="users-own-in-b") as own:
        _calls(3)
        with mltrack.track_llm_context("nested-in-b", model="gpt-4o-mini") as tracker:
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
    mlflow.set_tracking_uri(a.uri)
    with mlflow.start_run(run_name="users-own-in-a"):
        _calls(4)
    answer("third")
    assert mltrack.flush(timeout=120) is True

    assert sorted(r.info.run_name for r in a.runs()) == ["answer", "answer", "users-own-in-a"]
    assert sorted(r.info.run_name for r in b.runs()) == ["answer", "nested-in-b", "users-own-in-b"]
    assert a.run_named("users-own-in-a").data.metrics["llm.calls"] == 4
    in_b = b.run_named("users-own-in-b")
    assert in_b.info.run_id == own.info.run_id and in_b.data.metrics["llm.calls"] == 3
    assert b.run_named("nested-in-b").data.tags["mlflow.parentRunId"] == own.info.run_id
    assert all(r.data.metrics["llm.calls"] == 2 for r in a.runs() + b.runs() if r.info.run_name == "answer")
