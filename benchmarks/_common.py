"""Helpers shared by the benchmark sections (each section runs in its own fresh interpreter).

Nothing here is part of mltrack; it only uses mltrack's public API, ``mltrack.testing`` and
``mltrack.writer.status()``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

# Every benchmark process runs with telemetry off (set again here for a section started by hand).
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------------------- statistics
def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return float(sorted_values[rank - 1])


def summary_us(samples_ns: Iterable[int]) -> dict[str, float]:
    """p50 / p90 / p99 / max / mean (microseconds) of samples in nanoseconds."""
    values = sorted(samples_ns)
    out = {f"p{q}": percentile(values, q) / 1000.0 for q in (50, 90, 99)}
    out["max"] = values[-1] / 1000.0 if values else float("nan")
    out["mean"] = sum(values) / len(values) / 1000.0 if values else float("nan")
    out["n"] = len(values)
    return out


def fmt_us(value: float) -> str:
    """A duration in microseconds, readable (µs below 10 ms, else ms)."""
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f} ms"
    return f"{value:.1f} µs"


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


# ----------------------------------------------------------------------------------------- stores
def make_template_store(path: Path) -> Path:
    """A migrated, empty MLflow SQLite store (migrations take seconds; sections copy it instead)."""
    from mlflow import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def fresh_store(template: Path, folder: Path, name: str) -> tuple[str, Path]:
    """Copy the template into ``folder`` with its artifacts there too; returns (tracking URI, db path)."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / f"{name}.db"
    shutil.copyfile(template, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                     (str(folder / f"{name}-artifacts" / "0"),))
    return f"sqlite:///{db}", db


def count_rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return -1


# ----------------------------------------------------------------------------------------- the fake server
def start_fake_server() -> Any:
    """mltrack's fake OpenAI server, with Nagle's algorithm off on its sockets.

    The fake server writes a response's headers and body in two ``send`` calls; with Nagle on, the second
    waits for the client's delayed ACK (~40 ms on Linux), so every call would take ~50 ms instead of ~2 ms.
    Turning it off (``StreamRequestHandler.disable_nagle_algorithm``) only shortens the bare HTTP round trip,
    which is the baseline every tracked variant is compared with.
    """
    from mltrack.testing import FakeLLMServer

    server = FakeLLMServer().start()
    handler = getattr(getattr(server, "_httpd", None), "RequestHandlerClass", None)
    if handler is not None and hasattr(handler, "disable_nagle_algorithm"):
        handler.disable_nagle_algorithm = True
    return server


def openai_client(base_url: str, marks: list[int] | None = None) -> Any:
    """The real OpenAI client for the fake server. With ``marks``, its HTTP transport writes into ``marks[0]`` /
    ``marks[1]`` when the network part of each request starts and ends (response body read), so the time the
    caller's thread spends outside the network can be told apart."""
    import httpx
    import openai

    http_client = None
    if marks is not None:
        class MarkingTransport(httpx.HTTPTransport):
            def handle_request(self, request: Any) -> Any:
                marks[0] = time.perf_counter_ns()
                response = super().handle_request(request)
                response.read()
                marks[1] = time.perf_counter_ns()
                return response

        http_client = httpx.Client(transport=MarkingTransport())
    return openai.OpenAI(base_url=base_url, api_key="sk-bench-not-a-real-key", max_retries=0,
                         http_client=http_client)


MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "In one sentence: why do benchmarks need a baseline measured in the same run?"},
]


# ----------------------------------------------------------------------------------------- process facts
def writer_process_pid() -> int | None:
    """The pid of the journal folder's shared writer process, when one runs (from its status.json)."""
    try:
        from mltrack import writer

        folder = writer.status().get("journal_dir")
        if not folder:
            return None
        pid = int(json.loads((Path(folder) / "status.json").read_text())["pid"])
        os.kill(pid, 0)
        return pid
    except Exception:  # noqa: BLE001
        return None


def tree_rss_bytes(pid: int | None = None) -> int:
    """RSS of a process and all its descendants (Linux /proc): what an application costs, helpers included."""
    root = pid or os.getpid()
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        current = todo.pop()
        total += rss_bytes(current)
        todo.extend(children.get(current, ()))
    return total


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of this process, or of ``pid`` (Linux /proc; falls back to ru_maxrss elsewhere)."""
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def writer_pending() -> int | None:
    """Records this process handed to mltrack that are not written yet."""
    try:
        from mltrack import writer

        return int(writer.status()["pending"])
    except Exception:  # noqa: BLE001 - informative only
        return None


def writer_dropped() -> int | None:
    try:
        from mltrack import writer

        return int(writer.status()["dropped"])
    except Exception:  # noqa: BLE001
        return None


def write_result(path: str | None, result: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")


def now() -> float:
    return time.perf_counter()


if __name__ == "__main__":  # python benchmarks/_common.py make-template PATH
    if len(sys.argv) == 3 and sys.argv[1] == "make-template":
        make_template_store(Path(sys.argv[2]))
        sys.exit(0)
    sys.exit("usage: python benchmarks/_common.py make-template PATH")
