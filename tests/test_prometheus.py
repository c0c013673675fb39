"""Prometheus beside MLflow (CONTRACT §8): real SDK calls against the fake server, a real /metrics endpoint on a
free local port, parsed with prometheus_client's own parser; every figure checked exactly."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import anthropic
import openai
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import mltrack
from mltrack.testing import ScriptedReply

ROOT = Path(__file__).resolve().parents[1]


def price(provider: str, model: str) -> dict[str, Decimal]:
    """USD per 1M tokens, read straight from the shipped price file (not through mltrack's engine)."""
    entry = yaml.safe_load((ROOT / "pricing" / f"{provider}.yml").read_text())["models"][model]
    return {k: Decimal(str(v)) for k, v in entry.items() if k != "aliases"}


MINI = price("openai", "gpt-4o-mini")


def mini_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return ((prompt - cached) * MINI["input"] + cached * MINI["cached_input"] + completion * MINI["output"]) / 10**6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Scrape:
    """One scrape of a /metrics endpoint: ``value(name, **labels)`` sums the samples whose labels match."""

    def __init__(self, url: str | None = None, text: str | None = None) -> None:
        if url is not None:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        self.text = text or ""
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        assert found, f"no sample {name} {labels}"
        return sum(found)

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


@pytest.fixture
def prom(store):
    """mltrack's metrics in a fresh registry, served on a free local port; yields a function that scrapes it."""
    from mltrack.metrics import _reset_for_tests

    registry = CollectorRegistry()
    port = free_port()
    assert mltrack.enable_prometheus(port=port, registry=registry) is registry
    yield lambda: Scrape(f"http://127.0.0.1:{port}/metrics")
    _reset_for_tests()


@pytest.fixture
def instrumented():
    mltrack.instrument("openai", "anthropic")
    yield
    mltrack.uninstrument("openai", "anthropic")


@pytest.fixture
def anthropic_client(fake_llm):
    return anthropic.Anthropic(base_url=fake_llm.anthropic_base_url, api_key="sk-ant-test", max_retries=0)


def _ask(client, text="Say hi", model="gpt-4o-mini", **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)


def test_openai_chat_calls_are_counted_exactly(prom, fake_llm, openai_client, instrumented):
    usages = [(900, 30, 512), (120, 7, 0), (64, 64, 0)]
    for prompt, completion, cached in usages:
        fake_llm.queue(ScriptedReply(usage={"prompt_tokens": prompt, "completion_tokens": completion,
                                            "total_tokens": prompt + completion,
                                            "prompt_tokens_details": {"cached_tokens": cached}}))
    with mltrack.track_llm_context("prom-chat"):
        for _ in usages:
            _ask(openai_client)
    assert mltrack.flush(timeout=30)
    m = prom()
    who = {"provider": "openai", "model": "gpt-4o-mini"}
    assert m.value("mltrack_llm_calls_total", status="ok", **who) == 3
    assert m.value("mltrack_llm_tokens_total", type="prompt", **who) == 900 + 120 + 64
    assert m.value("mltrack_llm_tokens_total", type="completion", **who) == 30 + 7 + 64
    assert m.value("mltrack_llm_tokens_total", type="cached_prompt", **who) == 512
    expected_cost = 0.0
    for prompt, completion, cached in usages:  # the counter adds one float per call, in call order
        expected_cost += float(mini_cost(prompt, completion, cached))
    assert m.value("mltrack_llm_cost_usd_total", **who) == expected_cost
    assert abs(expected_cost - float(sum(mini_cost(*u) for u in usages))) < 1e-15
    genai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o-mini"}
    assert m.value("gen_ai_client_token_usage_count", gen_ai_token_type="input", **genai) == 3
    assert m.value("gen_ai_client_token_usage_sum", gen_ai_token_type="input", **genai) == 1084
    assert m.value("gen_ai_client_token_usage_sum", gen_ai_token_type="output", **genai) == 101
    # buckets 1, 4, 16, 64, 256, 1024 ...: outputs 30, 7, 64 -> two at or under 64, none at or under 4
    assert m.value("gen_ai_client_token_usage_bucket", gen_ai_token_type="output", le="64.0", **genai) == 3
    assert m.value("gen_ai_client_token_usage_bucket", gen_ai_token_type="output", le="16.0", **genai) == 1
    assert m.value("gen_ai_client_token_usage_bucket", gen_ai_token_type="input", le="256.0", **genai) == 2
    assert m.value("gen_ai_client_operation_duration_seconds_count", error_type="", **genai) == 3
    assert m.value("gen_ai_client_operation_duration_seconds_sum", **genai) > 0
    assert m.families["mltrack_llm_calls"].type == "counter"
    assert m.families["gen_ai_client_token_usage"].type == "histogram"
    assert "gen_ai_client_operation_time_to_first_chunk_seconds_count" not in {s.name for s in m.samples
                                                                               if s.value}


def test_bucket_boundaries_follow_the_genai_conventions(prom, fake_llm, openai_client, instrumented):
    with mltrack.track_llm_context("prom-buckets"):
        _ask(openai_client)
    assert mltrack.flush(timeout=30)
    m = prom()
    token_les = sorted(float(s.labels["le"]) for s in m.samples if s.name == "gen_ai_client_token_usage_bucket"
                       and s.labels["gen_ai_token_type"] == "input")
    assert token_les == [4.0 ** i for i in range(14)] + [float("inf")]
    duration_les = sorted(float(s.labels["le"]) for s in m.samples
                          if s.name == "gen_ai_client_operation_duration_seconds_bucket")
    assert duration_les == [round(0.01 * 2 ** i, 2) for i in range(14)] + [float("inf")]
    assert duration_les[-2] == 81.92


def test_streamed_anthropic_call_records_time_to_first_chunk(prom, fake_llm, anthropic_client, instrumented):
    fake_llm.queue(ScriptedReply(text="one two three", chunk_delay_s=0.05,
                                 usage={"input_tokens": 40, "cache_read_input_tokens": 1000,
                                        "cache_creation_input_tokens": 200, "output_tokens": 12}))
    with mltrack.track_llm_context("prom-stream"):
        with anthropic_client.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64,
                                              messages=[{"role": "user", "content": "Hello"}]) as stream:
            assert "".join(stream.text_stream) == "one two three"
    assert mltrack.flush(timeout=30)
    m = prom()
    genai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "anthropic",
             "gen_ai_request_model": "claude-3-5-haiku-latest"}  # the model the response names, priced by alias
    assert m.value("gen_ai_client_operation_time_to_first_chunk_seconds_count", **genai) == 1
    ttft = m.value("gen_ai_client_operation_time_to_first_chunk_seconds_sum", **genai)
    assert 0.05 <= ttft < m.value("gen_ai_client_operation_duration_seconds_sum", **genai)
    # the first chunk was held back 50 ms: not in the 0.04 bucket, in the 0.08 one unless the machine is slow
    assert m.value("gen_ai_client_operation_time_to_first_chunk_seconds_bucket", le="0.04", **genai) == 0
    who = {"provider": "anthropic", "model": "claude-3-5-haiku-latest"}
    assert m.value("mltrack_llm_tokens_total", type="prompt", **who) == 1240
    assert m.value("mltrack_llm_tokens_total", type="cached_prompt", **who) == 1000
    assert m.value("mltrack_llm_tokens_total", type="cache_write", **who) == 200
    assert m.value("mltrack_llm_tokens_total", type="completion", **who) == 12
    haiku = price("anthropic", "claude-3-5-haiku-20241022")
    cost = (40 * haiku["input"] + 1000 * haiku["cached_input"] + 200 * haiku["cache_write"]
            + 12 * haiku["output"]) / 10**6
    assert m.value("mltrack_llm_cost_usd_total", **who) == float(cost)


