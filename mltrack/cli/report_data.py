"""Gather the calls logged in some experiments over a time window, straight from the runs' ``llm/`` artifacts.

Few store round trips: one paged ``search_runs`` for the runs (with their tags), then each run's calls artifacts
read from disk when the artifact store is local (one folder listing and a file read per run), else downloaded
per run in a few threads with MLflow's own progress bars switched off.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import urlparse

_WINDOW = re.compile(r"^(\d+)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RUNS_PAGE = 5000  # runs per search_runs request (SQL stores accept up to 50,000)

Progress = Callable[[int, int], None]


def is_duration(text: str | None) -> bool:
    """True for a ``--since`` such as ``12h`` (as opposed to a date)."""
    return bool(text and _WINDOW.match(text.strip()))


def parse_since(text: str | None, now: _dt.datetime | None = None) -> _dt.datetime | None:
    """``"12h"``, ``"7d"``, ``"30m"``, ``"2w"`` or an ISO date/time → when the window starts (None: all time)."""
    if text is None or not text.strip():
        return None
    now = now or _dt.datetime.now(_dt.timezone.utc)
    match = _WINDOW.match(text.strip())
    if match:
        return now - _dt.timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])
    try:
        start = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since expects a duration (a number and a unit s/m/h/d/w, e.g. 12h, 7d) or an ISO "
                         f"date/time (e.g. 2026-12-01, 2026-12-01T08:00), got {text!r}") from None
    return start if start.tzinfo else start.replace(tzinfo=_dt.timezone.utc)


@dataclass(frozen=True)
class CallRow:
    """One logged call as read back from a run's ``llm/calls-*.jsonl`` artifact."""

    run_id: str
    step: int
    time: _dt.datetime
    model: str
    provider: str
    tags: dict[str, str]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_prompt_tokens: int
    cost: Decimal | None
    latency_ms: float | None
    ttft_ms: float | None
    error: str | None


def resolve_experiments(client: Any, names: Sequence[str], all_experiments: bool, default: str | None) -> list[Any]:
    """The experiments to report on: all active ones, the named ones, else the configured one, else Default."""
    if all_experiments:
        found, token = [], None
        while True:
            page = client.search_experiments(max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return sorted(found, key=lambda e: e.name)
    wanted = [n.strip() for name in names for n in name.split(",") if n.strip()] or ([default] if default else [])
    if not wanted:
        return [client.get_experiment("0")]
    experiments, missing = [], []
    for name in dict.fromkeys(wanted):
        experiment = client.get_experiment_by_name(name)
        (missing.append(name) if experiment is None else experiments.append(experiment))
    if missing:
        known = sorted(e.name for e in client.search_experiments(max_results=1000))
        raise ValueError(f"no experiment named {', '.join(map(repr, missing))} at {client.tracking_uri} "
                         f"(experiments there: {', '.join(known) or 'none'})")
    return experiments


@dataclass(frozen=True)
class RunRef:
    """What the report needs of a run: where its artifacts are, when it ended, its tags (``mlflow.*`` left out)."""

    run_id: str
    artifact_uri: str
    end_time: int | None
    tags: dict[str, str]


def _user_tags(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in pairs if not k.startswith("mlflow.")}


def search_all_runs(client: Any, experiment_ids: list[str], since: _dt.datetime | None) -> list[RunRef]:
    """Every active run of the experiments that may hold calls in the window.

    A call happens between its run's start and end, so runs that ended before the window are skipped here;
    the window itself is applied to each call's own time. On MLflow's SQL store two plain queries (runs, tags)
    replace ``search_runs``, which also loads every run's params and latest metrics; elsewhere ``search_runs``."""
    cutoff_ms = None if since is None else since.timestamp() * 1000
    runs = _sql_store_runs(client, experiment_ids, cutoff_ms)
    return runs if runs is not None else _searched_runs(client, experiment_ids, cutoff_ms)


def _searched_runs(client: Any, experiment_ids: list[str], cutoff_ms: float | None) -> list[RunRef]:
    """The same through MLflow's public ``search_runs`` (any store), paged."""
    runs: list[RunRef] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, max_results=_RUNS_PAGE, page_token=token)
        runs.extend(RunRef(r.info.run_id, r.info.artifact_uri or "", r.info.end_time, _user_tags(r.data.tags.items()))
                    for r in page if cutoff_ms is None or r.info.end_time is None or r.info.end_time >= cutoff_ms)
        token = page.token
        if not token:
            return runs


