"""Judges: a second fake server plays the judge model; scores, cost, errors, feedback assessments, sampling,
the spend cap, the user's llm.* metrics untouched, the user's call not slowed, judge() and `mltrack judge`."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

import mltrack
from mltrack.testing import FakeLLMServer, ScriptedReply


@pytest.fixture(scope="module")
def judge_server():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def judge_llm(judge_server, fake_llm, monkeypatch):
    from mltrack.judges import _runner

    judge_server.clear()
    fake_llm.clear()
    monkeypatch.setattr(_runner.SPEND, "total", Decimal(0))
    monkeypatch.setattr(_runner, "RETRY_PAUSES", (0.01, 0.01, 0.01))
    return judge_server


def _judges(judge_llm, **block):
    mltrack.configure(judges={"enabled": True, "model": "gpt-4o-mini", "provider": "openai",
                              "base_url": judge_llm.openai_base_url, **block})


def _answer(score, rationale, prompt_tokens, completion_tokens, **extra):
    return ScriptedReply(text=json.dumps({"score": score, "rationale": rationale}),
                         usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                "total_tokens": prompt_tokens + completion_tokens}, **extra)


def _mini(prompt_tokens, completion_tokens):  # gpt-4o-mini: $0.15 / $0.60 per 1M tokens
    return (Decimal(prompt_tokens) * Decimal("0.15") + Decimal(completion_tokens) * Decimal("0.60")) / 10**6


def _latest(store, run_id):
    return store.run(run_id).data.metrics


def _turn(openai_client, docs=("Paris is the capital of France.",)):
    @mltrack.track(name="turn")
    def turn(question):
        if docs:
            with mltrack.track_retrieval(question) as r:
                r.set_documents(list(docs))
        return openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": question}]).choices[0].message.content
    return turn


@pytest.fixture
def instrumented():
    mltrack.instrument("openai")
    yield
    mltrack.uninstrument("openai")


def test_scores_cost_and_feedback_land_and_the_users_metrics_do_not_move(store, fake_llm, judge_llm,
                                                                        openai_client, instrumented):
    _judges(judge_llm, metrics=["answer_relevancy", "faithfulness", "retrieval_relevancy"])
    fake_llm.queue(ScriptedReply(text="Paris.", usage={"prompt_tokens": 20, "completion_tokens": 2,
                                                       "total_tokens": 22}))
    judge_llm.queue(_answer(4, "Answers it.", 1000, 50), _answer(5, "Supported.", 800, 40),
                    _answer(3, "Partly relevant.", 700, 30))
    assert _turn(openai_client)("What is the capital of France?") == "Paris."
    assert mltrack.flush(timeout=60)

    (run,) = store.runs()  # the judge's own calls opened no run
    metrics = _latest(store, run.info.run_id)
    assert metrics["judge.answer_relevancy"] == 4.0 and metrics["judge.faithfulness"] == 5.0
    assert metrics["judge.retrieval_relevancy"] == 3.0 and metrics["judge.errors"] == 0.0
    assert metrics["judge.cost"] == float(_mini(1000, 50) + _mini(800, 40) + _mini(700, 30))
    # the user's llm.* metrics count the user's one call only
    assert store.history(run.info.run_id, "llm.calls") == [(0, 1.0)]
    assert store.history(run.info.run_id, "llm.tokens.cumulative.total") == [(0, 22.0)]
    assert metrics["llm.cost.cumulative"] == float(_mini(20, 2))
    assert run.data.tags["mltrack.judged.faithfulness"] == "gpt-4o-mini"
    # what the judge saw: the last user message, the answer, the retrieved context
    first = judge_llm.requests[0].json["messages"][0]["content"]
    assert "What is the capital of France?" in first and "Paris." in first and "Be brief." not in first
    assert "Paris is the capital of France." in judge_llm.requests[1].json["messages"][0]["content"]

    (trace,) = store.client.search_traces(locations=["0"], run_id=run.info.run_id)
    trace = store.client.get_trace(trace.info.trace_id)
    got = sorted((a.name, a.value, a.rationale, a.source.source_type, a.source.source_id)
                 for a in trace.info.assessments)
    assert got == [("answer_relevancy", 4.0, "Answers it.", "LLM_JUDGE", "gpt-4o-mini"),
                   ("faithfulness", 5.0, "Supported.", "LLM_JUDGE", "gpt-4o-mini"),
                   ("retrieval_relevancy", 3.0, "Partly relevant.", "LLM_JUDGE", "gpt-4o-mini")]
    found = store.client.search_traces(locations=["0"], filter_string="feedback.retrieval_relevancy < 4")
    assert [t.info.trace_id for t in found] == [trace.info.trace_id]
    mine = mltrack.search_traces("feedback.faithfulness = 5 AND feedback.answer_relevancy >= 4", experiment_ids=["0"])
    assert [t.info.trace_id for t in mine] == [trace.info.trace_id]


def test_a_judge_that_needs_context_is_skipped_without_retrievals(store, fake_llm, judge_llm, openai_client,
                                                                  instrumented):
    _judges(judge_llm, metrics=["faithfulness", "coherence"])
    judge_llm.queue(_answer(5, "Clear.", 100, 10))
    _turn(openai_client, docs=())("Hello?")
    assert mltrack.flush(timeout=60)
    (run,) = store.runs()
    metrics = _latest(store, run.info.run_id)
    assert len(judge_llm.requests) == 1 and metrics["judge.coherence"] == 5.0
    assert "judge.faithfulness" not in metrics and metrics["judge.cost"] == float(_mini(100, 10))


def test_garbage_and_server_errors_are_counted_warned_once_never_raised(store, fake_llm, judge_llm, openai_client,
                                                                        instrumented, recwarn):
    _judges(judge_llm, metrics=["answer_relevancy", "tone"])
    judge_llm.queue(ScriptedReply(text="I think it is fine", usage={"prompt_tokens": 10, "completion_tokens": 5,
                                                                    "total_tokens": 15}),
                    ScriptedReply(text='{"score": 9}', usage={"prompt_tokens": 10, "completion_tokens": 5,
                                                              "total_tokens": 15}),
                    *[ScriptedReply(status=500)] * 4)
    _turn(openai_client)("Why?")
    assert mltrack.flush(timeout=60)
    (run,) = store.runs()
    metrics = _latest(store, run.info.run_id)
    assert metrics["judge.errors"] == 2.0  # unparseable twice (asked again once), then 500 after 3 retries
    assert "judge.answer_relevancy" not in metrics and "judge.tone" not in metrics
    assert metrics["judge.cost"] == float(2 * _mini(10, 5))
    assert len(judge_llm.requests) == 6
    messages = [str(w.message) for w in recwarn if "a judge failed" in str(w.message)]
    assert len(messages) == 2  # one per cause: Unparseable, InternalServerError
    assert run.info.status == "FINISHED"


def test_no_rationale_is_written_when_prompt_or_response_logging_is_off(store, fake_llm, judge_llm,
                                                                      openai_client, instrumented):
    mltrack.configure(llm_log_responses=False)
    _judges(judge_llm, metrics=["coherence"])
    judge_llm.queue(_answer(2, "It says 'Fake reply to: private question'", 100, 10))
    _turn(openai_client, docs=())("private question")
    assert mltrack.flush(timeout=60)
    (run,) = store.runs()
    assert _latest(store, run.info.run_id)["judge.coherence"] == 2.0
    trace = store.client.get_trace(store.client.search_traces(locations=["0"], run_id=run.info.run_id)[0]
                                   .info.trace_id)
    assert [(a.name, a.value, a.rationale) for a in trace.info.assessments] == [("coherence", 2.0, None)]
    assert "Fake reply" not in json.dumps(trace.to_dict())


def test_sample_rate_zero_judges_nothing(store, fake_llm, judge_llm, openai_client, instrumented):
    _judges(judge_llm, sample_rate=0.0)
    for q in ("a", "b", "c"):
        _turn(openai_client)(q)
    assert mltrack.flush(timeout=60)
    assert judge_llm.requests == []
    assert all(not any(k.startswith("judge.") for k in r.data.metrics) for r in store.runs())


def test_the_spend_cap_stops_judging_with_one_warning(store, fake_llm, judge_llm, openai_client, instrumented,
                                                      recwarn):
    cap = _mini(1000, 50)
    _judges(judge_llm, metrics=["answer_relevancy", "tone"], max_cost_usd=float(cap), max_concurrency=1)
    judge_llm.queue(_answer(4, "ok", 1000, 50), _answer(4, "ok", 1000, 50))
    _turn(openai_client)("first")
    _turn(openai_client)("second")
    assert mltrack.flush(timeout=60)
    first, second = store.runs()
    assert len(judge_llm.requests) == 1  # the first judge call reached the cap: nothing after it
    assert _latest(store, first.info.run_id)["judge.answer_relevancy"] == 4.0
    assert _latest(store, first.info.run_id)["judge.cost"] == float(cap)
    assert "judge.tone" not in _latest(store, first.info.run_id)
    assert not any(k.startswith("judge.") for k in _latest(store, second.info.run_id))
    assert [str(w.message) for w in recwarn if "judges stopped" in str(w.message)] == [
        "mltrack: judges stopped: their spend in this process ($0.000180) reached judges.max_cost_usd ($0.000180); "
        "later runs are not judged."]


def test_the_users_call_is_not_slowed_while_the_judge_takes_2_s(store, fake_llm, judge_llm, openai_client,
                                                                instrumented):
    _judges(judge_llm, metrics=["coherence"])
    judge_llm.queue(_answer(5, "slow but sure", 100, 10, delay_s=2.0))
    started = time.perf_counter()
    _turn(openai_client)("quick?")
    returned = time.perf_counter() - started
    assert returned < 1.0
    assert mltrack.flush(timeout=60)  # flush waits for the judgment in progress
    assert time.perf_counter() - started >= 2.0
    (run,) = store.runs()
    assert _latest(store, run.info.run_id)["judge.coherence"] == 5.0


def test_judge_on_demand_custom_judges_and_the_cli_skips_what_is_judged(store, fake_llm, judge_llm, openai_client,
                                                                        instrumented, capsys):
    _turn(openai_client)("What is 2+2?")  # judges off: nothing judged in the background
    assert mltrack.flush(timeout=60)
    (run,) = store.runs()
    run_id = run.info.run_id

    def shortness(question, answer, context):
        return (5 if len(answer) < 100 else 1), f"{len(answer)} characters"

    _judges(judge_llm, metrics=["politeness"], custom={"politeness": "Is this polite? {answer}"})
    judge_llm.queue(_answer(2, "curt", 300, 20))
    assert mltrack.judge(run_id, metrics=["politeness", shortness]) == {"politeness": 2.0, "shortness": 5.0}
    assert judge_llm.requests[0].json["messages"][0]["content"].startswith(
        "Is this polite? Fake reply to: What is 2+2?")
    metrics = _latest(store, run_id)
    assert metrics["judge.politeness"] == 2.0 and metrics["judge.shortness"] == 5.0
    assert metrics["judge.cost"] == float(_mini(300, 20))
    trace = store.client.get_trace(store.client.search_traces(locations=["0"], run_id=run_id)[0].info.trace_id)
    assert sorted((a.name, a.value) for a in trace.info.assessments) == [("politeness", 2.0), ("shortness", 5.0)]

    from mltrack.cli.main import main

    assert main(["judge", "--since", "1d"]) == 0  # politeness was judged with this model: skipped
    assert len(judge_llm.requests) == 1
    assert "judged 0 run(s), skipped 1" in capsys.readouterr().out
    judge_llm.queue(_answer(4, "fine", 200, 10))
    assert main(["judge", "--since", "1d", "--metrics", "politeness,tone"]) == 0  # tone is new: judged
    assert len(judge_llm.requests) == 2 and "Fake reply to: What is 2+2?" in judge_llm.requests[1].json[
        "messages"][0]["content"]
    assert _latest(store, run_id)["judge.tone"] == 4.0 and _latest(store, run_id)["judge.cost"] == float(
        _mini(200, 10))
    assert "judged 1 run(s), skipped 0" in capsys.readouterr().out and store.run(run_id).data.tags[
        "mltrack.judged.tone"] == "gpt-4o-mini"


def test_rate_limits_are_retried_and_a_slow_judge_times_out(store, fake_llm, judge_llm, openai_client,
                                                            instrumented, monkeypatch):
    from mltrack.judges import _runner

    monkeypatch.setattr(_runner, "JUDGMENT_DEADLINE_S", 0.8)
    _judges(judge_llm, metrics=["answer_relevancy", "coherence"], max_concurrency=1)
    judge_llm.queue(ScriptedReply(status=429), _answer(3, "after a retry", 100, 10),
                    _answer(5, "too late", 100, 10, delay_s=2.0), _answer(5, "too late", 100, 10, delay_s=2.0))
    _turn(openai_client)("Retry?")
    assert mltrack.flush(timeout=60)
    (run,) = store.runs()
    metrics = _latest(store, run.info.run_id)
    assert metrics["judge.answer_relevancy"] == 3.0 and "judge.coherence" not in metrics
    assert metrics["judge.errors"] == 1.0  # coherence: timed out (retried within its 0.8 s deadline only)
    assert metrics["judge.cost"] == float(_mini(100, 10))  # the 429 and the timed-out calls cost nothing


def test_an_anthropic_judge(store, fake_llm, judge_llm, openai_client, instrumented):
    mltrack.configure(judges={"enabled": True, "model": "claude-3-5-haiku-20241022", "provider": "anthropic",
                              "base_url": judge_llm.anthropic_base_url, "metrics": ["tone"]})
    judge_llm.queue(ScriptedReply(text='```json\n{"score": 4, "rationale": "polite"}\n```',
                                  usage={"input_tokens": 500, "output_tokens": 20}))
    _turn(openai_client)("Hi?")
    assert mltrack.flush(timeout=60)
    (run,) = store.runs()
    metrics = _latest(store, run.info.run_id)
    assert judge_llm.requests[0].path == "/v1/messages"
    assert metrics["judge.tone"] == 4.0  # a code fence around the JSON is tolerated
    assert metrics["judge.cost"] == float((Decimal(500) * Decimal("0.80") + Decimal(20) * 4) / 10**6)
    trace = store.client.get_trace(store.client.search_traces(locations=["0"], run_id=run.info.run_id)[0]
                                   .info.trace_id)
    assert [(a.name, a.source.source_id) for a in trace.info.assessments] == [("tone", "claude-3-5-haiku-20241022")]


@pytest.mark.parametrize("block, key", [
    ({"max_concurrency": 0}, "judges.max_concurrency"),
    ({"provider": "cohere"}, "judges.provider"),
    ({"sample_rate": 1.5}, "judges.sample_rate"),
    ({"metrics": ["answer_relevancy", "nope"]}, "judges.metrics"),
    ({"custom": {"x": 3}}, "judges.custom"),
    ({"custom": {"has space": "{answer}"}}, "judges.custom"),
    ({"enabled": "yes"}, "judges.enabled"),
])
def test_a_bad_judges_block_is_a_config_error_naming_the_key(block, key):
    with pytest.raises(mltrack.ConfigError, match=key.replace(".", r"\.")):
        mltrack.configure(judges=block)


def test_at_exit_judgments_not_started_are_dropped_with_a_count_and_exit_is_not_held(store, judge_llm):
    import subprocess
    import sys
    import textwrap

    judge_llm.queue(_answer(5, "late", 100, 10, delay_s=8.0))
    code = textwrap.dedent(f"""
        import time, mltrack
        mltrack.configure(judges={{"enabled": True, "base_url": "{judge_llm.openai_base_url}",
                                   "metrics": ["coherence"], "max_concurrency": 1}})
        for i in range(3):
            with mltrack.track_llm_context(f"run-{{i}}", model="gpt-4o-mini") as tracker:
                tracker.log_prompt_response("p", "r", token_usage={{"prompt_tokens": 3, "completion_tokens": 2}})
        time.sleep(0.5)  # the first judgment is in progress (its judge answers after 8 s)
        print(time.time(), flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    exit_s = time.time() - float(result.stdout.split()[-1])
    assert result.returncode == 0, result.stderr
    assert "2 run(s) not judged at exit" in result.stderr
    assert exit_s < 6.0  # the judge's 2 s at most, then the writer's usual exit
    runs = store.runs()
    assert sorted(r.info.run_name for r in runs) == ["run-0", "run-1", "run-2"]
    assert all(r.info.status == "FINISHED" and not any(k.startswith("judge.") for k in r.data.metrics) for r in runs)


@pytest.mark.server
def test_on_a_tracking_server_scores_and_retrieval_spans_go_through_the_rest_client(server_store, fake_llm, judge_llm,
                                                                                    openai_client, instrumented):
    """The same turn against a real mlflow server: the trace (root, RETRIEVER, LLM spans) goes as OTLP and the
    judges' feedback through MLflow's v3 assessments API, read back with MLflow's own client."""
    _judges(judge_llm, metrics=["faithfulness", "retrieval_relevancy"])
    fake_llm.queue(ScriptedReply(text="Paris.", usage={"prompt_tokens": 20, "completion_tokens": 2,
                                                       "total_tokens": 22}))
    judge_llm.queue(_answer(5, "Supported.", 800, 40), _answer(3, "Partly relevant.", 700, 30))
    assert _turn(openai_client)("What is the capital of France?") == "Paris."
    assert mltrack.flush(timeout=60)

    run = server_store.run_named("turn")
    metrics = run.data.metrics
    assert metrics["judge.faithfulness"] == 5.0 and metrics["judge.retrieval_relevancy"] == 3.0
    assert metrics["judge.cost"] == float(_mini(800, 40) + _mini(700, 30))
    (trace,) = server_store.client.search_traces(locations=[server_store.experiment_id], run_id=run.info.run_id)
    trace = server_store.client.get_trace(trace.info.trace_id)
    assert sorted(s.span_type for s in trace.data.spans) == ["CHAIN", "LLM", "RETRIEVER"]
    got = sorted((a.name, a.value, a.rationale, a.source.source_type, a.source.source_id)
                 for a in trace.info.assessments)
    assert got == [("faithfulness", 5.0, "Supported.", "LLM_JUDGE", "gpt-4o-mini"),
                   ("retrieval_relevancy", 3.0, "Partly relevant.", "LLM_JUDGE", "gpt-4o-mini")]