def test_failed_call_is_counted_with_its_error_class(prom, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(status=500), ScriptedReply(usage={"prompt_tokens": 5, "completion_tokens": 5,
                                                                   "total_tokens": 10}))
    with mltrack.track_llm_context("prom-error"):
        with pytest.raises(openai.InternalServerError):
            _ask(openai_client)
        _ask(openai_client)
    assert mltrack.flush(timeout=30)
    m = prom()
    who = {"provider": "openai", "model": "gpt-4o-mini"}
    assert m.value("mltrack_llm_calls_total", status="error", **who) == 1
    assert m.value("mltrack_llm_calls_total", status="ok", **who) == 1
    genai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o-mini"}
    assert m.value("gen_ai_client_operation_duration_seconds_count", error_type="InternalServerError", **genai) == 1
    assert m.value("gen_ai_client_operation_duration_seconds_count", error_type="", **genai) == 1
    assert m.value("gen_ai_client_token_usage_count", gen_ai_token_type="input", **genai) == 1  # the failure used none
    assert m.value("mltrack_llm_cost_usd_total", **who) == float(mini_cost(5, 5))


def test_operation_names_come_from_the_endpoint(prom, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(usage={"prompt_tokens": 8, "total_tokens": 8}))
    with mltrack.track_llm_context("prom-ops"):
        openai_client.embeddings.create(model="text-embedding-3-small", input="some text")
        openai_client.responses.create(model="gpt-4o-mini", input="hello")
        list(openai_client.responses.create(model="gpt-4o-mini", input="again", stream=True))
        openai_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="once upon")
        list(_ask(openai_client, stream=True))
        fake_llm.queue(ScriptedReply(status=400))
        with pytest.raises(openai.BadRequestError):
            openai_client.embeddings.create(model="text-embedding-3-small", input="bad")
    assert mltrack.flush(timeout=30)
    m = prom()
    ops = {}
    for s in m.samples:
        if s.name == "gen_ai_client_operation_duration_seconds_count" and s.value:
            key = (s.labels["gen_ai_operation_name"], s.labels["gen_ai_request_model"], s.labels["error_type"])
            ops[key] = ops.get(key, 0) + s.value
    assert ops == {("embeddings", "text-embedding-3-small", ""): 1,
                   ("embeddings", "text-embedding-3-small", "BadRequestError"): 1,
                   ("responses", "gpt-4o-mini", ""): 2,
                   ("text_completion", "gpt-3.5-turbo-instruct", ""): 1,
                   ("chat", "gpt-4o-mini", ""): 1}
    genai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o-mini"}
    assert m.value("gen_ai_client_operation_time_to_first_chunk_seconds_count", **genai) == 1
    assert m.value("gen_ai_client_operation_time_to_first_chunk_seconds_count",
                   gen_ai_operation_name="responses") == 1
    embedding = {"gen_ai_operation_name": "embeddings", "gen_ai_request_model": "text-embedding-3-small"}
    assert m.value("gen_ai_client_token_usage_count", gen_ai_token_type="input", **embedding) == 1
    assert m.value("gen_ai_client_token_usage_sum", gen_ai_token_type="input", **embedding) == 8
    assert m.value("gen_ai_client_token_usage_count", gen_ai_token_type="output", **embedding) == 0  # none
    embed = {"provider": "openai", "model": "text-embedding-3-small"}
    assert m.value("mltrack_llm_cost_usd_total", **embed) == float(8 * price("openai", "text-embedding-3-small")
                                                                   ["input"] / 10**6)


