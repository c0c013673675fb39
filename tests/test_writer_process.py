"""The writer process: MLflow's work happens there, it survives being killed, and without it a thread does it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
from conftest import Store

import mltrack
from mltrack import writer
from mltrack.writer import worker
from mltrack.writer.sink import Sink

USAGE = {"prompt_tokens": 3, "completion_tokens": 2}


def _calls_history(store: Store, run_id: str) -> list[int]:
    return [step for step, _ in store.history(run_id, "llm.calls")]


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
        print(writer.get_writer().status()["written"])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "7"
    run = store.run_named("far-away")
    assert _calls_history(store, run.info.run_id) == list(range(7))
    assert run.data.metrics["llm.tokens.cumulative.total"] == 35.0 and run.info.status == "FINISHED"


def test_a_killed_writer_process_loses_nothing_and_writes_nothing_twice(store, monkeypatch):
    monkeypatch.delenv("MLTRACK_STRICT", raising=False)  # the outage warning is the expected one here
    with mltrack.track_llm_context("survivor", model="gpt-4o-mini") as tracker:
        for _ in range(40):
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
        assert mltrack.flush(timeout=60) is True
        link = worker.link()
        process = link._process
        assert process is not None and process.poll() is None
        process.kill()
        process.wait(10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(60):
                tracker.log_prompt_response("p", "r", token_usage=USAGE)
            assert _flush_until_written()
    assert _flush_until_written()
    assert link._process is not None and link._process.pid != process.pid  # a new one took over
    run = store.run_named("survivor")
    assert _calls_history(store, run.info.run_id) == list(range(100))
    cumulative = [value for _, value in store.history(run.info.run_id, "llm.tokens.cumulative.total")]
    assert cumulative == [5.0 * (i + 1) for i in range(100)]  # each call once: no step written twice
    assert run.data.metrics["llm.tokens.cumulative.total"] == 500.0 and run.info.status == "FINISHED"


def test_with_writer_process_off_a_thread_here_writes(store):
    mltrack.configure(writer_process=False)
    with mltrack.track_llm_context("in-process", model="gpt-4o-mini") as tracker:
        for _ in range(12):
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
    assert mltrack.flush(timeout=60) is True
    sinks = list(writer.get_writer()._sinks.values())
    assert sinks and all(type(sink) is Sink for sink in sinks)
    run = store.run_named("in-process")
    assert _calls_history(store, run.info.run_id) == list(range(12))


@pytest.mark.parametrize("executable", ["/nonexistent/python", "/usr/bin/uwsgi", ""])
def test_a_writer_process_that_cannot_start_falls_back_to_a_thread_with_one_warning(store, monkeypatch, executable):
    monkeypatch.delenv("MLTRACK_STRICT", raising=False)
    monkeypatch.setattr(worker, "_link", None)  # a link of its own, never started
    monkeypatch.setattr(sys, "executable", executable)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mltrack.track_llm_context("fallback", model="gpt-4o-mini") as tracker:
            for _ in range(5):
                tracker.log_prompt_response("p", "r", token_usage=USAGE)
        assert mltrack.flush(timeout=60) is True
    messages = [str(w.message) for w in caught if "writer process" in str(w.message)]
    assert len(messages) == 1 and "from a thread of this process" in messages[0], messages
    assert all(type(sink) is Sink for sink in writer.get_writer()._sinks.values())
    run = store.run_named("fallback")
    assert _calls_history(store, run.info.run_id) == list(range(5))


def test_the_run_id_reaches_the_tracker_from_the_writer_process(store):
    with mltrack.track_llm_context("named", model="gpt-4o-mini") as tracker:
        tracker.log_prompt_response("p", "r", token_usage=USAGE)
        run_id = tracker.run_id
    assert run_id == store.run_named("named").info.run_id


@pytest.mark.parametrize("secret_env", ["MLFLOW_TRACKING_TOKEN"])
def test_environment_set_after_start_reaches_the_writer_process(store, monkeypatch, secret_env):
    """MLflow reads credentials from the environment per request: a value set later must be used over there."""
    with mltrack.track_llm_context("first", model="gpt-4o-mini") as tracker:
        tracker.log_prompt_response("p", "r", token_usage=USAGE)
    assert mltrack.flush(timeout=60) is True
    link = worker.link()
    monkeypatch.setenv(secret_env, "token-set-later")
    assert link.env_change()[secret_env] == "token-set-later"
    assert link.env_change() is None  # sent once, not with every batch
    monkeypatch.setenv(secret_env, "token-changed")
    assert link.env_change()[secret_env] == "token-changed"


def test_the_writer_process_adopts_the_environment_key_by_key(monkeypatch):
    from mltrack.writer._worker_main import _adopt_environment

    monkeypatch.setenv("MLTRACK_T_KEEP", "same")
    monkeypatch.setenv("MLTRACK_T_GONE", "x")
    monkeypatch.setenv("MLTRACK_T_CHANGED", "old")
    env = {k: v for k, v in os.environ.items() if k != "MLTRACK_T_GONE"}
    env.update(MLTRACK_T_CHANGED="new", MLTRACK_T_ADDED="1")
    _adopt_environment(env)
    assert os.environ.get("MLTRACK_T_GONE") is None and os.environ["MLTRACK_T_CHANGED"] == "new"
    assert os.environ["MLTRACK_T_ADDED"] == "1" and os.environ["MLTRACK_T_KEEP"] == "same"
    assert dict(os.environ) == env
    monkeypatch.delenv("MLTRACK_T_ADDED")