def _sql_store_runs(client: Any, experiment_ids: list[str], cutoff_ms: float | None) -> list[RunRef] | None:
    """The runs and their tags straight from MLflow's SQL tables; None when the store is not SQL (or its
    tables are not what this MLflow version had), so the caller falls back to ``search_runs``."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from sqlalchemy import or_, select

        store = client._tracking_client.store
        if not isinstance(store, SqlAlchemyStore):
            return None
        wanted = [SqlRun.experiment_id.in_([int(e) for e in experiment_ids]), SqlRun.lifecycle_stage == "active"]
        if cutoff_ms is not None:
            wanted.append(or_(SqlRun.end_time.is_(None), SqlRun.end_time >= cutoff_ms))
        with store.ManagedSessionMaker() as session:
            found = session.execute(select(SqlRun.run_uuid, SqlRun.artifact_uri, SqlRun.end_time)
                                    .where(*wanted).order_by(SqlRun.start_time.desc(), SqlRun.run_uuid)).all()
            tag_rows = session.execute(select(SqlTag.run_uuid, SqlTag.key, SqlTag.value)
                                       .join(SqlRun, SqlRun.run_uuid == SqlTag.run_uuid).where(*wanted)).all()
    except Exception:  # noqa: BLE001 - MLflow internals moved: the public API still works
        return None
    tags: dict[str, list[tuple[str, str]]] = {}
    for run_id, key, value in tag_rows:
        tags.setdefault(run_id, []).append((key, value))
    return [RunRef(run_id, uri or "", end, _user_tags(tags.get(run_id, ()))) for run_id, uri, end in found]


def _local_dir(artifact_uri: str) -> Path | None:
    """The folder of a local artifact URI (plain path or ``file:``); None for remote stores."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        from mlflow.utils.file_utils import local_file_uri_to_path

        return Path(local_file_uri_to_path(artifact_uri))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # a path (or a Windows drive letter)
        return Path(artifact_uri)
    return None


def _parse_lines(run: RunRef, texts: Iterable[str]) -> list[CallRow]:
    by_step: dict[int, CallRow] = {}
    for text in texts:
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                row = _row(run.run_id, json.loads(line), run.tags)
            except (ValueError, TypeError, KeyError, InvalidOperation):
                continue  # a line this version cannot read costs that line only
            by_step[row.step] = row  # a replayed batch rewrites the same steps: keep one row per step
    return [by_step[s] for s in sorted(by_step)]


def _row(run_id: str, data: dict[str, Any], tags: dict[str, str]) -> CallRow:
    when = _dt.datetime.fromisoformat(str(data["timestamp"]).replace("Z", "+00:00"))
    cost = data.get("total_cost")
    return CallRow(
        run_id=run_id, step=int(data.get("step", 0)),
        time=when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc),
        model=data.get("model") or "(unknown)", provider=data.get("provider") or "(unknown)", tags=tags,
        prompt_tokens=int(data.get("prompt_tokens") or 0), completion_tokens=int(data.get("completion_tokens") or 0),
        total_tokens=int(data.get("total_tokens") or 0),
        cached_prompt_tokens=int(data.get("cached_prompt_tokens") or 0),
        cost=None if cost is None else Decimal(str(cost)),
        latency_ms=None if data.get("latency_ms") is None else float(data["latency_ms"]),
        ttft_ms=None if data.get("ttft_ms") is None else float(data["ttft_ms"]),
        error=data.get("error") or None,
    )


def _read_local(folder: Path) -> list[str]:
    try:
        names = sorted(n for n in os.listdir(folder / "llm") if n.startswith("calls-") and n.endswith(".jsonl"))
    except OSError:  # a run without calls
        return []
    return [(folder / "llm" / n).read_text(encoding="utf-8") for n in names]


def _read_remote(client: Any, run_id: str) -> list[str]:
    try:
        items = [i for i in client.list_artifacts(run_id, "llm")
                 if Path(i.path).name.startswith("calls-") and i.path.endswith(".jsonl")]
    except Exception:  # noqa: BLE001 - a run without artifacts, or one the store cannot list
        return []
    texts = []
    with tempfile.TemporaryDirectory(prefix="mltrack-report-") as tmp:
        for item in sorted(items, key=lambda i: i.path):
            with open(client.download_artifacts(run_id, item.path, tmp), encoding="utf-8") as fh:
                texts.append(fh.read())
    return texts


def read_calls(client: Any, runs: Sequence[RunRef], since: _dt.datetime | None,
               progress: Progress | None = None) -> list[CallRow]:
    """Every call of these runs made at or after ``since``, in run order then step order."""
    def calls_of(run: Any) -> list[CallRow]:
        local = _local_dir(run.artifact_uri)
        texts = _read_local(local) if local is not None else _read_remote(client, run.run_id)
        return _parse_lines(run, texts)

    rows: list[CallRow] = []
    total = len(runs)
    pool = None
    if all(_local_dir(r.artifact_uri) is not None for r in runs):
        results: Iterable[list[CallRow]] = map(calls_of, runs)
    else:
        pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="mltrack-report")
        results = pool.map(calls_of, runs)
    try:
        with _no_mlflow_progress_bars():
            for done, found in enumerate(results, 1):
                rows.extend(r for r in found if since is None or r.time >= since)
                if progress is not None:
                    progress(done, total)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return rows


@contextlib.contextmanager
def _no_mlflow_progress_bars() -> Iterator[None]:
    """MLflow draws a "Downloading artifacts" bar per download unless told not to (read at each download)."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def collect(client: Any, experiment_ids: list[str], since: _dt.datetime | None,
            progress: Progress | None = None) -> list[CallRow]:
    """Every call logged in the experiments' runs at or after ``since`` (None: all time)."""
    return read_calls(client, search_all_runs(client, experiment_ids, since), since, progress)
