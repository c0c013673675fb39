"""Many workers, one ``mlflow server`` on PostgreSQL: 8 worker processes forked after import (as gunicorn does) x
5,000 calls each, while the tracking server is killed and restarted and then PostgreSQL is killed and restarted.
Every call lands exactly once: each per-call metric has one row per step, cumulative totals are exact, every call
is one artifact line, every run FINISHED."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from server_fixtures import exit_codes, fork_workers

import mltrack

pytestmark = pytest.mark.server

WORKERS, CALLS = 8, 5000
USAGE = {"prompt_tokens": 11, "completion_tokens": 7}
CALL_COST = (11 * Decimal("0.15") + 7 * Decimal("0.60")) / 10**6  # gpt-4o-mini, USD per 1M tokens
PACE_S = 0.003  # per call: the calls go on while the server and the database are restarted
PER_CALL_KEYS = ("llm.calls", "llm.tokens.prompt", "llm.tokens.completion", "llm.tokens.total",
                 "llm.tokens.cumulative.total", "llm.cost.total", "llm.cost.cumulative", "llm.errors")


def _worker(index: int) -> int:
    """One gunicorn-style worker: its own run of CALLS calls, then flush. Exit code 0, or why it failed."""
    slowest = 0.0
    with mltrack.track_llm_context(f"scale-worker-{index}", model="gpt-4o-mini") as tracker:
        for n in range(CALLS):
            began = time.perf_counter()
            tracker.log_prompt_response(f"worker {index} call {n}", f"answer {n}", token_usage=USAGE)
            slowest = max(slowest, time.perf_counter() - began)
            time.sleep(PACE_S)
    if slowest > 2.0:  # not a speed target (benchmarks/ has those): a call must never wait for the server
        print(f"worker {index}: a call took {slowest:.2f} s", flush=True)
        return 4
    return 0 if mltrack.flush(timeout=900) else 3


def _rows_written(postgres) -> int:
    try:
        return int(postgres.psql("SELECT count(*) FROM metrics").strip())
    except Exception:  # noqa: BLE001 - the database is restarting
        return 0


def _wait_for_rows(postgres, more_than: int, timeout: float = 300.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _rows_written(postgres)
        if rows > more_than:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"fewer than {more_than} metric rows written after {timeout} s")


def test_eight_forked_workers_lose_and_double_nothing_across_server_and_database_restarts(
        server_store, mlflow_server, postgres):
    start_rows = _rows_written(postgres)
    pids = fork_workers(_worker, WORKERS)

    # While the workers call: kill the tracking server, start it again; then kill PostgreSQL, start it again.
    rows = _wait_for_rows(postgres, start_rows + 20_000)
    mlflow_server.restart(hard=True)
    _wait_for_rows(postgres, rows + 20_000)
    postgres.restart(hard=True)

    codes = exit_codes(pids)
    assert codes == [0] * WORKERS, "a worker failed, waited for the server, or did not flush (see its output)"

    experiment_id = server_store.experiment_id
    runs = server_store.runs()
    assert sorted(r.info.run_name for r in runs) == sorted(f"scale-worker-{i}" for i in range(WORKERS))
    for run in runs:
        index = int(run.info.run_name.rsplit("-", 1)[1])
        run_id = run.info.run_id
        assert run.info.status == "FINISHED"
        m = run.data.metrics
        assert m["llm.calls"] == CALLS
        assert m["llm.tokens.cumulative.prompt"] == 11 * CALLS
        assert m["llm.tokens.cumulative.total"] == 18 * CALLS
        assert m["llm.cost.cumulative"] == float(CALL_COST * CALLS)
        # One row per step for every per-call metric: nothing lost, nothing written twice.
        counts = postgres.psql(f"SELECT key, count(*), count(DISTINCT step), min(step), max(step) FROM metrics "
                               f"WHERE run_uuid = '{run_id}' GROUP BY key")
        by_key = {line.split("|")[0]: tuple(int(x) for x in line.split("|")[1:])
                  for line in counts.strip().splitlines()}
        for key in PER_CALL_KEYS:
            assert by_key[key] == (CALLS, CALLS, 0, CALLS - 1), (run.info.run_name, key, by_key[key])
        lines = server_store.artifact_lines(run_id)
        assert [line["step"] for line in lines] == list(range(CALLS))
        assert [line["prompt"] for line in lines[:2]] == [f"worker {index} call 0", f"worker {index} call 1"]
        assert sum(Decimal(str(line["total_cost"])) for line in lines) == CALL_COST * CALLS
    assert experiment_id == runs[0].info.experiment_id
