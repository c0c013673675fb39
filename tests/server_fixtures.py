"""A real PostgreSQL and a real ``mlflow server`` on it, started once per test session for tests marked ``server``.

- ``postgres``: a PostgreSQL server (``mltrack.testing._postgres``) with a fresh database ``mlflow``;
  ``postgres.restart(hard=...)`` / ``stop()`` / ``kill()`` / ``start()`` keep its port and data.
- ``mlflow_server``: ``mlflow server --backend-store-uri postgresql+psycopg2://... --artifacts-destination DIR
  --host 127.0.0.1 --port P --workers 1``, up when ``/health`` answers; ``restart(hard=...)`` keeps its port.
- ``server_store``: per test, that server as mltrack's (and MLflow's) tracking URI, with an experiment of the
  test's own, and read-back helpers through ``MlflowClient``.

They skip only when PostgreSQL is not installed (with ``CI`` set they fail instead: CI installs it).
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from _readback import Store

from mltrack.testing._mlflow_server import MlflowServer
from mltrack.testing._postgres import PostgresNotFound, PostgresServer, find_postgres

FIXTURE_SECONDS: dict[str, float] = {}  # what each session fixture took to start (printed at the end of a session)


def _postgres_missing(reason: str) -> None:
    message = f"{reason} (the server tests need it: apt-get install -y postgresql, or set MLTRACK_PG_BIN)"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI installs PostgreSQL (.ci/run): missing there is a broken setup, not a skip
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL with a fresh, empty database ``mlflow``."""
    bin_dir = find_postgres()
    if bin_dir is None:
        _postgres_missing("PostgreSQL is not installed: no initdb/postgres found")
    try:
        server = PostgresServer(bin_dir)
    except PostgresNotFound as exc:
        _postgres_missing(str(exc))
    begin = time.monotonic()
    try:
        server.start()
        server.create_database("mlflow")
        FIXTURE_SECONDS["postgres"] = time.monotonic() - begin
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def mlflow_server(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory):
    """A real ``mlflow server`` on ``postgres``, artifacts served through its proxy from a temporary folder."""
    try:
        import psycopg2  # noqa: F401 - MLflow's SQL store needs it for postgresql+psycopg2://
    except ImportError:
        pytest.fail("the server tests need psycopg2: pip install 'mltrack[server]' (or the dev extra)")
    folder = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(postgres.url("mlflow"), folder / "artifacts", log_path=folder / "server.log")
    try:
        server.start()
        FIXTURE_SECONDS["mlflow_server"] = server.start_seconds
        yield server
    finally:
        server.stop()


class ServerStore(Store):
    """Read-back helpers over the test's experiment on the server (always through a real MlflowClient)."""

    def __init__(self, uri: str, experiment: str) -> None:
        super().__init__(uri)
        self.experiment = experiment

    @property
    def experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        assert found is not None, f"experiment {self.experiment!r} was never created"
        return found.experiment_id

    @property
    def experiment_ids(self) -> tuple[str, ...]:
        return (self.experiment_id,)


@pytest.fixture
def server_store(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """The session's server as this test's tracking URI, with an experiment of the test's own."""
    import mlflow

    import mltrack
    from mltrack import config

    experiment = f"{request.node.name[:60]}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLTRACK_EXPERIMENT", experiment)
    mlflow.set_tracking_uri(mlflow_server.uri)  # also re-points MLflow's trace exporter
    config.reset()
    yield ServerStore(mlflow_server.uri, experiment)
    mltrack.flush(timeout=30)
    mlflow.set_tracking_uri(None)
    config.reset()


def fork_workers(worker, count: int, *args) -> list[int]:
    """Fork ``count`` processes, as gunicorn forks its workers after import; each runs ``worker(index, *args)``
    (its return value is the exit code) and never returns into pytest. Returns their pids."""
    pids = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = worker(index, *args)
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    return pids


def exit_codes(pids: list[int]) -> list[int]:
    """Wait for forked workers; their exit codes."""
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's hook (registered by conftest)
    if FIXTURE_SECONDS:
        figures = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in FIXTURE_SECONDS.items())
        terminalreporter.write_line(f"server fixtures started in: {figures}")
