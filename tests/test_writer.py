"""The background writer against real MLflow stores: hand-off, outages and the journal, exactly-once replays,
exit hooks, and concurrency. Nothing of MLflow is mocked: a store is "down" when its SQLite file cannot be
opened (its folder is a plain file) and "slow" when another connection holds an exclusive lock on it."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from conftest import Store

import mltrack
from mltrack import config, writer
from mltrack.writer import mlflow_writer, records
from mltrack.writer.journal import Journal, Owner
from mltrack.writer.sink import Sink

USAGE = {"prompt_tokens": 3, "completion_tokens": 2}


class DownStore:
    """A SQLite store that cannot be opened until :meth:`bring_back` (its folder is a file meanwhile)."""

    def __init__(self, folder: Path, template: Path) -> None:
        self.folder = folder
        self.template = template
        folder.write_text("not a folder")
        self.db = folder / "mlflow.db"
        self.uri = f"sqlite:///{self.db}"

    def bring_back(self) -> Store:
        self.folder.unlink()
        self.folder.mkdir()
        shutil.copyfile(self.template, self.db)
        with sqlite3.connect(self.db) as conn:
            conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                         (str(self.folder / "mlruns" / "0"),))
        return Store(self.uri)


@pytest.fixture
def down(_template_store, tmp_path, monkeypatch) -> DownStore:
    store = DownStore(tmp_path / "store", _template_store)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    config.reset()
    yield store
    config.reset()


@pytest.fixture
def lenient(monkeypatch):
    monkeypatch.delenv("MLTRACK_STRICT", raising=False)


def _calls_history(store: Store, run_id: str) -> list[int]:
    return [step for step, _ in store.history(run_id, "llm.calls")]


def _wait(predicate, timeout: float = 30.0, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


# hand-off -----------------------------------------------------------------------------------------------
def test_import_mltrack_does_not_import_mlflow_or_llm_sdks():
    code = ("import sys, mltrack\n"
            "heavy = [m for m in ('mlflow', 'openai', 'anthropic') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "import mltrack.writer, mltrack.writer.journal, mltrack.writer.sink, mltrack.writer.records\n"
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


def test_calls_encoded_ahead_are_priced_in_order_and_get_their_run_id_when_known(store):
    """While the writer process writes one batch, the sender prices and encodes the next (_encode_ahead): each
    record is the one encoding it later would give, and the run id it did not have yet is filled in when sent."""
    import threading as _threading

    from mltrack.config import get_settings
    from mltrack.engine.process import RawCall
    from mltrack.entry._log import defer_record
    from mltrack.run_state import RunHandle
    from mltrack.writer.ops import LogCall

    w = mlflow_writer.MlflowWriter(max_queue=10000, use_process=False)
    lane = mlflow_writer._Lane(store.uri)
    handle = RunHandle("ahead", tracking_uri=store.uri)
    get_settings()
    calls = []
    for i in range(12):  # hand the calls over as log_prompt_response does, into our lane instead of the writer's
        writer_submit, writer.submit = writer.submit, lane.mem.append
        try:
            calls.append(defer_record(RawCall(prompt="p", response="r", model="gpt-4o-mini",
                                              token_usage={"prompt_tokens": 100 + i, "completion_tokens": 10}),
                                      handle))
        finally:
            writer.submit = writer_submit
    ops = list(lane.mem)
    assert len(ops) == 12 and all(isinstance(op, LogCall) and op.processed is None for op in ops)
    w._batch = 8  # ahead of time: at most one batch
    sink = Sink(store.uri)
    w._encode_ahead(lane, sink, _threading.Event())
    assert all(op.encoded is None for op in ops)  # nothing written to this store yet: it may not work at all
    lane.last_write = time.monotonic()  # a write went through: from now on, the next batch is encoded ahead
    w._encode_ahead(lane, sink, _threading.Event())
    assert [op.encoded is not None for op in ops] == [True] * 8 + [False] * 4
    assert [vars(call).get("step") for call in calls] == list(range(8)) + [None] * 4  # priced up to there, in order
    assert all(op.encoded[0]["r"] is None for op in ops[:8])  # the run was not created yet
    done = _threading.Event()
    done.set()
    w._encode_ahead(lane, sink, done)  # the write finished first: nothing more is done ahead
    assert ops[8].encoded is None
    sink.down = True
    w._encode_ahead(lane, sink, _threading.Event())  # nor while the store is down
    assert ops[8].encoded is None
    handle.set_run_id("run-123")
    out = w._encode_all(ops)
    assert [r["r"] for r in out] == ["run-123"] * 12
    assert out[3] is ops[3].encoded[0]
    steps = [dict((m[0], m[2]) for m in r["m"])["llm.calls"] for r in out]
    assert steps == list(range(12))
    assert [dict((m[0], m[1]) for m in r["m"])["llm.tokens.prompt"] for r in out] == [100 + i for i in range(12)]
    assert [call.step for call in calls] == list(range(12))


def test_flush_writes_everything_and_pending_drops_to_zero(store):
    mltrack.configure(writer_flush_interval=5.0)  # only flush() makes it write early
    with mltrack.track_llm_context("flushed", model="gpt-4o-mini") as tracker:
        for _ in range(25):
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
    assert writer.get_writer().pending() > 0
    started = time.monotonic()
    assert mltrack.flush(timeout=60) is True
    assert time.monotonic() - started < 30
    assert writer.get_writer().pending() == 0 and writer.status()["pending"] == 0
    run = store.run_named("flushed")
    assert _calls_history(store, run.info.run_id) == list(range(25)) and run.info.status == "FINISHED"


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


# outages ------------------------------------------------------------------------------------------------
def test_outage_caller_unaffected_memory_bounded_then_everything_written_once(down, lenient, caplog):
    mltrack.configure(writer_queue_size=100, writer_flush_interval=0.05)
    n = 3000
    peak_memory = 0
    slowest = 0.0
    caplog.set_level(logging.WARNING, logger="mltrack")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        with mltrack.track_llm_context("outage", model="gpt-4o-mini") as tracker:
            for i in range(n):
                t = time.perf_counter()
                tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": i % 7 + 1, "completion_tokens": 1})
                slowest = max(slowest, time.perf_counter() - t)
                if i % 50 == 0:
                    peak_memory = max(peak_memory, writer.status()["in_memory"])
        elapsed = time.perf_counter() - started
        flush_started = time.monotonic()
        assert mltrack.flush(timeout=60) is False  # the store is down: not written, but safe in the journal
        assert time.monotonic() - flush_started < 10
    state = writer.status()
    assert state["journaled"] == n + 2 and state["in_memory"] == 0 and state["dropped"] == 0, state
    assert down.uri in state["unreachable"]
    assert peak_memory <= 1000 + 100  # waiting (writer_queue_size, at least 1,000) + the batch being written
    assert elapsed < n * 0.002, f"{elapsed:.2f}s for {n} calls"  # typically ~0.1 ms a call
    assert slowest < 1.5, f"slowest call {slowest:.2f}s"
    assert len([w for w in caught if "cannot write to MLflow" in str(w.message)]) == 1
    segments = list(Path(state["journal_dir"]).glob("*.jsonl"))
    assert segments and sum(len(p.read_bytes().splitlines()) - 1 for p in segments) >= n + 2

    store = down.bring_back()
    assert mltrack.flush(timeout=120) is True
    run = store.run_named("outage")
    assert _calls_history(store, run.info.run_id) == list(range(n))
    assert run.data.metrics["llm.tokens.cumulative.total"] == sum(i % 7 + 2 for i in range(n))
    assert run.info.status == "FINISHED"
    assert writer.status()["unreachable"] == {} and writer.get_writer().pending() == 0
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert _wait(lambda: not list(Path(state["journal_dir"]).glob("*.jsonl")), 10)  # written journal is deleted


def test_the_writer_does_not_spin_while_the_store_is_down(down, lenient):
    mltrack.configure(writer_flush_interval=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker = mltrack.LLMTracker(model="gpt-4o-mini")
        tracker.log_prompt_response("p", "r", token_usage=USAGE)
        assert _wait(lambda: writer.status()["unreachable"], 30)
        attempts = []
        sink = next(iter(writer.get_writer()._sinks.values()))
        cpu, wall = time.process_time(), time.monotonic()
        while time.monotonic() - wall < 3.0:
            if not attempts or attempts[-1] != sink.last_attempt:
                attempts.append(sink.last_attempt)
            time.sleep(0.01)
        cpu = time.process_time() - cpu
    assert len(attempts) <= 5, attempts  # backoff 0.5, 1, 2 ... seconds
    assert cpu < 0.5, f"{cpu:.2f}s of CPU in 3s of outage"
    assert sink.backoff >= 1.0


def test_runs_keep_their_status_and_times_when_written_late(down, lenient):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")

        @mltrack.track
        def broken():
            mltrack.LLMTracker(model="gpt-4o-mini").log_prompt_response("p", "r", token_usage=USAGE)
            raise KeyError("nope")

        before = time.time()
        with mltrack.track_llm_context("late", model="gpt-4o-mini") as tracker:
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
            time.sleep(0.3)
        with pytest.raises(KeyError):
            broken()
        after = time.time()
        assert tracker.run_id is None  # not created yet (and nobody waits 30 s for it)
        assert mltrack.flush(timeout=30) is False
        time.sleep(1.0)
        store = down.bring_back()
        assert mltrack.flush(timeout=120) is True
    late, failed = store.run_named("late"), store.run_named("broken")
    assert tracker.run_id == late.info.run_id
    assert late.info.status == "FINISHED" and failed.info.status == "FAILED"
    assert failed.data.tags["mltrack.error.type"] == "KeyError"
    for run in (late, failed):
        assert before * 1000 - 1 <= run.info.start_time <= run.info.end_time <= after * 1000 + 1
    assert late.info.end_time - late.info.start_time >= 300
    assert late.data.metrics["execution_time_seconds"] >= 0.3


def test_a_slow_store_goes_to_the_journal_and_catches_up(store, monkeypatch):
    """SQLite locked by another connection: writes hang; what waits goes to disk; all arrives once unlocked."""
    monkeypatch.setattr(mlflow_writer, "STUCK_AFTER_S", 0.3)
    mltrack.configure(writer_flush_interval=0.05)
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")
    tracker.log_prompt_response("p", "r", token_usage=USAGE)
    assert mltrack.flush(timeout=60)
    run_id = tracker.run_id
    db = store.uri[len("sqlite:///"):]
    lock = sqlite3.connect(db, isolation_level=None, timeout=30)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        started = time.perf_counter()
        for _ in range(500):
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
        assert time.perf_counter() - started < 5
        assert _wait(lambda: writer.status()["journaled"] >= 500, 20), writer.status()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert mltrack.flush(timeout=120) is True
    assert _calls_history(store, run_id) == list(range(501))


def test_a_record_the_store_rejects_is_reported_and_the_rest_still_written(store, lenient):
    ghost = mltrack.LLMTracker(model="gpt-4o-mini", run_id="0123456789abcdef0123456789abcdef")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ghost.log_prompt_response("p", "r", token_usage=USAGE)
        with mltrack.track_llm_context("fine", model="gpt-4o-mini") as tracker:
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
        assert mltrack.flush(timeout=60) is True
    assert any("writing to MLflow" in str(w.message) for w in caught)
    assert _calls_history(store, store.run_named("fine").info.run_id) == [0]


# the journal across processes ---------------------------------------------------------------------------
def test_a_live_process_journal_is_not_replayed_by_another(down, lenient):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mltrack.track_llm_context("owned", model="gpt-4o-mini") as tracker:
            for _ in range(20):
                tracker.log_prompt_response("p", "r", token_usage=USAGE)
        assert _wait(lambda: writer.status()["journaled"] == 22, 30), writer.status()
    journal_dir = writer.status()["journal_dir"]
    other = mlflow_writer.MlflowWriter(journal_dir=journal_dir)  # another process's writer, same folder
    other._start()
    try:
        assert other._adopted.wait(10) and other._replays == [] and other.pending() == 0
    finally:
        other.shutdown()

    writer._reset_for_tests(journal_dir=journal_dir)  # the owner goes away, its journal stays
    store = down.bring_back()
    assert list(Path(journal_dir).glob("*.lock")) and list(Path(journal_dir).glob("*.jsonl"))
    mltrack.LLMTracker(model="gpt-4o-mini").log_prompt_response("p", "r", token_usage=USAGE)  # starts a writer
    assert mltrack.flush(timeout=120) is True
    run = store.run_named("owned")
    assert _calls_history(store, run.info.run_id) == list(range(20)) and run.info.status == "FINISHED"
    assert not list(Path(journal_dir).glob("*.jsonl"))


def test_orphan_scan_skips_locked_owners_and_cleans_up_empty_ones(tmp_path):
    journal = Journal(tmp_path / "j")
    live = Owner.create(journal.directory)
    (journal.directory / "123-dead.lock").write_text("123\n")
    try:
        assert list(journal.orphans()) == []
        assert not (journal.directory / "123-dead.lock").exists()  # a dead owner with nothing left: removed
        assert live.lock_path.exists()
    finally:
        live.release(remove=True)
    assert not live.lock_path.exists()


# exit hooks ---------------------------------------------------------------------------------------------
def test_sigterm_handler_is_installed_lazily_from_the_main_thread_and_chains(store, monkeypatch):
    original = signal.getsignal(signal.SIGTERM)
    calls = []

    def application_handler(signum, frame):
        calls.append((signum, writer.get_writer().pending()))

    monkeypatch.setattr(writer, "_signal_state", "unset")
    monkeypatch.setattr(writer, "_previous_sigterm", None)
    signal.signal(signal.SIGTERM, application_handler)
    try:
        mltrack.configure(writer_flush_interval=30.0)
        tracker = mltrack.LLMTracker(model="gpt-4o-mini")
        worker = threading.Thread(target=tracker.log_prompt_response, args=("p", "r"), kwargs={"token_usage": USAGE})
        worker.start()
        worker.join()
        assert signal.getsignal(signal.SIGTERM) is application_handler  # not from a worker thread
        assert writer._signal_state == "wanted"
        tracker.log_prompt_response("p", "r", token_usage=USAGE)  # the main thread: installed now
        assert signal.getsignal(signal.SIGTERM) is writer._on_sigterm
        assert writer._previous_sigterm is application_handler
        assert writer.get_writer().pending() > 0
        writer._on_sigterm(signal.SIGTERM, None)  # as if signalled: write what waits, then the app's handler
        assert calls == [(signal.SIGTERM, 0)]
        assert _calls_history(store, tracker.run_id) == [0, 1]
    finally:
        signal.signal(signal.SIGTERM, original)


def test_sigterm_handler_leaves_an_ignored_sigterm_alone(monkeypatch):
    original = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(writer, "_signal_state", "unset")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        writer._install_sigterm()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN and writer._signal_state == "declined"
    finally:
        signal.signal(signal.SIGTERM, original)


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


def test_an_unreadable_journal_line_is_skipped_with_one_warning(tmp_path, lenient):
    from mltrack.writer.journal import Segment

    journal = Journal(tmp_path / "journal")
    segment = Segment.create(journal.own(), "sqlite:///x.db", "lane", 0)
    good = [records.dumps({"t": "l", "k": "run", "i": i}) for i in range(3)]
    segment.append([good[0], "{not json", good[1], good[2]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch, _end, consumed = segment.read(10)
    assert [r["i"] for r in batch] == [0, 1, 2] and consumed == 4
    assert len([w for w in caught if "unreadable line in journal file" in str(w.message)]) == 1
