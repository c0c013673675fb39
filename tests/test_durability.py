"""Never losing a record, with real parts: a real `mlflow server` stopped and restarted mid-run, and real
processes that exit, get SIGTERM or SIGKILL while records wait. Every record must arrive exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import Store, fresh_sqlite_db

import mltrack
from mltrack import config, writer

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and process groups")

REPO = Path(__file__).resolve().parents[1]


# helpers ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_exactly_once(store: Store, run_id: str, n: int, expected_total: float) -> None:
    steps = [step for step, _ in store.history(run_id, "llm.calls")]
    assert steps == list(range(n)), f"{len(steps)} rows for {n} calls"
    assert store.history(run_id, "llm.calls") == [(i, float(i + 1)) for i in range(n)]
    assert len(store.history(run_id, "llm.tokens.total")) == n
    total = store.history(run_id, "llm.tokens.cumulative.total")
    assert len(total) == n and total[-1] == (n - 1, expected_total)
    assert [line["step"] for line in store.artifact_lines(run_id)] == list(range(n))


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite backend and proxied artifacts in tmp, one worker."""

    def __init__(self, folder: Path, template: Path) -> None:
        self.folder = folder
        self.db = fresh_sqlite_db(template, folder)
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = folder / "server.log"

    def start(self) -> None:
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--backend-store-uri", f"sqlite:///{self.db}",
                 "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"mlflow server did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """Stop it the hard way (requests in flight die with it)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None


@pytest.fixture
def mlflow_server(_template_store, tmp_path):
    server = MlflowServer(tmp_path / "server", _template_store)
    server.start()
    server.wait_ready()
    yield server
    server.kill()


# a real server, restarted mid-run -----------------------------------------------------------------------
def test_server_restart_in_the_middle_of_ten_thousand_calls(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # let the writer see the outage, not hide it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    config.reset()
    mltrack.configure(llm_track_costs=False, writer_flush_interval=0.1)
    n, stop_at, restart_at = 10_000, 3_000, 7_000
    slowest = 0.0
    with mltrack.track_llm_context("restarted", model="gpt-4o-mini") as tracker:
        for i in range(n):
            if i == stop_at:
                assert mltrack.flush(timeout=120) is True  # some written for sure, then the server goes away
                mlflow_server.kill()
            if i == restart_at:
                mlflow_server.start()  # comes back while the calls go on
            started = time.perf_counter()
            tracker.log_prompt_response("p", f"r{i}", token_usage={"prompt_tokens": i % 5 + 1, "completion_tokens": 1})
            slowest = max(slowest, time.perf_counter() - started)
    assert writer.status()["pending"] > 0
    mlflow_server.wait_ready()
    assert mltrack.flush(timeout=240) is True
    assert writer.status()["pending"] == 0 and writer.status()["unreachable"] == {}
    store = Store(mlflow_server.uri)
    runs = store.runs()
    assert [r.info.run_name for r in runs] == ["restarted"]  # one run: the replayed start did not make another
    run = runs[0]
    _assert_exactly_once(store, run.info.run_id, n, float(sum(i % 5 + 2 for i in range(n))))
    assert run.info.status == "FINISHED"
    assert slowest < 1.5, f"a call took {slowest:.2f}s"


# processes that end ---------------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import faulthandler, json, os, signal, sys, time
    import mltrack
    from mltrack import writer

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a test that times out asks for every thread's stack

    mode, n = os.environ["CHILD_MODE"], int(os.environ["CHILD_CALLS"])
    if mode == "sigterm-app":
        def application_handler(signum, frame):
            with open(os.environ["CHILD_MARKER"], "w") as fh:
                state = writer.status()
                fh.write(json.dumps({"in_memory": state["in_memory"], "pending": state["pending"]}))
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, application_handler)
    mltrack.configure(writer_flush_interval=float(os.environ.get("CHILD_INTERVAL", "1")))
    own = mltrack.LLMTracker(model="gpt-4o-mini")  # a run of its own, nobody closes it: ended at exit
    own.log_prompt_response("p", "r", token_usage={"prompt_tokens": 1, "completion_tokens": 1})
    with mltrack.track_llm_context(os.environ.get("CHILD_RUN", "child"), model="gpt-4o-mini") as tracker:
        for i in range(n):
            tracker.log_prompt_response("p", f"r{i}", token_usage={"prompt_tokens": i % 5 + 1, "completion_tokens": 1})
        if mode in ("sigterm-app", "sigterm-default", "sigkill"):
            want = os.environ.get("CHILD_WAIT_JOURNALED")
            deadline = time.monotonic() + 60
            while want and writer.status()["journaled"] < int(want) and time.monotonic() < deadline:
                time.sleep(0.02)
            print("READY", json.dumps(writer.status()), flush=True)
            time.sleep(600)
    if os.environ.get("CHILD_FLUSH"):
        assert mltrack.flush(timeout=240), writer.status()
    print("DONE", flush=True)
""")


