"""mltrack's public API against a real ``mlflow server`` on a real PostgreSQL (tests/server_fixtures.py): the real
openai SDK against mltrack's fake LLM server, instrumented, read back with MlflowClient over HTTP."""

from __future__ import annotations

import os
from decimal import Decimal

import openai
import pytest
from server_fixtures import exit_codes, fork_workers

import mltrack
from mltrack.testing import fake_reply, fake_usage

pytestmark = pytest.mark.server

MINI_INPUT, MINI_OUTPUT = Decimal("0.15"), Decimal("0.60")  # gpt-4o-mini, USD per 1M tokens


def expected_call(prompt: str) -> tuple[int, int, Decimal]:
    """(prompt tokens, completion tokens, cost) of one default fake reply to ``prompt``."""
    prompt_tokens, completion_tokens = fake_usage(prompt, fake_reply(prompt))
    return prompt_tokens, completion_tokens, (prompt_tokens * MINI_INPUT + completion_tokens * MINI_OUTPUT) / 10**6


@pytest.fixture
def instrumented():
    mltrack.instrument("openai")
    yield
    mltrack.uninstrument("openai")


def _ask(client: openai.OpenAI, text: str):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])


def assert_run_exact(server_store, run, prompts: list[str]) -> None:
    """Totals, one metric row per step, one artifact line per step, each prompt and response as sent."""
    expected = [expected_call(p) for p in prompts]
    n = len(prompts)
    m = run.data.metrics
    assert m["llm.calls"] == n
    assert m["llm.tokens.cumulative.prompt"] == sum(e[0] for e in expected)
    assert m["llm.tokens.cumulative.completion"] == sum(e[1] for e in expected)
    assert m["llm.tokens.cumulative.total"] == sum(e[0] + e[1] for e in expected)
    assert m["llm.cost.cumulative"] == float(sum(e[2] for e in expected))
    run_id = run.info.run_id
    assert server_store.history(run_id, "llm.calls") == [(i, float(i + 1)) for i in range(n)]
    assert server_store.history(run_id, "llm.tokens.prompt") == [(i, float(e[0])) for i, e in enumerate(expected)]
    lines = server_store.artifact_lines(run_id)  # downloaded through the server's artifact proxy
    assert [line["step"] for line in lines] == list(range(n))
    assert [line["prompt"][0]["content"] for line in lines] == prompts
    assert [line["response"] for line in lines] == [fake_reply(p) for p in prompts]
    assert run.info.status == "FINISHED"


def test_track_and_context_runs_land_exactly_on_the_server(server_store, fake_llm, instrumented):
    client = openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    prompts = [f"Say hi to server number {i}" for i in range(12)]

    @mltrack.track(name="server-function")
    def work() -> list:
        return [_ask(client, p) for p in prompts]

    responses = work()
    assert [(r.usage.prompt_tokens, r.usage.completion_tokens) for r in responses] == \
        [expected_call(p)[:2] for p in prompts]
    with mltrack.track_llm_context("server-context") as tracker:
        _ask(client, prompts[0])
        _ask(client, prompts[1])
        assert tracker.totals["calls"] == 2
    assert mltrack.flush(timeout=60) is True

    assert_run_exact(server_store, server_store.run_named("server-function"), prompts)
    assert_run_exact(server_store, server_store.run_named("server-context"), prompts[:2])
    run = server_store.run_named("server-function")
    assert run.data.tags["llm.model"] == "gpt-4o-mini" and run.data.tags["llm.provider"] == "openai"
    assert run.data.metrics["execution_time_seconds"] > 0

    # Each call is an LLM span with MLflow's token and cost attributes, in the run's trace on the server.
    traces = server_store.client.search_traces(locations=[server_store.experiment_id], run_id=run.info.run_id)
    assert len(traces) == 1
    llm_spans = [s for s in traces[0].data.spans if s.span_type == "LLM"]
    assert len(llm_spans) == len(prompts)
    assert sorted(s.attributes["mlflow.chat.tokenUsage"]["input_tokens"] for s in llm_spans) == \
        sorted(expected_call(p)[0] for p in prompts)
    assert sum(Decimal(str(s.attributes["mlflow.llm.cost"]["total_cost"])) for s in llm_spans) == \
        sum(expected_call(p)[2] for p in prompts)


WORKERS, CALLS = 4, 50


def _worker(index: int, base_url: str) -> int:
    """What one forked worker does: its own run of CALLS instrumented calls, then flush. Returns an exit code."""
    client = openai.OpenAI(base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0)

    @mltrack.track(name=f"worker-{index}")
    def handle() -> None:
        for i in range(CALLS):
            _ask(client, f"request {i} of worker {index}")

    handle()
    return 0 if mltrack.flush(timeout=120) else 3


def test_four_forked_workers_each_land_every_call_once(server_store, fake_llm, instrumented):
    """gunicorn-style: the parent imported and instrumented, then forked; each worker tracks its own requests."""
    codes = exit_codes(fork_workers(_worker, WORKERS, fake_llm.openai_base_url))
    assert codes == [0] * WORKERS, "a worker failed or did not flush (see its output above)"

    runs = server_store.runs()
    assert sorted(r.info.run_name for r in runs) == [f"worker-{i}" for i in range(WORKERS)]
    for index in range(WORKERS):
        prompts = [f"request {i} of worker {index}" for i in range(CALLS)]
        assert_run_exact(server_store, server_store.run_named(f"worker-{index}"), prompts)


def test_neither_the_app_nor_the_shared_writer_imports_mlflow_for_a_server(server_store, fake_llm, tmp_path):
    """A tracking server is written with mltrack's REST client: the writer process never imports MLflow for it."""
    import json
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import json, sys, openai, mltrack
        mltrack.instrument("openai")
        client = openai.OpenAI(base_url={fake_llm.openai_base_url!r}, api_key="sk-test-not-a-real-key", max_retries=0)
        with mltrack.track_llm_context("light-writer"):
            for i in range(9):
                client.chat.completions.create(model="gpt-4o-mini",
                                               messages=[{{"role": "user", "content": f"light {{i}}"}}])
        assert mltrack.flush(60) is True
        assert "mlflow" not in sys.modules, "mlflow was imported in the application process"
        from mltrack import writer
        print(json.dumps(writer.status()["server"]))
    """)
    env = {**os.environ, "MLTRACK_JOURNAL_DIR": str(tmp_path / "journal")}
    env.pop("MLTRACK_STRICT", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == "process"
    import time

    deadline = time.monotonic() + 15  # the writer notes what it wrote just after it acks it
    while True:
        status = json.loads((tmp_path / "journal" / "status.json").read_text())
        if status["stores"].get(server_store.uri, {}).get("written", 0) >= 11 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status["mlflow_imported"] is False
    assert status["stores"][server_store.uri]["client"] == "rest"
    assert status["stores"][server_store.uri]["written"] >= 9 + 2  # nine calls, the run's start and end
    assert_run_exact(server_store, server_store.run_named("light-writer"), [f"light {i}" for i in range(9)])
    traces = server_store.client.search_traces(locations=[server_store.experiment_id],
                                               run_id=server_store.run_named("light-writer").info.run_id)
    assert len(traces) == 1 and len([s for s in traces[0].data.spans if s.span_type == "LLM"]) == 9
