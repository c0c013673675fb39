"""The journal and its server, as users' processes meet them: flush waits only for this process's records,
leftovers of other processes are written in the background (once) or dropped after the retention period, the
files are private, a helper process that cannot start means writing from a thread, stores that are down or
cannot be written hold nobody up, and ``mltrack journal`` shows, replays and drops what waits."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from conftest import Store, fresh_sqlite_db, wait_until

import mltrack
from mltrack import writer
from mltrack.writer import journal, records

REPO = Path(__file__).resolve().parents[1]
USAGE = {"prompt_tokens": 3, "completion_tokens": 2}


def _fresh_db(template: Path, folder: Path) -> Store:
    return Store(f"sqlite:///{fresh_sqlite_db(template, folder)}")


def _leftover(folder: Path, uri: str, run_name: str, n: int) -> Path:
    """What a process that died (its owner lock is free) left in the journal folder for ``uri``: a run, n calls."""
    from mltrack.config import get_settings
    from mltrack.engine.process import RawCall, process
    from mltrack.run_state import RunHandle
    from mltrack.writer.ops import CallFlags, EndRun, LogCall, StartRun

    handle = RunHandle(run_name, tracking_uri=uri)
    ops = [StartRun(handle, {})]
    for i in range(n):
        raw = RawCall(prompt="p", response="r", model="gpt-4o-mini", token_usage=USAGE)
        ops.append(LogCall(handle, process(raw, get_settings(), handle), CallFlags()))
    ops.append(EndRun(handle, "FINISHED", time.time()))
    root = journal.Folder(folder).prepare()
    segment = root.store_dir(uri) / f"{journal.new_owner()}.000001.jsonl"
    segment.write_text("".join(records.dumps(records.encode(op)) + "\n" for op in ops))
    return segment


def _use_journal(path: Path) -> journal.Folder:
    writer._reset_for_tests(journal_dir=str(path))
    return journal.Folder(path)


def _warnings_until_written(jdir: Path, leftover: Path) -> list[str]:
    """Track one call with ``jdir`` as the journal until the server is done with ``leftover``; the warnings seen."""
    _use_journal(jdir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mltrack.LLMTracker(model="gpt-4o-mini").log_prompt_response("p", "r", token_usage=USAGE)
        assert mltrack.flush(timeout=60) is True
        assert wait_until(lambda: not leftover.exists())
        mltrack.flush(timeout=10)
    return [str(w.message) for w in caught]


@pytest.fixture
def lenient(monkeypatch):
    monkeypatch.delenv("MLTRACK_STRICT", raising=False)


# flush and leftovers ------------------------------------------------------------------------------------
def test_flush_waits_only_for_this_process_and_leftovers_are_written_once_in_the_background(
        store, _template_store, tmp_path):
    jdir = tmp_path / "journal"
    gone = tmp_path / "gone-store"
    gone.write_text("a file where the store's folder should be: this store never answers")
    dead_uri = f"sqlite:///{gone / 'mlflow.db'}"
    stuck = _leftover(jdir, dead_uri, "never-written", 50)
    later = _fresh_db(_template_store, tmp_path / "other-store")
    healthy = _leftover(jdir, later.uri, "left-by-a-dead-process", 7)
    _use_journal(jdir)

    with mltrack.track_llm_context("mine", model="gpt-4o-mini") as tracker:
        tracker.log_prompt_response("p", "r", token_usage=USAGE)
    assert mltrack.flush(timeout=60) is True  # not held up by the 50 records for a store that never answers
    assert store.run_named("mine").data.metrics["llm.calls"] == 1
    assert stuck.exists()

    # The other process's records for a store that answers are written by the server, in the background, once.
    assert wait_until(lambda: not healthy.exists())
    run = later.run_named("left-by-a-dead-process")
    assert [s for s, _ in later.history(run.info.run_id, "llm.calls")] == list(range(7))
    assert run.data.metrics["llm.tokens.cumulative.total"] == 35 and run.info.status == "FINISHED"
    assert len(later.runs()) == 1


def test_leftovers_past_the_retention_period_are_dropped_with_one_warning(store, tmp_path, lenient):
    jdir = tmp_path / "journal"
    gone = tmp_path / "gone"
    gone.write_text("never a store")
    old = _leftover(jdir, f"sqlite:///{gone / 'mlflow.db'}", "too-old", 3)
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    caught = _warnings_until_written(jdir, old)
    dropped = [text for text in caught if "dropped" in text and "retention" in text]
    assert len(dropped) == 1 and "5 records" in dropped[0], caught


def test_a_line_cut_short_by_a_dying_process_is_reported_and_the_rest_written(store, _template_store, tmp_path,
                                                                              lenient):
    """A process killed in the middle of a journal write leaves a torn last line: the whole lines before it are
    written, the torn one is counted as dropped with one warning, and the segment goes (no writer waits on it)."""
    jdir = tmp_path / "journal"
    other = _fresh_db(_template_store, tmp_path / "other-store")
    segment = _leftover(jdir, other.uri, "torn", 6)
    whole = segment.read_bytes()
    lines = whole.splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:-2]) + lines[-2][:40])  # the 6th call cut short; the run's end never came
    caught = _warnings_until_written(jdir, segment)
    run = other.run_named("torn")
    assert [s for s, _ in other.history(run.info.run_id, "llm.calls")] == list(range(5))
    cut = [text for text in caught if "cut short" in text]
    assert len(cut) == 1 and "dropped 1 records" in cut[0], caught


def test_journal_files_and_folders_are_readable_by_their_owner_only(store, tmp_path):
    folder = _use_journal(tmp_path / "journal")
    with mltrack.track_llm_context("private", model="gpt-4o-mini") as tracker:
        tracker.log_prompt_response("secret prompt", "secret answer", token_usage=USAGE)
    assert mltrack.flush(timeout=60) is True  # written, and still on disk while this process lives
    paths = [folder.root, *folder.root.rglob("*")]
    segments = [p for p in paths if p.suffix == ".jsonl"]
    assert segments and b"secret prompt" in segments[0].read_bytes()
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        elif not path.is_socket():
            assert mode == 0o600, (path, oct(mode))


# where no helper process can run --------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["popen-raises", "not-python", "writer_process-off"])
def test_without_a_helper_process_a_thread_here_writes_everything(store, tmp_path, monkeypatch, how):
    _use_journal(tmp_path / "journal")  # a folder no server holds yet
    if how == "popen-raises":  # as on Windows, where Popen(pass_fds=...) fails an assertion
        def refuse(*args, **kwargs):
            raise AssertionError("pass_fds not supported on Windows")

        monkeypatch.setattr(subprocess, "Popen", refuse)
    elif how == "not-python":
        monkeypatch.setattr(sys, "executable", "/usr/bin/uwsgi")
    else:
        mltrack.configure(writer_process=False)
    with mltrack.track_llm_context("here", model="gpt-4o-mini") as tracker:
        for _ in range(25):
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
    assert mltrack.flush(timeout=120) is True
    assert writer.status()["server"] == "thread"
    run = store.run_named("here")
    assert [s for s, _ in store.history(run.info.run_id, "llm.calls")] == list(range(25))
    assert run.data.metrics["llm.tokens.cumulative.total"] == 125 and run.info.status == "FINISHED"


# processes ------------------------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import os, sys, time
    import mltrack
    with mltrack.track_llm_context(os.environ.get("CHILD_RUN", "child"), model="gpt-4o-mini") as tracker:
        for i in range(int(os.environ["CHILD_CALLS"])):
            tracker.log_prompt_response("p", f"r{i}", token_usage={"prompt_tokens": 3, "completion_tokens": 2})
    print("DONE", time.time(), flush=True)
""")