def _child_env(uri: str, journal: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLTRACK_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=uri, MLTRACK_JOURNAL_DIR=str(journal), MLFLOW_DISABLE_TELEMETRY="true",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def _spawn(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _exit_code(proc: subprocess.Popen, timeout: float = 120.0) -> int:
    """The child's exit code; if it is still alive after ``timeout``, fail with every thread's stack."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"child still running after {timeout} s; its threads:\n{err[-12000:]}") from None


def _ready(proc: subprocess.Popen, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY"):
            return json.loads(line.split(" ", 1)[1])
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"child not ready: {proc.stderr.read()[-3000:]}")


def _segments(journal: Path) -> list[Path]:
    return sorted(journal.glob("stores/*/*.jsonl"))


def _drained(journal: Path, timeout: float = 120.0) -> bool:
    """The journal folder's writer has written (and deleted) every segment of processes that are gone."""
    from mltrack.writer.journal import Folder, owner_of

    folder = Folder(journal)

    def left() -> list[Path]:
        return [p for p in _segments(journal) if not folder.owner_alive(owner_of(p))]

    deadline = time.monotonic() + timeout
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not left()


def _finish_with_next_process(uri: str, journal: Path, cwd: Path) -> None:
    """Whatever a process left in the journal is written in the background by the folder's writer, which the
    next process (same journal folder) starts if none runs."""
    if _segments(journal):
        env = _child_env(uri, journal, CHILD_MODE="exit", CHILD_CALLS="1", CHILD_RUN="next", CHILD_FLUSH="1")
        result = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=cwd, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    assert _drained(journal)


@pytest.fixture
def sqlite_store(_template_store, tmp_path) -> Store:
    return Store(f"sqlite:///{fresh_sqlite_db(_template_store, tmp_path / 'store')}")


def test_normal_exit_without_flush_loses_nothing(sqlite_store, tmp_path):
    env = _child_env(sqlite_store.uri, tmp_path / "journal", CHILD_MODE="exit", CHILD_CALLS="1500",
                     CHILD_INTERVAL="60")  # nothing would be written for a minute: exit must do it
    result = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "DONE" in result.stdout, result.stderr[-3000:]
    run = sqlite_store.run_named("child")
    _assert_exactly_once(sqlite_store, run.info.run_id, 1500, float(sum(i % 5 + 2 for i in range(1500))))
    assert run.info.status == "FINISHED"
    own = [r for r in sqlite_store.runs() if r.info.run_name.startswith("llm-tracker-")]
    assert len(own) == 1 and own[0].info.status == "FINISHED" and own[0].data.metrics["llm.calls"] == 1
    assert _drained(tmp_path / "journal"), "a clean exit leaves no records behind"


def test_sigterm_writes_pending_records_and_the_application_handler_still_runs(sqlite_store, tmp_path):
    marker = tmp_path / "marker.json"
    env = _child_env(sqlite_store.uri, tmp_path / "journal", CHILD_MODE="sigterm-app", CHILD_CALLS="1000",
                     CHILD_INTERVAL="60", CHILD_MARKER=str(marker))
    proc = _spawn(env, tmp_path)
    try:
        state = _ready(proc)
        assert state["pending"] >= 1000  # a big batch: all of it still waiting
        proc.send_signal(signal.SIGTERM)
        assert _exit_code(proc) == 0, proc.stderr.read()[-3000:]
    finally:
        proc.kill()
    seen_by_app = json.loads(marker.read_text())
    assert seen_by_app["in_memory"] == 0  # ours ran first (all on disk, most or all written), then theirs
    _finish_with_next_process(sqlite_store.uri, tmp_path / "journal", tmp_path)
    run = sqlite_store.run_named("child")
    _assert_exactly_once(sqlite_store, run.info.run_id, 1000, float(sum(i % 5 + 2 for i in range(1000))))


def test_sigterm_with_the_default_action_writes_pending_and_marks_runs_killed(sqlite_store, tmp_path):
    env = _child_env(sqlite_store.uri, tmp_path / "journal", CHILD_MODE="sigterm-default", CHILD_CALLS="500",
                     CHILD_INTERVAL="60")
    proc = _spawn(env, tmp_path)
    try:
        assert _ready(proc)["pending"] >= 500
        proc.send_signal(signal.SIGTERM)
        assert _exit_code(proc) == -signal.SIGTERM  # still dies of SIGTERM, as without mltrack
    finally:
        proc.kill()
    _finish_with_next_process(sqlite_store.uri, tmp_path / "journal", tmp_path)
    run = sqlite_store.run_named("child")
    _assert_exactly_once(sqlite_store, run.info.run_id, 500, float(sum(i % 5 + 2 for i in range(500))))
    assert run.info.status == "KILLED"


def test_sigkill_while_the_store_is_down_then_the_next_process_replays_exactly_once(_template_store, tmp_path):
    folder = tmp_path / "store"
    folder.write_text("the store's folder is a file: the store cannot be opened")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    journal = tmp_path / "journal"
    n = 2000
    env = _child_env(uri, journal, CHILD_MODE="sigkill", CHILD_CALLS=str(n), CHILD_INTERVAL="0.05",
                     CHILD_WAIT_JOURNALED=str(n + 3))  # own run's start + call, this run's start + n calls
    proc = _spawn(env, tmp_path)
    try:
        state = _ready(proc)
        assert state["journaled"] == n + 3 and state["in_memory"] == 0 and uri in state["unreachable"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()

    # The journal holds what had not been written: one JSON line per record, in the store's folder.
    segments = _segments(journal)
    lines = [json.loads(line) for path in segments for line in path.read_text().splitlines()]
    assert len([r for r in lines if r["t"] == "l"]) == n + 1 and len([r for r in lines if r["t"] == "s"]) == 2
    assert all(json.loads((path.parent / "uri").read_text())["uri"] == uri for path in segments)
    for path in segments:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    folder.unlink()  # the store is back
    store = Store(f"sqlite:///{fresh_sqlite_db(_template_store, folder)}")
    env = _child_env(uri, journal, CHILD_MODE="exit", CHILD_CALLS="3", CHILD_RUN="next", CHILD_FLUSH="1")
    result = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _drained(journal), "a replayed journal is deleted"
    run = store.run_named("child")
    _assert_exactly_once(store, run.info.run_id, n, float(sum(i % 5 + 2 for i in range(n))))
    assert run.info.status == "RUNNING"  # its process died before ending it
    assert store.run_named("next").data.metrics["llm.calls"] == 3
    assert len([r for r in store.runs() if r.info.run_name.startswith("llm-tracker-")]) == 2


def test_exit_while_the_store_is_down_is_bounded_and_keeps_everything(_template_store, tmp_path, monkeypatch):
    folder = tmp_path / "store"
    folder.write_text("down")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    journal = tmp_path / "journal"
    env = _child_env(uri, journal, CHILD_MODE="exit", CHILD_CALLS="300")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "DONE" in result.stdout, result.stderr[-3000:]
    assert time.monotonic() - started < writer.EXIT_TIMEOUT_S + 60
    assert "cannot write to the MLflow store" in result.stderr
    lines = [json.loads(line) for p in _segments(journal) for line in p.read_text().splitlines()]
    assert len([r for r in lines if r["t"] == "l"]) == 301 and len([r for r in lines if r["t"] == "e"]) == 2

    # Once a process tracks with this journal folder again, its writer writes the leftovers (the store is back).
    folder.unlink()
    store = Store(f"sqlite:///{fresh_sqlite_db(_template_store, folder)}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.chdir(tmp_path)
    config.reset()
    writer._reset_for_tests(journal_dir=str(journal))
    mltrack.LLMTracker(model="gpt-4o-mini").log_prompt_response("p", "r", token_usage={"prompt_tokens": 1,
                                                                                     "completion_tokens": 1})
    assert mltrack.flush(timeout=120) is True
    assert _drained(journal)
    run = store.run_named("child")
    _assert_exactly_once(store, run.info.run_id, 300, float(sum(i % 5 + 2 for i in range(300))))
    assert run.info.status == "FINISHED"
    assert len([r for r in store.runs() if r.info.run_name.startswith("llm-tracker-")]) == 2
