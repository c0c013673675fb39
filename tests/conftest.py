"""Shared fixtures: a real MLflow SQLite store per test (copied from one migrated template), the package's fake
LLM server, offline tiktoken encodings, and strict mode so internal errors fail tests instead of warning.
PostgreSQL and a real ``mlflow server`` for tests marked ``server``: see server_fixtures.py."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from _readback import Store
from server_fixtures import mlflow_server, postgres, pytest_terminal_summary, server_store  # noqa: F401

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLTRACK_STRICT"] = "1"
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its cost map (no network)
# Every test process gets a journal folder of its own: never replay (or leave) records in the user's cache dir.
os.environ["MLTRACK_JOURNAL_DIR"] = tempfile.mkdtemp(prefix="mltrack-test-journal-")
for _var in ("MLTRACK_CONFIG", "MLTRACK_ENABLED", "MLFLOW_ENABLED", "MLFLOW_TRACKING_URI", "MLTRACK_EXPERIMENT",
             "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session", autouse=True)
def _offline_encodings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """tiktoken cannot download here: provision its cache from the bpe-openai wheel, once per session."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    from mltrack.engine.tokens import provision_offline_encodings

    cache = tmp_path_factory.mktemp("tiktoken-cache")
    provision_offline_encodings(cache)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite store per session (migrations take seconds); tests get copies."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("template-store")
    db = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(_template_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh real MLflow store for this test, configured as mltrack's tracking URI; cwd is tmp_path."""
    import mltrack
    from mltrack import config

    db = tmp_path / "mlflow.db"
    shutil.copyfile(_template_store, db)
    artifacts = tmp_path / "mlruns"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (str(artifacts / "0"),))
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)  # also re-points MLflow's trace exporter, which keeps the URI it started with
    config.reset()
    yield Store(uri)
    mltrack.flush(timeout=30)
    mlflow.set_tracking_uri(None)
    config.reset()


def fresh_sqlite_db(template: Path, folder: Path) -> Path:
    """A copy of the migrated template store in ``folder``, its artifacts there too."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    shutil.copyfile(template, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                     (str(folder / "mlruns" / "0"),))
    return db


def wait_until(predicate, timeout: float = 60.0, every: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passed; returns its last value."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


@pytest.fixture(scope="session")
def fake_llm():
    """The package's own fake OpenAI/Anthropic server, for real SDK clients over HTTP."""
    from mltrack.testing import FakeLLMServer

    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def openai_client(fake_llm):
    import openai

    return openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="sk-test-not-a-real-key", max_retries=0)


@pytest.fixture
def anthropic_client(fake_llm):
    import anthropic

    return anthropic.Anthropic(base_url=fake_llm.anthropic_base_url, api_key="sk-ant-test-not-real", max_retries=0)


@pytest.fixture(autouse=True)
def _fresh_warnings():
    """Warn-once state is per process; each test starts clean so it can assert its own warnings."""
    from mltrack import _safety

    _safety.reset_warnings_for_tests()
    yield


@pytest.fixture(autouse=True)
def _fresh_writer():
    """Each test gets a producer of its own (nothing pending leaks between tests); they all share the session's
    journal folder, and so its one writer process (starting one imports MLflow: seconds)."""
    from mltrack import writer

    writer._reset_for_tests()
    yield
    writer._reset_for_tests()