def _child_env(uri: str, jdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLTRACK_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=uri, MLTRACK_JOURNAL_DIR=str(jdir), MLFLOW_DISABLE_TELEMETRY="true",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def _run_child(env: dict[str, str], cwd: Path, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Run CHILD; returns the result and the seconds from the end of its user code to its exit."""
    result = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=300, **kwargs)
    ended = time.time()
    done = [line for line in result.stdout.splitlines() if line.startswith("DONE")]
    assert result.returncode == 0 and done, result.stderr[-3000:]
    return result, ended - float(done[0].split()[1])


def _records_on_disk(jdir: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(jdir.glob("stores/*/*.jsonl")) for line in p.read_text().splitlines()
            if line.strip() and line.strip() != '{"t":"z"}']


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exit_with_a_tracking_server_that_is_down_is_quick_and_keeps_everything(tmp_path):
    jdir = tmp_path / "journal"
    env = _child_env(f"http://127.0.0.1:{_closed_port()}", jdir, CHILD_CALLS="40")
    result, exit_s = _run_child(env, tmp_path)
    assert exit_s < 5.0, f"{exit_s:.1f} s from the end of user code to exit"
    assert "cannot write to the MLflow store http://127.0.0.1" in result.stderr
    kept = _records_on_disk(jdir)
    assert [r["t"] for r in kept].count("l") == 40 and [r["t"] for r in kept].count("e") == 1


def test_a_store_in_a_read_only_folder_is_one_clear_warning_and_a_quick_exit(tmp_path):
    """MLflow cannot create the SQLite file in a folder nobody may write (root may write anywhere, except in an
    immutable folder); mltrack says so once, naming the store and the reason, and the process leaves at once."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    os.chmod(readonly, 0o555)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(readonly)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and chattr cannot make a folder read-only here")
    try:
        jdir = tmp_path / "journal"
        env = _child_env(f"sqlite:///{readonly / 'mlflow.db'}", jdir, CHILD_CALLS="5")
        result, exit_s = _run_child(env, tmp_path)
    finally:
        subprocess.run(["chattr", "-i", str(readonly)], capture_output=True)
    assert exit_s < 5.0
    warned = [line for line in result.stderr.splitlines() if "Warning: mltrack: cannot write to the MLflow store" in line]
    assert len(warned) == 1 and str(readonly) in warned[0] and "cannot create mlflow.db" in warned[0], \
        result.stderr[-2000:]
    assert [r["t"] for r in _records_on_disk(jdir)].count("l") == 5


def test_eight_processes_starting_together_on_a_fresh_sqlite_store_all_land(tmp_path):
    db = tmp_path / "fresh" / "mlflow.db"
    db.parent.mkdir()
    jdir = tmp_path / "journal"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=_child_env(f"sqlite:///{db}", jdir, CHILD_CALLS="20", CHILD_RUN=f"w{i}"))
             for i in range(8)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "DONE" in out, err[-3000:]
    store = Store(f"sqlite:///{db}")
    runs = {r.info.run_name: r for r in store.runs()}
    assert sorted(runs) == [f"w{i}" for i in range(8)]
    for run in runs.values():
        assert [s for s, _ in store.history(run.info.run_id, "llm.calls")] == list(range(20))
        assert run.info.status == "FINISHED"
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert not [t for t in tables if t.startswith("_alembic_tmp")]


