"""The writer against real MLflow stores: records and their exactly-once replay, the journal and its server,
stores that are down or read-only, leftovers of other processes, and concurrency. Nothing of MLflow is mocked:
a store is "down" when its SQLite file cannot be opened (its folder is a plain file)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import warnings

import pytest
from conftest import Store

import mltrack
from mltrack import config, writer
from mltrack.writer import records
from mltrack.writer.sink import Sink

USAGE = {"prompt_tokens": 3, "completion_tokens": 2}


@pytest.fixture
def lenient(monkeypatch):
    monkeypatch.delenv("MLTRACK_STRICT", raising=False)


def _calls_history(store: Store, run_id: str) -> list[int]:
    return [step for step, _ in store.history(run_id, "llm.calls")]


# records and replays ------------------------------------------------------------------------------------
def test_import_mltrack_does_not_import_mlflow_or_llm_sdks():
    code = ("import sys, mltrack\n"
            "heavy = [m for m in ('mlflow', 'openai', 'anthropic') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "import mltrack.writer, mltrack.writer.journal, mltrack.writer.sink, mltrack.writer.records, mltrack.writer.server\n"
            "heavy = [m for m in ('mlflow', 'openai', 'anthropic') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_records_are_plain_json_that_round_trips(store):
    """What the journal holds: one compact JSON line per operation, with explicit times."""
    from mltrack.config import get_settings
    from mltrack.engine.process import RawCall, process
    from mltrack.run_state import RunHandle
    from mltrack.writer.ops import CallFlags, EndRun, LogCall, StartRun

    parent = RunHandle("parent", tracking_uri=store.uri)
    handle = RunHandle("child", parent=parent, tracking_uri=store.uri, tags={"team": "x"})
    processed = process(RawCall(prompt=[{"role": "user", "content": "hé \u2603"}], response="ok",
                                model="gpt-4o-mini", token_usage=USAGE, latency_ms=12.5), get_settings(), handle)
    ops = [StartRun(handle, {"a": "1"}), LogCall(handle, processed, CallFlags(prompts=False)),
           EndRun(handle, "FAILED", 1_700_000_000.25, {"execution_time_seconds": 2.0}, {"mltrack.error.type": "X"})]
    encoded = [records.encode(op) for op in ops]
    for record in encoded:
        line = records.dumps(record)
        assert line.isascii() and "\n" not in line
        assert records.loads(line) == json.loads(json.dumps(record))
    start, log, end = encoded
    assert start["k"] == handle.key and start["p"] == parent.key and start["st"] == int(handle.start_time * 1000)
    assert start["g"]["team"] == "x" and start["g"][records.RUN_KEY_TAG] == handle.key and start["a"] == {"a": "1"}
    assert "prompt" not in log["c"] and log["c"]["response"] == "ok" and log["c"]["step"] == 0
    assert ["llm.calls", 1, 0, int(processed.call.timestamp * 1000)] in [list(m) for m in log["m"]]
    assert end["et"] == 1_700_000_000_250 and end["s"] == "FAILED" and end["o"] is True


def test_mlflow_ignores_an_exact_duplicate_metric_row(store):
    """The exactly-once argument rests on this: the SQL store drops a metric row equal to one it has."""
    from mlflow.entities import Metric

    run_id = store.client.create_run("0").info.run_id
    rows = [Metric("m", float(i), 1_700_000_000_000 + i, i) for i in range(50)]
    store.client.log_batch(run_id, metrics=rows)
    store.client.log_batch(run_id, metrics=rows[10:] + [Metric("m", 99.0, 1_700_000_000_099, 99)])
    assert store.history(run_id, "m") == [(i, float(i)) for i in range(50)] + [(99, 99.0)]


# exactly once -------------------------------------------------------------------------------------------
def _ops_for(uri: str, n: int, name: str = "replayed"):
    from mltrack.config import get_settings
    from mltrack.engine.process import RawCall, process
    from mltrack.run_state import RunHandle
    from mltrack.writer.ops import CallFlags, EndRun, LogCall, StartRun

    handle = RunHandle(name, tracking_uri=uri, tags={"t": "1"})
    settings = get_settings()
    ops = [StartRun(handle, {"alpha": "1"})]
    for i in range(n):
        raw = RawCall(prompt=f"p{i}", response=f"r{i}", model="gpt-4o-mini",
                      token_usage={"prompt_tokens": i + 1, "completion_tokens": 1}, latency_ms=5.0)
        ops.append(LogCall(handle, process(raw, settings, handle), CallFlags()))
    ops.append(EndRun(handle, "FINISHED", handle.start_time + 3.0, {"execution_time_seconds": 3.0}))
    return handle, [records.encode(op) for op in ops]


def _assert_written_once(store: Store, handle, n: int, name: str = "replayed") -> None:
    run = store.run_named(name)
    run_id = run.info.run_id
    assert _calls_history(store, run_id) == list(range(n))
    assert store.history(run_id, "llm.tokens.cumulative.total") == [
        (i, float(sum(range(1, i + 2)) + i + 1)) for i in range(n)]
    assert [line["step"] for line in store.artifact_lines(run_id)] == list(range(n))
    assert run.data.params == {"alpha": "1"} and run.data.tags["t"] == "1"
    assert run.data.metrics["execution_time_seconds"] == 3.0
    assert run.info.status == "FINISHED"
    assert run.info.start_time == int(handle.start_time * 1000)
    assert run.info.end_time == int((handle.start_time + 3.0) * 1000)


def test_a_replay_by_another_process_writes_nothing_twice(store):
    """Process A wrote a batch but died before acknowledging it; B (knowing nothing) replays it, cut differently."""
    handle, recs = _ops_for(store.uri, 120)
    Sink(store.uri).write(recs[:80], replay=False)  # A: run created, 79 calls written, then A is gone
    replayer = Sink(store.uri)  # B: replays from the last acknowledged record, in other batch sizes
    assert replayer.write(recs[:50], replay=True) == {handle.key: store.run_named("replayed").info.run_id}
    replayer.write(recs[50:], replay=True)
    _assert_written_once(store, handle, 120)
    assert len(store.runs()) == 1


def test_a_run_created_just_before_a_crash_is_found_not_made_twice(store):
    handle, recs = _ops_for(store.uri, 10)
    Sink(store.uri).write(recs[:1], replay=False)  # the start reached MLflow, its acknowledgement did not
    Sink(store.uri).write(recs, replay=True)
    _assert_written_once(store, handle, 10)
    assert len(store.runs()) == 1


def test_logs_replayed_without_their_start_find_the_run_by_its_key(store):
    handle, recs = _ops_for(store.uri, 30)
    Sink(store.uri).write(recs[:11], replay=False)
    fresh = Sink(store.uri)  # the start was acknowledged long ago; only the key names the run now
    fresh.write(recs[11:], replay=True)
    _assert_written_once(store, handle, 30)


# concurrency --------------------------------------------------------------------------------------------
def test_sixteen_threads_shared_and_separate_runs_exact_totals(store):
    mltrack.configure(llm_log_traces=False)  # totals under load: spans are tested in test_traces.py
    mltrack.configure(llm_track_costs=False, writer_flush_interval=0.2)
    threads, calls = 16, 1000
    errors = []
    with mltrack.track_llm_context("shared", model="gpt-4o-mini") as shared:
        def work(k: int) -> None:
            try:
                with mltrack.track_llm_context(f"own-{k:02d}", model="gpt-4o-mini") as own:
                    for i in range(calls):
                        target = shared if i % 2 else own
                        target.log_prompt_response("p", "r", token_usage={"prompt_tokens": k + 1,
                                                                          "completion_tokens": i % 3})
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    assert not errors
    assert shared.totals["calls"] == threads * calls // 2
    assert mltrack.flush(timeout=300) is True
    assert writer.status()["dropped"] == 0
    run = store.run_named("shared")
    half = calls // 2
    expected_shared = sum(half * (k + 1) + sum(i % 3 for i in range(1, calls, 2)) for k in range(threads))
    assert _calls_history(store, run.info.run_id) == list(range(threads * half))
    assert run.data.metrics["llm.tokens.cumulative.total"] == expected_shared
    for k in range(threads):
        own = store.run_named(f"own-{k:02d}")
        assert _calls_history(store, own.info.run_id) == list(range(half))
        own_total = half * (k + 1) + sum(i % 3 for i in range(0, calls, 2))
        assert own.data.metrics["llm.tokens.cumulative.total"] == own_total


async def test_a_thousand_tasks_into_shared_and_separate_runs_exact_totals(store):
    mltrack.configure(llm_log_traces=False)  # totals under load: spans are tested in test_traces.py
    """1,000 tasks at once, each logging into one shared run and into its group's run (50 runs open together,
    nested under the shared one; the tasks find their group's run through the context they were created in)."""
    mltrack.configure(llm_track_costs=False, writer_flush_interval=0.2)
    groups, per_group = 50, 20

    async with mltrack.track_llm_context("shared-async", model="gpt-4o-mini") as shared:
        async def task(i: int) -> None:
            await asyncio.sleep(0)
            shared.log_prompt_response("p", "r", token_usage={"prompt_tokens": i, "completion_tokens": 1})
            await asyncio.sleep(0)
            mltrack.LLMTracker(model="gpt-4o-mini").log_prompt_response(
                "p", "r", token_usage={"prompt_tokens": i, "completion_tokens": 2})

        async def group(g: int) -> None:
            async with mltrack.track_llm_context(f"group-{g:02d}", model="gpt-4o-mini"):
                await asyncio.gather(*(task(g * per_group + j) for j in range(per_group)))

        await asyncio.gather(*(group(g) for g in range(groups)))
    tasks = groups * per_group
    assert shared.totals["calls"] == tasks
    assert mltrack.flush(timeout=300) is True
    run = store.run_named("shared-async")
    assert _calls_history(store, run.info.run_id) == list(range(tasks))
    assert run.data.metrics["llm.tokens.cumulative.total"] == sum(range(tasks)) + tasks
    for g in range(groups):
        own = store.run_named(f"group-{g:02d}")
        assert _calls_history(store, own.info.run_id) == list(range(per_group))
        firsts = range(g * per_group, (g + 1) * per_group)
        assert own.data.metrics["llm.tokens.cumulative.total"] == sum(firsts) + 2 * per_group
        assert own.data.tags["mlflow.parentRunId"] == run.info.run_id and own.info.status == "FINISHED"


