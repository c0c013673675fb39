"""The shared writer process: MLflow's work happens there (never in the application), and killing it loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

from conftest import Store

import mltrack
from mltrack import writer
from mltrack.writer import journal

USAGE = {"prompt_tokens": 3, "completion_tokens": 2}


def _calls_history(store: Store, run_id: str) -> list[int]:
    return [step for step, _ in store.history(run_id, "llm.calls")]


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child (we started it): reap it
        except ChildProcessError:
            pass
        time.sleep(0.05)


def _flush_until_written(timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mltrack.flush(timeout=max(0.1, deadline - time.monotonic())):
            return True
        time.sleep(0.2)
    return False


def test_the_application_process_never_imports_mlflow(store):
    code = textwrap.dedent("""
        import sys, mltrack
        with mltrack.track_llm_context("far-away", model="gpt-4o-mini") as tracker:
            for _ in range(7):
                tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 3, "completion_tokens": 2})
        assert mltrack.flush(60) is True
        assert "mlflow" not in sys.modules, "mlflow was imported in the application process"
        from mltrack import writer
        print(writer.status()["server"], writer.status()["pending"])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["process", "0"]
    run = store.run_named("far-away")
    assert _calls_history(store, run.info.run_id) == list(range(7))
    assert run.data.metrics["llm.tokens.cumulative.total"] == 35.0 and run.info.status == "FINISHED"


def test_a_killed_writer_process_loses_nothing_and_writes_nothing_twice(store, monkeypatch):
    monkeypatch.delenv("MLTRACK_STRICT", raising=False)  # the outage warning is the expected one here
    with mltrack.track_llm_context("survivor", model="gpt-4o-mini") as tracker:
        for _ in range(40):
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
        assert mltrack.flush(timeout=60) is True
        folder = journal.Folder(Path(writer.status()["journal_dir"]))
        pid = folder.read_status()["pid"]
        os.kill(pid, signal.SIGKILL)  # the shared writer dies, maybe in the middle of a write
        _wait_gone(pid)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(60):
                tracker.log_prompt_response("p", "r", token_usage=USAGE)
            assert _flush_until_written()
    assert _flush_until_written()
    assert folder.read_status()["pid"] != pid  # a new one took over
    run = store.run_named("survivor")
    assert _calls_history(store, run.info.run_id) == list(range(100))
    cumulative = [value for _, value in store.history(run.info.run_id, "llm.tokens.cumulative.total")]
    assert cumulative == [5.0 * (i + 1) for i in range(100)]  # each call once: no step written twice
    assert run.data.metrics["llm.tokens.cumulative.total"] == 500.0 and run.info.status == "FINISHED"


def test_the_run_id_reaches_the_tracker_from_the_writer_process(store):
    with mltrack.track_llm_context("named", model="gpt-4o-mini") as tracker:
        tracker.log_prompt_response("p", "r", token_usage=USAGE)
        run_id = tracker.run_id
    assert run_id == store.run_named("named").info.run_id
