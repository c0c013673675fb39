"""``mltrack report``'s numbers, exactly, in every format: known calls made through mltrack's public API (and the
real openai SDK against the fake server), then the figures recomputed here by hand."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from decimal import Decimal

import numpy as np
import openai
import pytest

import mltrack
from mltrack.cli.main import main
from mltrack.cli.report_render import format_usd
from mltrack.testing import ScriptedReply

MINI_IN, MINI_CACHED, MINI_OUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")  # gpt-4o-mini, USD per 1M
FOUR_O_IN, FOUR_O_OUT = Decimal("2.5"), Decimal("10")  # gpt-4o
M = 10**6


def _p(values, q):
    """numpy's default (linear) percentile: the independent reference for the report's p50/p95."""
    return float(np.percentile(values, q)) if values else None


@pytest.fixture
def known(store, fake_llm, openai_client):
    """Seven calls in two runs of Default (tags prompt_version v1 / v2) and one in experiment 'other'."""
    with mltrack.track_llm_context("a", tags={"prompt_version": "v1"}) as tracker:
        tracker.log_prompt_response("p", "r", model="gpt-4o-mini", latency_ms=100.0,
                                    token_usage={"prompt_tokens": 1000, "completion_tokens": 100})
        tracker.log_prompt_response("p", "r", model="gpt-4o-mini", latency_ms=300.0,
                                    token_usage={"prompt_tokens": 1000, "completion_tokens": 100})
        tracker.log_prompt_response("p", "r", model="gpt-4o", latency_ms=50.0,
                                    token_usage={"prompt_tokens": 101, "completion_tokens": 10})
        tracker.log_prompt_response("p", "r", model="my-local", provider="local", latency_ms=70.0,
                                    token_usage={"prompt_tokens": 10, "completion_tokens": 10})
        failing = tracker.track_llm_call(model="gpt-4o")(lambda: (_ for _ in ()).throw(TimeoutError()))
        with pytest.raises(TimeoutError):
            failing()
    mltrack.instrument("openai")
    try:
        with mltrack.track_llm_context("b", tags={"prompt_version": "v2"}):
            fake_llm.queue(ScriptedReply(usage={"prompt_tokens": 2000, "completion_tokens": 20, "total_tokens": 2020,
                                                "prompt_tokens_details": {"cached_tokens": 1024}}))
            list(openai_client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                       messages=[{"role": "user", "content": "hi there"}]))
            fake_llm.queue(ScriptedReply(status=429))
            with pytest.raises(openai.RateLimitError):
                openai_client.chat.completions.create(model="gpt-4o-mini",
                                                      messages=[{"role": "user", "content": "hi"}])
    finally:
        mltrack.uninstrument("openai")
    with mltrack.track_llm_context("c", experiment="other") as tracker:
        tracker.log_prompt_response("p", "r", model="gpt-4o-mini", latency_ms=10.0,
                                    token_usage={"prompt_tokens": 10, "completion_tokens": 10})
    assert mltrack.flush(timeout=30)
    lines = {name: store.artifact_lines(store.run_named(name).info.run_id) for name in ("a", "b")}
    return {"timeout_ms": lines["a"][4]["latency_ms"], "stream_ms": lines["b"][0]["latency_ms"],
            "ttft_ms": lines["b"][0]["ttft_ms"], "ratelimit_ms": lines["b"][1]["latency_ms"]}


def _expected_by_model(k):
    """The per-model figures, by hand."""
    mini_costs = [1000 * MINI_IN / M + 100 * MINI_OUT / M] * 2 + [(976 * MINI_IN + 1024 * MINI_CACHED
                                                                   + 20 * MINI_OUT) / M, Decimal(0)]
    mini_lat = [100.0, 300.0, k["stream_ms"], k["ratelimit_ms"]]
    four_o_lat = [50.0, k["timeout_ms"]]
    return {
        "gpt-4o-mini": dict(calls=4, errors=1, error_rate=0.25, prompt_tokens=4000, completion_tokens=220,
                            total_tokens=4220, cached_prompt_tokens=1024, cached_share=1024 / 4000,
                            cost_usd=f"{sum(mini_costs):f}", unpriced_calls=0, latency_p50_ms=_p(mini_lat, 50),
                            latency_p95_ms=_p(mini_lat, 95), ttft_p50_ms=k["ttft_ms"], ttft_p95_ms=k["ttft_ms"]),
        "gpt-4o": dict(calls=2, errors=1, error_rate=0.5, prompt_tokens=101, completion_tokens=10, total_tokens=111,
                       cached_prompt_tokens=0, cached_share=0.0,
                       cost_usd=f"{101 * FOUR_O_IN / M + 10 * FOUR_O_OUT / M:f}", unpriced_calls=0,
                       latency_p50_ms=_p(four_o_lat, 50), latency_p95_ms=_p(four_o_lat, 95), ttft_p50_ms=None,
                       ttft_p95_ms=None),
        "my-local": dict(calls=1, errors=0, error_rate=0.0, prompt_tokens=10, completion_tokens=10, total_tokens=20,
                         cached_prompt_tokens=0, cached_share=0.0, cost_usd=None, unpriced_calls=1,
                         latency_p50_ms=70.0, latency_p95_ms=70.0, ttft_p50_ms=None, ttft_p95_ms=None),
    }


def test_hand_computed_costs_are_what_the_contract_says():
    assert f"{101 * FOUR_O_IN / M + 10 * FOUR_O_OUT / M:f}" == "0.0003525"
    assert f"{(976 * MINI_IN + 1024 * MINI_CACHED + 20 * MINI_OUT) / M:f}" == "0.0002352"


def test_json_per_model_is_exact(known, capsys):
    assert main(["report", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["experiments"] == ["Default"] and doc["runs"] == 2 and doc["by"] == "model"
    expected = _expected_by_model(known)
    assert [g["key"] for g in doc["groups"]] == ["gpt-4o-mini", "gpt-4o", "my-local"]  # by cost, highest first
    got = {g.pop("key"): g for g in doc["groups"]}
    assert got == expected
    all_lat = [100.0, 300.0, 50.0, 70.0, known["timeout_ms"], known["stream_ms"], known["ratelimit_ms"]]
    total = doc["total"]
    assert (total["calls"], total["errors"], total["total_tokens"], total["unpriced_calls"]) == (7, 2, 4351, 1)
    assert total["cost_usd"] == f"{Decimal(expected['gpt-4o-mini']['cost_usd']) + Decimal('0.0003525'):f}"
    assert total["cached_share"] == 1024 / 4111
    assert (total["latency_p50_ms"], total["latency_p95_ms"]) == (_p(all_lat, 50), _p(all_lat, 95))


def test_csv_per_model_is_exact(known, capsys):
    assert main(["report", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["model"] for r in rows] == ["gpt-4o-mini", "gpt-4o", "my-local", "(all)"]
    for row in rows[:3]:
        want = _expected_by_model(known)[row.pop("model")]
        assert row == {k: "" if v is None else str(v) for k, v in want.items()}


def test_table_shows_money_with_its_significant_digits(known, capsys):
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("7 calls in 2 runs, all time, experiment Default\n")
    table = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line and line[0] not in "-*u"}
    want = _expected_by_model(known)
    mini, four_o, local, total = table["gpt-4o-mini"], table["gpt-4o"], table["my-local"], table["(all)"]
    assert four_o[1:8] == ["2", "50.0%", "101", "10", "111", "0.0%", "$0.0003525"]
    assert four_o[8:10] == [f"{want['gpt-4o']['latency_p50_ms']:.1f}", f"{want['gpt-4o']['latency_p95_ms']:.1f}"]
    assert four_o[10:] == ["-", "-"]
    assert mini[1:8] == ["4", "25.0%", "4000", "220", "4220", "25.6%", "$0.0006552"]
    assert mini[8:10] == [f"{want['gpt-4o-mini'][k]:.1f}" for k in ("latency_p50_ms", "latency_p95_ms")]
    assert mini[10:] == [f"{known['ttft_ms']:.1f}"] * 2
    assert local[1:8] == ["1", "0.0%", "10", "10", "20", "0.0%", "unpriced"]
    assert total[1:3] == ["7", "28.6%"] and total[7] == "$0.0010077*"
    assert "unpriced: no call of this group has a known price" in out


def test_by_tag_compares_prompt_versions(known, capsys):
    assert main(["report", "--by", "tag:prompt_version", "--format", "json"]) == 0
    got = {g["key"]: g for g in json.loads(capsys.readouterr().out)["groups"]}
    assert set(got) == {"v1", "v2"}
    v1, v2 = got["v1"], got["v2"]
    assert (v1["calls"], v1["errors"], v1["total_tokens"], v1["unpriced_calls"]) == (5, 1, 2331, 1)
    assert v1["cost_usd"] == f"{2 * (1000 * MINI_IN + 100 * MINI_OUT) / M + Decimal('0.0003525'):f}"
    assert (v2["calls"], v2["errors"], v2["error_rate"], v2["cached_share"]) == (2, 1, 0.5, 1024 / 2000)
    assert v2["cost_usd"] == "0.0002352"
    v1_lat = [100.0, 300.0, 50.0, 70.0, known["timeout_ms"]]
    assert (v1["latency_p50_ms"], v1["latency_p95_ms"]) == (_p(v1_lat, 50), _p(v1_lat, 95))


def test_by_provider(known, capsys):
    assert main(["report", "--by", "provider", "--format", "csv"]) == 0
    rows = {r["provider"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert (rows["openai"]["calls"], rows["local"]["calls"], rows["(all)"]["calls"]) == ("6", "1", "7")
    assert rows["local"]["cost_usd"] == "" and rows["local"]["unpriced_calls"] == "1"


def test_several_experiments_and_all(known, capsys):
    for argv in (["--experiment", "Default,other"], ["--experiment", "Default", "--experiment", "other"],
                 ["--all-experiments"]):
        assert main(["report", "--format", "json", *argv]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert sorted(doc["experiments"]) == ["Default", "other"], argv
        assert (doc["total"]["calls"], doc["runs"]) == (8, 3)
    assert main(["report", "--experiment", "other", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"]["calls"] == 1 and doc["total"]["cost_usd"] == f"{10 * MINI_IN / M + 10 * MINI_OUT / M:f}"
    assert main(["report", "--experiment", "Default,nope"]) == 2
    err = capsys.readouterr().err
    assert "no experiment named 'nope'" in err and "Default" in err and "other" in err


def _old_call_run(store, days_ago: float) -> str:
    """A run (and its calls artifact, in the writer's format) whose one call was made ``days_ago`` days ago."""
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_ago)
    run = store.client.create_run("0", start_time=int(when.timestamp() * 1000), run_name="old")
    line = {"step": 0, "timestamp": when.isoformat(), "model": "gpt-4o-mini", "provider": "openai",
            "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "cached_prompt_tokens": 0,
            "total_cost": "0.00000285", "latency_ms": 5.0, "ttft_ms": None, "error": None}
    store.client.log_text(run.info.run_id, json.dumps(line) + "\n", "llm/calls-000000.jsonl")
    store.client.set_terminated(run.info.run_id, end_time=int(when.timestamp() * 1000) + 1000)
    return run.info.run_id


