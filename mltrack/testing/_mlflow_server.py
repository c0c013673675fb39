"""A real ``mlflow server`` subprocess for tests and benchmarks, waited for on ``/health``.

It runs MLflow's own CLI with the arguments docs/deploy.md gives for a team server (a database backend store,
artifacts served through the server's proxy), on 127.0.0.1 at a free port, in a process group of its own so
that ``kill()`` takes its uvicorn worker down too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ._postgres import _child_setup, free_port

__all__ = ["MlflowServer"]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0

# Settings of the test process that must not leak into the server.
_CLIENT_ONLY = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_TOKEN",
                "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLTRACK_STRICT")


class MlflowServer:
    """``mlflow server --backend-store-uri DB --artifacts-destination DIR --host 127.0.0.1 --port P --workers N``."""

    def __init__(self, backend_store_uri: str, artifacts_destination: str | os.PathLike[str], *,
                 port: int | None = None, workers: int = 1, log_path: str | os.PathLike[str] | None = None,
                 jobs: bool = False) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts_destination = str(artifacts_destination)
        self.port = port or free_port()
        self.workers = workers
        self.jobs = jobs  # MLflow's job runner (7 huey processes, for judges/optimizers): not needed to track
        self.log_path = Path(log_path) if log_path else Path(self.artifacts_destination).with_suffix(".server.log")
        self._proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0  # how long the last start() took until /health answered

    @property
    def uri(self) -> str:
        """The tracking URI clients use."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_store_uri,
                "--artifacts-destination", self.artifacts_destination, "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", str(self.workers)]

    def start(self, timeout: float = 180.0) -> "MlflowServer":
        """Start the server and wait until ``/health`` answers (it creates or upgrades the database schema first)."""
        begin = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k not in _CLIENT_ONLY}
        env.update(MLFLOW_DISABLE_TELEMETRY="true", LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1",
                   MLFLOW_SERVER_ENABLE_JOB_EXECUTION="true" if self.jobs else "false")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                          preexec_fn=_child_setup(None))
        deadline = begin + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self._proc.returncode}; its log:\n{self.log_tail()}")
            if self.healthy():
                self.start_seconds = time.monotonic() - begin
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"mlflow server did not answer /health within {timeout:.0f} s; its log:\n{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server's process group and wait for it (then SIGKILL it)."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the server's process group, as a crash would; the port is free when this returns."""
        self._signal(signal.SIGKILL, 30.0)

    def restart(self, hard: bool = False, timeout: float = 180.0) -> None:
        """Stop (``hard``: kill) and start again on the same port."""
        self.kill() if hard else self.stop()
        self.start(timeout)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _signal(self, sig: int, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, sig)  # the CLI and the uvicorn process it started
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        deadline = time.monotonic() + 10  # the uvicorn process may outlive the CLI briefly: wait for the port
        while time.monotonic() < deadline and _listening(self.port):
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