def test_every_entry_point_feeds_it(prom, fake_llm, openai_client):
    tracker_usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    fake_llm.queue(ScriptedReply(usage={"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}))
    with mltrack.track_llm_context("prom-entries") as tracker:
        tracker.log_prompt_response("What is 2+2?", "4", model="gpt-4o-mini", provider="openai",
                                    token_usage=tracker_usage)

        @tracker.track_llm_call(provider="openai")
        def ask() -> object:
            return _ask(openai_client)  # not instrumented: track_llm_call reads the SDK response

        ask()
    assert mltrack.flush(timeout=30)
    m = prom()
    who = {"provider": "openai", "model": "gpt-4o-mini"}
    assert m.value("mltrack_llm_calls_total", status="ok", **who) == 2
    assert m.value("mltrack_llm_tokens_total", type="prompt", **who) == 11 + 21
    assert m.value("mltrack_llm_cost_usd_total", **who) == float(mini_cost(11, 3)) + float(mini_cost(21, 4))


def test_model_label_is_bounded(store, fake_llm, openai_client, instrumented):
    from mltrack.metrics import _reset_for_tests

    mltrack.configure(prometheus_max_models=2)
    registry = mltrack.enable_prometheus(registry=CollectorRegistry())
    try:
        models = ["gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4o-mini"]
        with mltrack.track_llm_context("prom-models"):
            for model in models:
                _ask(openai_client, model=model)
        assert mltrack.flush(timeout=30)
        from prometheus_client import generate_latest

        m = Scrape(text=generate_latest(registry).decode())
        assert m.label_values("mltrack_llm_calls_total", "model") == {"gpt-4o-mini", "gpt-4o", "other"}
        assert m.value("mltrack_llm_calls_total", model="other") == 2
        assert m.value("mltrack_llm_calls_total", model="gpt-4o-mini") == 2
        assert m.label_values("gen_ai_client_token_usage_count", "gen_ai_request_model") == {"gpt-4o-mini", "gpt-4o",
                                                                                            "other"}
    finally:
        _reset_for_tests()


def test_no_prompt_text_user_or_run_id_in_labels(store, prom, fake_llm, openai_client, instrumented):
    secret = "my-secret-prompt-words"
    with mltrack.track_llm_context("prom-privacy", tags={"user": "alice@example.com"}) as tracker:
        _ask(openai_client, text=secret, user="alice@example.com")
        tracker.log_prompt_response(secret, "reply-text-xyz", model="gpt-4o-mini", metadata={"user": "bob-id-42"})
    assert mltrack.flush(timeout=30)
    m = prom()
    text = m.text
    run_id = store.run_named("prom-privacy").info.run_id
    assert run_id and tracker.run_id == run_id
    for word in (secret, "alice@example.com", "bob-id-42", "reply-text-xyz", "prom-privacy", run_id):
        assert word not in text
    label_names = {name for s in m.samples for name in s.labels}
    assert label_names <= {"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model",
                           "gen_ai_token_type", "error_type", "provider", "model", "status", "type", "le"}
    assert m.value("mltrack_llm_calls_total", status="ok") == 2


def test_writer_gauges_are_read_at_scrape_time(prom, fake_llm, openai_client, instrumented):
    with mltrack.track_llm_context("prom-writer"):
        _ask(openai_client)
    assert mltrack.flush(timeout=30)
    m = prom()
    status = mltrack.writer.status()
    assert m.value("mltrack_writer_pending") == status["pending"] == 0
    assert m.value("mltrack_writer_dropped_total") == status["dropped"] == 0
    assert m.families["mltrack_writer_pending"].type == "gauge"
    assert m.families["mltrack_writer_dropped"].type == "counter"


def _wait_for_call(scrape, started: float, limit: float = 10.0) -> tuple[Scrape, float]:
    """Scrape until a call is counted; returns the scrape and the seconds since ``started``."""
    while True:
        m = scrape()
        seen = any(s.name == "mltrack_llm_calls_total" and s.value for s in m.samples)
        if seen or time.monotonic() - started > limit:
            return m, time.monotonic() - started
        time.sleep(0.02)


def test_values_appear_without_flush_while_the_run_is_open(prom, fake_llm, openai_client, instrumented):
    """Nobody flushes or reads the record: the writer thread prices the call and Prometheus counts it (how fast:
    benchmarks/bench_prometheus.py)."""
    with mltrack.track_llm_context("prom-live"):
        _ask(openai_client)
        m, _ = _wait_for_call(prom, time.monotonic())
        assert m.value("mltrack_llm_calls_total", status="ok") == 1


def test_values_appear_while_mlflow_is_unreachable(_template_store, tmp_path, monkeypatch, fake_llm, openai_client,
                                                   instrumented):
    """The store cannot be opened (its folder is a plain file): calls still reach Prometheus, priced off the
    caller's thread; MLflow gets them once the store is back."""
    import shutil

    from conftest import Store

    from mltrack import config
    from mltrack.metrics import _reset_for_tests

    folder = tmp_path / "store"
    folder.write_text("not a folder")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLTRACK_STRICT")  # the outage warning is expected
    config.reset()
    registry = CollectorRegistry()
    port = free_port()
    mltrack.enable_prometheus(port=port, registry=registry)
    try:
        with pytest.warns(Warning):
            with mltrack.track_llm_context("prom-dead-store"):
                _ask(openai_client)
                m, _ = _wait_for_call(lambda: Scrape(f"http://127.0.0.1:{port}/metrics"), time.monotonic(), 30)
            assert m.value("mltrack_llm_calls_total", status="ok") == 1
            assert mltrack.flush(timeout=0.5) is False  # MLflow has not got it
            m = Scrape(f"http://127.0.0.1:{port}/metrics")
            assert m.value("mltrack_writer_pending") == mltrack.writer.status()["pending"] > 0
    finally:
        folder.unlink()
        folder.mkdir()
        shutil.copyfile(_template_store, folder / "mlflow.db")
        assert mltrack.flush(timeout=60) is True
        _reset_for_tests()
        config.reset()
    assert Store(uri).run_named("prom-dead-store").data.metrics["llm.calls"] == 1


MULTIPROCESS_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import openai
    import mltrack
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    base_url = sys.argv[1]
    mltrack.enable_prometheus()  # before the fork, as a preloading server (gunicorn --preload) would
    mltrack.instrument("openai")
    pids = []
    for worker in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
                for call in range(worker + 1):  # worker w makes w + 1 calls
                    text = f"worker {worker} call {call}"
                    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
                code = 0 if mltrack.flush(timeout=60) else 2
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    print(json.dumps({"codes": codes, "pids": pids, "text": generate_latest(registry).decode()}))
""")


def test_multiprocess_mode_aggregates_four_forked_workers(store, fake_llm, tmp_path):
    import json
    import math
    import os

    folder = tmp_path / "prom-multiproc"
    folder.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", MULTIPROCESS_SCRIPT, fake_llm.openai_base_url], env=env,
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["codes"] == [0, 0, 0, 0]
    # every worker wrote its own file (the parent too: its unlabelled writer counter exists from the start)
    assert {p.name.split("_")[-1] for p in folder.glob("counter_*.db")} >= {f"{pid}.db" for pid in out["pids"]}
    m = Scrape(text=out["text"])
    who = {"provider": "openai", "model": "gpt-4o-mini"}
    calls = 1 + 2 + 3 + 4
    prompt, completion = 4 + 3, 7  # "worker W call C" (4 words + 3), "Fake reply to: worker W call C" (7 words)
    assert m.value("mltrack_llm_calls_total", status="ok", **who) == calls
    assert m.value("mltrack_llm_tokens_total", type="prompt", **who) == calls * prompt
    assert m.value("mltrack_llm_tokens_total", type="completion", **who) == calls * completion
    genai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o-mini"}
    assert m.value("gen_ai_client_token_usage_count", gen_ai_token_type="input", **genai) == calls
    assert m.value("gen_ai_client_operation_duration_seconds_count", error_type="", **genai) == calls
    # each process adds its own floats; the collector sums the processes' totals (order: by file)
    expected = float(calls * mini_cost(prompt, completion))
    assert math.isclose(m.value("mltrack_llm_cost_usd_total", **who), expected, rel_tol=1e-12)
    assert "mltrack_writer_pending" in m.families and m.families["mltrack_writer_pending"].type == "gauge"


def test_config_keys_enable_it_at_the_first_tracked_call(store, fake_llm, openai_client, instrumented):
    from prometheus_client import REGISTRY

    from mltrack.metrics import _reset_for_tests

    port = free_port()
    mltrack.configure(prometheus_enabled=True, prometheus_port=port, prometheus_addr="127.0.0.1")
    try:
        with pytest.raises(OSError):  # nothing served before a call is tracked
            Scrape(f"http://127.0.0.1:{port}/metrics")
        with mltrack.track_llm_context("prom-config"):
            _ask(openai_client)
        assert mltrack.flush(timeout=30)
        m = Scrape(f"http://127.0.0.1:{port}/metrics")
        assert m.value("mltrack_llm_calls_total", provider="openai", model="gpt-4o-mini", status="ok") == 1
        assert REGISTRY.get_sample_value("mltrack_llm_calls_total", {"provider": "openai", "model": "gpt-4o-mini",
                                                                     "status": "ok"}) == 1
    finally:
        _reset_for_tests()
    assert REGISTRY.get_sample_value("mltrack_llm_calls_total", {"provider": "openai", "model": "gpt-4o-mini",
                                                                 "status": "ok"}) is None


def test_bad_config_values_are_named():
    from mltrack import ConfigError, config

    for key, value in (("prometheus_port", 70000), ("prometheus_port", "x"), ("prometheus_max_models", 0),
                       ("prometheus_enabled", "maybe")):
        with pytest.raises(ConfigError, match=key):
            mltrack.configure(**{key: value})
    config.reset()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="port"):
        mltrack.enable_prometheus(port=0)
    with pytest.raises(ValueError, match="port"):
        mltrack.enable_prometheus(port="9464")
    with pytest.raises(ValueError, match="addr"):
        mltrack.enable_prometheus(addr="")
    with pytest.raises(TypeError, match="registry"):
        mltrack.enable_prometheus(registry=object())


def test_a_busy_port_is_an_error_naming_it(store):
    from mltrack.metrics import _reset_for_tests

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
                mltrack.enable_prometheus(port=port, registry=CollectorRegistry())
        finally:
            _reset_for_tests()


def test_missing_prometheus_client_is_an_install_hint(store, monkeypatch):
    from mltrack.metrics import _reset_for_tests

    from mltrack import _safety

    _safety.reset_warnings_for_tests()
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if the package were not installed
    with pytest.raises(ImportError, match=r'pip install "mltrack\[prometheus\]"'):
        mltrack.enable_prometheus()
    mltrack.configure(prometheus_enabled=True)
    try:
        with pytest.warns(Warning, match=r"mltrack\[prometheus\]") as caught:
            with mltrack.track_llm_context("prom-missing") as tracker:
                tracker.log_prompt_response("p", "r", model="gpt-4o-mini", token_usage={"prompt_tokens": 3,
                                                                                        "completion_tokens": 2})
                tracker.log_prompt_response("p", "r", model="gpt-4o-mini", token_usage={"prompt_tokens": 3,
                                                                                        "completion_tokens": 2})
            assert mltrack.flush(timeout=30)
        assert len([w for w in caught if "mltrack[prometheus]" in str(w.message)]) == 1  # once, not per call
        assert store.run_named("prom-missing").data.metrics["llm.calls"] == 2  # tracking went on
    finally:
        _reset_for_tests()


def test_grafana_dashboard_and_doc_queries_use_only_exported_names(prom, fake_llm, openai_client, instrumented):
    import json
    import re

    with mltrack.track_llm_context("prom-dashboard"):
        list(_ask(openai_client, stream=True))
        fake_llm.queue(ScriptedReply(status=429))
        with pytest.raises(openai.RateLimitError):
            _ask(openai_client)
    assert mltrack.flush(timeout=30)
    exported = {s.name for s in prom().samples}
    dashboard = json.loads((ROOT / "docs" / "grafana" / "mltrack-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10 and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    doc = (ROOT / "docs" / "prometheus.md").read_text()
    used = set(re.findall(r"\b(?:mltrack|gen_ai)_[a-z_]*[a-z]\b", " ".join(exprs) + doc))
    used -= {"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type"}
    families = {"gen_ai_client_token_usage", "gen_ai_client_operation_duration_seconds",
                "gen_ai_client_operation_time_to_first_chunk_seconds"}
    assert used - families <= exported, used - families - exported


def test_a_failing_observer_costs_nothing_but_one_warning(prom, fake_llm, openai_client, instrumented, monkeypatch):
    from mltrack import _safety
    from mltrack.engine import observers

    def broken(call, operation):
        raise RuntimeError("observer bug")

    _safety.reset_warnings_for_tests()
    monkeypatch.delenv("MLTRACK_STRICT")
    observers.subscribe(broken)
    try:
        with pytest.warns(Warning, match="observer bug") as caught:
            with mltrack.track_llm_context("prom-broken-observer") as tracker:
                _ask(openai_client)
                _ask(openai_client)
                assert tracker.totals["calls"] == 2
            assert mltrack.flush(timeout=30)
    finally:
        observers.unsubscribe(broken)
    assert len([w for w in caught if "observer bug" in str(w.message)]) == 1
    assert prom().value("mltrack_llm_calls_total", status="ok") == 2  # the other observer still saw both calls
    assert observers.active  # Prometheus is still subscribed