def test_since_filters_by_call_time_not_run_start(store, capsys):
    _old_call_run(store, days_ago=10)
    # A run that started 10 days ago, with a call made now: it is in a 1-day window.
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    run = store.client.create_run("0", start_time=int(started.timestamp() * 1000), run_name="long")
    tracker = mltrack.LLMTracker(run_id=run.info.run_id)
    tracker.log_prompt_response("p", "r", model="gpt-4o", latency_ms=1.0,
                                token_usage={"prompt_tokens": 101, "completion_tokens": 10})
    assert mltrack.flush(timeout=30)

    def calls(*since):
        assert main(["report", "--format", "json", *since]) == 0
        total = json.loads(capsys.readouterr().out)["total"]
        return None if total is None else (total["calls"], total["cost_usd"])

    assert calls() == (2, "0.00035535")
    assert calls("--since", "1d") == (1, "0.0003525")
    assert calls("--since", "24h") == (1, "0.0003525")
    assert calls("--since", "11d") == (2, "0.00035535")
    eleven_days = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=11)).date().isoformat()
    assert calls("--since", eleven_days) == (2, "0.00035535")
    assert calls("--since", (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).date().isoformat()) is None
    assert main(["report", "--since", "yesterday"]) == 2
    assert "--since expects a duration" in capsys.readouterr().err


