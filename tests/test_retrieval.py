"""track_retrieval: a RETRIEVER span in the run's one trace (root, retrieval, LLM call), rag.* metrics at their
steps, no document text when llm_log_prompts is off, child spans inside the user's own trace."""

from __future__ import annotations

import asyncio
import json

import pytest

import mltrack
from mltrack.testing import ScriptedReply


def _traces(store, run_id):
    return store.client.search_traces(locations=["0"], run_id=run_id)


def test_a_track_turn_is_one_trace_root_retrieval_llm_with_rag_metrics(store, fake_llm, openai_client):
    mltrack.instrument("openai")
    try:
        fake_llm.queue(ScriptedReply(text="Paris.", usage={"prompt_tokens": 30, "completion_tokens": 2,
                                                           "total_tokens": 32}))

        @mltrack.track(name="turn")
        def turn(question):
            with mltrack.track_retrieval(question) as r:
                r.set_documents(["Paris is the capital of France.", {"page_content": "France is in Europe."},
                                 {"content": "The Seine flows through Paris."}, 42])
            with mltrack.track_retrieval("second query", name="rerank") as r:
                r.set_documents(["only one"])
            return openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question}]).choices[0].message.content

        assert turn("What is the capital of France?") == "Paris."
    finally:
        mltrack.uninstrument("openai")
    assert mltrack.flush(timeout=60)
    run = store.run_named("turn")
    run_id = run.info.run_id
    assert store.history(run_id, "rag.num_docs_retrieved") == [(0, 4.0), (1, 1.0)]
    times = store.history(run_id, "rag.retrieval_time_ms")
    assert [step for step, _ in times] == [0, 1] and all(0 <= ms < 1000 for _, ms in times)
    assert store.history(run_id, "llm.tokens.total") == [(0, 32.0)]  # the LLM call's own step is untouched
    (trace,) = _traces(store, run_id)
    spans = trace.data.spans
    root = next(s for s in spans if s.parent_id is None)
    children = sorted((s for s in spans if s.parent_id == root.span_id), key=lambda s: s.start_time_ns)
    assert root.name == "turn" and len(spans) == 4
    assert [(s.span_type, s.name) for s in children] == [("RETRIEVER", "retrieval"), ("RETRIEVER", "rerank"),
                                                         ("LLM", "gpt-4o-mini")]
    first = children[0]
    assert first.inputs == {"query": "What is the capital of France?"}
    assert [d["page_content"] for d in first.outputs] == ["Paris is the capital of France.", "France is in Europe.",
                                                          "The Seine flows through Paris.", "42"]
    assert first.attributes["mltrack.rag.num_docs_retrieved"] == 4
    assert (first.end_time_ns - first.start_time_ns) / 1e6 == pytest.approx(times[0][1], abs=0.01)


def test_documents_are_absent_when_prompt_logging_is_off(store):
    mltrack.configure(llm_log_prompts=False, llm_log_responses=False)
    with mltrack.track_llm_context("private-turn", model="gpt-4o-mini") as tracker:
        with mltrack.track_retrieval("secret query") as r:
            r.set_documents(["secret document one", "secret document two"])
        tracker.log_prompt_response("secret prompt", "secret answer", token_usage={"prompt_tokens": 3,
                                                                                   "completion_tokens": 2})
        run_id = tracker.run_id
    assert mltrack.flush(timeout=60)
    assert store.history(run_id, "rag.num_docs_retrieved") == [(0, 2.0)]
    (trace,) = _traces(store, run_id)
    retriever = next(s for s in trace.data.spans if s.span_type == "RETRIEVER")
    assert retriever.inputs is None and retriever.outputs == {"num_documents": 2}
    assert "secret" not in json.dumps(trace.to_dict())


def test_async_with_and_a_failed_retrieval(store):
    async def main():
        async with mltrack.track_llm_context("async-turn", model="gpt-4o-mini") as tracker:
            async with mltrack.track_retrieval("q") as r:
                r.set_documents([{"content": "a"}, {"content": "b"}, {"content": "c"}])
            with pytest.raises(KeyError):
                with mltrack.track_retrieval("boom"):
                    raise KeyError("index gone")
            return tracker.run_id

    run_id = asyncio.run(main())
    assert mltrack.flush(timeout=60)
    assert store.history(run_id, "rag.num_docs_retrieved") == [(0, 3.0), (1, 0.0)]
    (trace,) = _traces(store, run_id)  # retrievals alone (no LLM call) still make the run's trace
    spans = sorted((s for s in trace.data.spans if s.span_type == "RETRIEVER"), key=lambda s: s.start_time_ns)
    assert [s.status.status_code.value for s in spans] == ["OK", "ERROR"]


def test_inside_the_users_own_trace_it_is_a_child_span(store):
    import mlflow

    @mlflow.trace(name="my_pipeline")
    def pipeline():
        with mltrack.track_retrieval("q") as r:
            r.set_documents(["doc"])
        return "ok"

    pipeline()
    mlflow.flush_trace_async_logging()
    (trace,) = mlflow.search_traces(locations=["0"], return_type="list")
    spans = trace.data.spans
    root = next(s for s in spans if s.parent_id is None)
    (retriever,) = [s for s in spans if s.span_type == "RETRIEVER"]
    assert root.name == "my_pipeline" and retriever.parent_id == root.span_id
    assert retriever.inputs == {"query": "q"} and retriever.outputs == [{"page_content": "doc", "metadata": {}}]


def test_outside_any_run_a_short_run_of_its_own(store):
    with mltrack.track_retrieval("lonely") as r:
        r.set_documents(["x", "y"])
    assert mltrack.flush(timeout=60)
    (run,) = store.runs()
    assert run.info.run_name.startswith("retrieval-") and run.info.status == "FINISHED"
    assert store.history(run.info.run_id, "rag.num_docs_retrieved") == [(0, 2.0)]
    (trace,) = _traces(store, run.info.run_id)
    assert [s.span_type for s in trace.data.spans] == ["RETRIEVER"]


def test_bad_name_is_a_clear_error():
    with pytest.raises(TypeError, match="name must be a non-empty string"):
        mltrack.track_retrieval("q", name="")


def test_with_tracking_switched_off_the_block_runs_and_nothing_is_written(store, monkeypatch):
    from mltrack import config, writer

    monkeypatch.setenv("MLTRACK_ENABLED", "false")
    config.reset()
    with mltrack.track_retrieval("q") as r:
        r.set_documents(["a"])
    assert r.documents == ["a"]
    assert writer.status()["running"] is False and store.runs() == []
