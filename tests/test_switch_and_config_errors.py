"""The off switch wins over everything (no file read, no thread, no process, nothing written), and a bad config
is a ConfigError from every mltrack entry point, while an SDK call mltrack only watches goes through untracked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from decimal import Decimal
from pathlib import Path

import pytest

import mltrack
from mltrack import config
from mltrack.testing import ScriptedReply

BROKEN = "llm_track_costs: [not, a, bool\n"  # not valid YAML

OFF_SCRIPT = textwrap.dedent("""
    import json, os, sys, threading
    opened = []
    sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
    import anthropic, openai
    import mltrack

    def children():
        pid = os.getpid()
        found = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += fh.read().split()
        return found

    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=0)
    ask = lambda: client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    threads = threading.active_count()
    out = {}
    mltrack.instrument()

    @mltrack.track
    def double(x):
        return 2 * x

    out["track"] = double(21)
    with mltrack.track_llm_context("block") as tracker:
        response = ask()
        out["context_text"] = response.choices[0].message.content
        call = tracker.log_prompt_response("hi", response)
        out["logged"] = [call.prompt_tokens, call.completion_tokens, call.total_cost]
        out["totals"] = tracker.totals
    out["plain_call"] = ask().usage.total_tokens
    out["flush"] = mltrack.flush(5)
    out["threads"] = [threads, threading.active_count()]
    out["children"] = children()
    out["config_opened"] = [p for p in opened if p.endswith(".mltrack.yml")]
    out["mlflow_imported"] = "mlflow" in sys.modules
    print(json.dumps(out))
""")


@pytest.mark.parametrize("var", ["MLTRACK_ENABLED", "MLFLOW_ENABLED"])
def test_switch_off_wins_over_a_broken_config_and_touches_nothing(tmp_path, fake_llm, var):
    (tmp_path / ".mltrack.yml").write_text(BROKEN)
    journal = tmp_path / "journal"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLTRACK_", "MLFLOW_"))}
    env.update({var: "false", "MLTRACK_JOURNAL_DIR": str(journal), "MLFLOW_DISABLE_TELEMETRY": "true",
                "MLTRACK_STRICT": "1", "MLTRACK_AUTO_INSTRUMENT": "true",
                "PYTHONPATH": str(Path(mltrack.__file__).parent.parent)})
    fake_llm.queue(ScriptedReply(text="Hello", usage={"prompt_tokens": 11, "completion_tokens": 2,
                                                      "total_tokens": 13}),
                   ScriptedReply(text="Again", usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}))
    proc = subprocess.run([sys.executable, "-c", OFF_SCRIPT, fake_llm.openai_base_url], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["track"] == 42 and out["context_text"] == "Hello" and out["plain_call"] == 10
    assert out["logged"] == [11, 2, float((11 * Decimal("0.15") + 2 * Decimal("0.60")) / 10**6)]  # still priced
    assert out["totals"] == {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}
    assert out["flush"] is True
    assert out["threads"][0] == out["threads"][1] == 1  # no thread started, not even for a moment that lingers
    assert out["children"] == []
    assert out["config_opened"] == []  # the broken file is never opened
    assert out["mlflow_imported"] is False  # MLflow is not even imported
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mltrack.yml"]  # no mlflow.db, no mlruns, no journal
    assert "Warning" not in proc.stderr, proc.stderr


@pytest.fixture
def broken_config(tmp_path, monkeypatch):
    path = tmp_path / "broken.yml"
    path.write_text("llm_track_costs: sometimes\n")
    monkeypatch.setenv("MLTRACK_CONFIG", str(path))
    monkeypatch.delenv("MLTRACK_STRICT")  # as users run it: the safety net on (it must not swallow a ConfigError)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config.reset()
    yield path
    monkeypatch.delenv("MLTRACK_CONFIG")
    config.reset()


def _assert_names_the_problem(exc: BaseException | Warning, path: Path) -> None:
    text = str(exc)
    assert str(path) in text and "llm_track_costs" in text and "sometimes" in text, text


def test_config_error_from_track_every_call(broken_config):
    ran = []

    @mltrack.track
    def work():
        ran.append(1)
        return 1

    for _ in range(2):  # loud at the first tracked call, and every later one: never silently untracked
        with pytest.raises(mltrack.ConfigError) as info:
            work()
        _assert_names_the_problem(info.value, broken_config)
    assert ran == []


def test_config_error_from_track_llm_context_sync_and_async(broken_config):
    import asyncio

    with pytest.raises(mltrack.ConfigError) as info:
        with mltrack.track_llm_context("block"):
            pass
    _assert_names_the_problem(info.value, broken_config)

    async def block():
        async with mltrack.track_llm_context("block"):
            return 1

    with pytest.raises(mltrack.ConfigError):
        asyncio.run(block())


def test_config_error_from_tracker_entry_points(broken_config, openai_client):
    tracker = mltrack.LLMTracker(model="gpt-4o-mini")
    with pytest.raises(mltrack.ConfigError) as info:
        tracker.log_prompt_response("hi", "hello", token_usage={"prompt_tokens": 3, "completion_tokens": 1})
    _assert_names_the_problem(info.value, broken_config)
    calls = []

    @tracker.track_llm_call()
    def ask():
        calls.append(1)
        return "reply"

    with pytest.raises(mltrack.ConfigError):
        ask()
    assert calls == []  # refused before the call, like @track


def test_instrumented_call_outside_mltrack_goes_through_with_one_warning(broken_config, fake_llm, openai_client,
                                                                          tmp_path):
    mltrack.instrument("openai")
    try:
        fake_llm.queue(ScriptedReply(text="one", usage={"prompt_tokens": 5, "completion_tokens": 1,
                                                         "total_tokens": 6}),
                       ScriptedReply(text="two", usage={"prompt_tokens": 5, "completion_tokens": 1,
                                                         "total_tokens": 6}))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            texts = [openai_client.chat.completions.create(model="gpt-4o-mini", messages=[
                {"role": "user", "content": "hi"}]).choices[0].message.content for _ in range(2)]
    finally:
        mltrack.uninstrument("openai")
    assert texts == ["one", "two"]
    mine = [w for w in caught if "mltrack" in str(w.message)]
    assert len(mine) == 1 and mine[0].category is UserWarning  # once, not per call
    _assert_names_the_problem(mine[0].message, broken_config)
    assert "not tracked" in str(mine[0].message)
    assert mltrack.flush(5) is True
    assert not (tmp_path / "mlflow.db").exists()  # nothing was tracked, so nothing was written