def test_bad_by_is_named(store, capsys):
    assert main(["report", "--by", "colour"]) == 2
    assert "--by expects model, provider or tag:NAME" in capsys.readouterr().err


@pytest.mark.parametrize("value, shown", [
    ("1", "$1.00"), ("0.00015", "$0.000150"), ("0.0003525", "$0.0003525"), ("0", "$0.00"), ("12.5", "$12.50"),
    ("1234.5678", "$1234.57"), ("0.1", "$0.100"), ("0.00000285", "$0.00000285"), ("0.123456789", "$0.123457"),
    ("-0.5", "-$0.500"), ("0.1234565", "$0.123457"), ("2.5", "$2.50"),
])
def test_format_usd(value, shown):
    assert format_usd(Decimal(value)) == shown


def _run_cli(args, store_uri, **kw):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(mltrack.__file__)),
                                                     os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "mltrack", "report", *args], env=env, **kw)


def test_piped_output_has_no_progress_bars(known, store):
    proc = _run_cli([], store.uri, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # neither MLflow's "Downloading artifacts" bars nor ours
    assert "7 calls in 2 runs" in proc.stdout


@pytest.mark.skipif(os.name == "nt", reason="a pseudo-terminal needs a POSIX system")
def test_terminal_gets_one_progress_bar_of_its_own(known, store):
    import pty

    master, slave = pty.openpty()
    try:
        proc = _run_cli(["--format", "csv"], store.uri, stdout=subprocess.PIPE, stderr=slave, timeout=120)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    text = seen.decode()
    assert "mltrack report: reading calls" in text and "2/2 runs" in text
    assert "Downloading artifacts" not in text
    assert proc.stdout.decode().startswith("model,calls,")


def test_download_path_for_remote_artifact_stores_reads_the_same_calls_quietly(known, store, capfd):
    """The path taken when artifacts are not a local folder (tracking server, S3): list + download per run."""
    from mltrack.cli import report_data

    run = store.run_named("b")
    capfd.readouterr()
    with report_data._no_mlflow_progress_bars():
        texts = report_data._read_remote(store.client, run.info.run_id)
    assert "Downloading artifacts" not in capfd.readouterr().err
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ  # restored
    local = report_data._read_local(report_data._local_dir(run.info.artifact_uri))
    assert texts == local and len(texts) >= 1
    rows = report_data._parse_lines(report_data.RunRef(run.info.run_id, run.info.artifact_uri, None, {}), texts)
    assert [(r.model, r.prompt_tokens, r.cached_prompt_tokens, r.error) for r in rows] == [
        ("gpt-4o-mini", 2000, 1024, None), ("gpt-4o-mini", 0, 0, "RateLimitError")]


def test_summary_line_names_the_window(known, capsys):
    assert main(["report", "--since", "2h"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.startswith("7 calls in 2 runs, since ") and head.endswith(" UTC (the last 2h), experiment Default")
    assert main(["report", "--since", "2000-01-01T00:00Z", "--all-experiments"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "8 calls in 3 runs, since 2000-01-01 00:00 UTC, experiments Default, other")


def test_sql_store_shortcut_finds_the_same_runs_as_search_runs(known, store):
    from mltrack.cli import report_data

    ended_long_ago = _old_call_run(store, days_ago=10)
    deleted = store.client.create_run("0", run_name="deleted")
    store.client.delete_run(deleted.info.run_id)
    ids = ["0", store.client.get_experiment_by_name("other").experiment_id]
    for cutoff in (None, (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).timestamp() * 1000):
        fast = report_data._sql_store_runs(store.client, ids, cutoff)
        slow = report_data._searched_runs(store.client, ids, cutoff)
        assert fast is not None and sorted(fast, key=lambda r: r.run_id) == sorted(slow, key=lambda r: r.run_id)
        names = {r.run_id: r for r in fast}
        assert deleted.info.run_id not in names
        assert (ended_long_ago in names) == (cutoff is None)
        assert names[store.run_named("a").info.run_id].tags["prompt_version"] == "v1"
        assert len(fast) == (4 if cutoff is None else 3)


def test_configured_experiment_is_the_default(known, capsys, monkeypatch):
    from mltrack import config

    monkeypatch.setenv("MLTRACK_EXPERIMENT", "other")
    config.reset()
    assert main(["report", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["experiments"] == ["other"] and doc["total"]["calls"] == 1


def test_a_replayed_batch_counts_each_call_once():
    """The writer names a calls file after its first step; a replay rewrites a batch that may end elsewhere, so two
    files can hold the same steps: one row per step, the later file's."""
    from mltrack.cli import report_data

    def line(step, tokens):
        return json.dumps({"step": step, "timestamp": "2026-12-01T10:00:00+00:00", "model": "gpt-4o-mini",
                           "provider": "openai", "prompt_tokens": tokens, "completion_tokens": 1,
                           "total_tokens": tokens + 1, "total_cost": "0.000001", "latency_ms": 1.0, "error": None})

    run = report_data.RunRef("r1", "/nowhere", None, {"team": "x"})
    first = "\n".join([line(0, 10), line(1, 11), line(2, 12)]) + "\n"
    replayed = "\n".join([line(2, 12), line(3, 13)]) + "\nnot json\n"
    rows = report_data._parse_lines(run, [first, replayed])
    assert [(r.step, r.prompt_tokens) for r in rows] == [(0, 10), (1, 11), (2, 12), (3, 13)]
    assert rows[0].time == dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc) and rows[0].tags == {"team": "x"}