def test_a_malformed_journal_line_costs_that_record_only(store, lenient):
    """A corrupted record (valid JSON, wrong content) is reported and skipped; the records around it are written."""
    handle, recs = _ops_for(store.uri, 5)
    recs[2]["m"] = [["llm.calls", "not a number", "x"]]  # a broken metric row
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Sink(store.uri, on_skip=lambda skip: warnings.warn(str(skip))).write(recs, replay=True)
    assert any("malformed metric row" in str(w.message) for w in caught)
    run = store.run_named("replayed")
    assert run.info.status == "FINISHED"
    assert [line["step"] for line in store.artifact_lines(run.info.run_id)] == [0, 1, 2, 3, 4]




def test_records_of_a_run_that_could_not_be_created_are_reported_not_dropped_silently(store, lenient):
    """The run's experiment is deleted: MLflow refuses the run; its start, each of its calls and its end are
    reported (status.json's "skipped", one warning per reason in the application), nothing else fails."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store.uri)
    experiment_id = client.create_experiment("gone-experiment")
    client.delete_experiment(experiment_id)
    handle, recs = _ops_for(store.uri, 3, name="refused")
    recs[0]["x"] = None
    recs[0]["xe"] = experiment_id  # as MLFLOW_EXPERIMENT_ID names it
    skipped: list[str] = []
    ids = Sink(store.uri, on_skip=lambda skip: skipped.append(str(skip))).write(recs, replay=False)
    assert ids == {}
    assert len(skipped) == 1 + 3 + 1, skipped
    assert "creating a run" in skipped[0]
    assert all(f"a call of run {handle.key}" in reason and "never created" in reason for reason in skipped[1:4])
    assert f"the end of run {handle.key}" in skipped[4]
    assert client.search_runs([experiment_id], run_view_type=3) == []