# mltrack journal ----------------------------------------------------------------------------------------------
def _cli(*args: str, jdir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLTRACK_JOURNAL_DIR=str(jdir), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mltrack", "journal", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_journal_command_lists_replays_and_drops(_template_store, tmp_path):
    jdir = tmp_path / "journal"
    back = tmp_path / "store"
    back.write_text("down for now")
    uri = f"sqlite:///{back / 'mlflow.db'}"
    _leftover(jdir, uri, "waiting", 4)
    gone = f"sqlite:///{tmp_path / 'nowhere' / 'x' / 'mlflow.db'}"
    (tmp_path / "nowhere").write_text("never")
    _leftover(jdir, gone, "hopeless", 2)

    listed = _cli("list", jdir=jdir)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:] if line.startswith("sqlite")}
    assert rows[uri][1] == "6" and rows[gone][1] == "4"  # start + calls + end

    refused = _cli("replay", "--store", uri, "--timeout", "30", jdir=jdir)
    assert refused.returncode == 1 and "does not answer" in refused.stdout

    back.unlink()
    store = _fresh_db(_template_store, back)
    replayed = _cli("replay", "--store", uri, jdir=jdir)
    assert replayed.returncode == 0 and "written: 6 records" in replayed.stdout, replayed.stdout + replayed.stderr
    run = store.run_named("waiting")
    assert run.data.metrics["llm.calls"] == 4 and run.data.metrics["llm.tokens.cumulative.total"] == 20

    dropped = _cli("drop", "--store", gone, jdir=jdir)
    assert dropped.returncode == 0 and "dropped 1 segment(s)" in dropped.stdout
    assert "nothing waits" in _cli("list", jdir=jdir).stdout
    unknown = _cli("drop", "--store", "sqlite:///nope.db", jdir=jdir)
    assert unknown.returncode == 2 and "nothing waits for store" in unknown.stderr


def test_a_journal_folder_that_cannot_be_written_falls_back_to_the_temp_folder(store, tmp_path):
    """A read-only home (the default cache folder not writable): the journal goes to mltrack-<uid> in the temp
    folder, and tracking works as usual."""
    locked = tmp_path / "readonly-cache"
    locked.mkdir()
    os.chmod(locked, 0o555)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and chattr cannot make a folder read-only here")
    try:
        writer._reset_for_tests(journal_dir=str(locked / "journal"))
        with mltrack.track_llm_context("fallback-folder", model="gpt-4o-mini") as tracker:
            tracker.log_prompt_response("p", "r", token_usage=USAGE)
        assert mltrack.flush(timeout=60) is True
        assert writer.status()["journal_dir"] == str(journal.fallback_dir())
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
    assert store.run_named("fallback-folder").data.metrics["llm.calls"] == 1
