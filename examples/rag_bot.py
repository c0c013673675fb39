"""A small RAG bot, fully offline: each turn is one MLflow trace (the turn, its retrieval, its LLM call), and a
judge model scores every turn in the background (answer relevancy, faithfulness, retrieval relevancy, tone,
coherence) without slowing the bot.

Both the bot's model and the judge model are mltrack's local fake OpenAI server (two instances), so this runs
without network or API key. Results go to a fresh SQLite store in a temporary folder unless MLFLOW_TRACKING_URI
is set. Run: ``python examples/rag_bot.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
if "MLFLOW_TRACKING_URI" not in os.environ:
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp(prefix='rag-bot-')}/mlflow.db"

import openai  # noqa: E402

import mltrack  # noqa: E402
from mltrack.testing import FakeLLMServer, ScriptedReply  # noqa: E402

DOCS = {
    "paris": "Paris is the capital and largest city of France.",
    "seine": "The Seine flows through Paris before reaching the English Channel.",
    "berlin": "Berlin is the capital of Germany.",
    "euro": "France and Germany both use the euro.",
}
QUESTIONS = ["What is the capital of France?", "Which river flows through Paris?", "What currency does Germany use?"]


def retrieve(question: str) -> list[dict[str, str]]:
    """A toy keyword retriever."""
    words = {w.strip("?.,").lower() for w in question.split()}
    hits = [{"id": key, "content": text} for key, text in DOCS.items()
            if words & {w.strip(".,").lower() for w in text.split()}]
    return hits[:3]


def main() -> None:
    bot_server, judge_server = FakeLLMServer().start(), FakeLLMServer().start()
    # The judge answers strict JSON, as a real judge model is asked to; the last one takes 2 s (the bot does not wait).
    for i in range(len(QUESTIONS) * 5):
        judge_server.queue(ScriptedReply(text=json.dumps({"score": 3 + i % 3, "rationale": f"rubric point {i}"}),
                                         delay_s=2.0 if i == len(QUESTIONS) * 5 - 1 else 0.0))
    mltrack.configure(experiment_name="rag-bot", judges={
        "enabled": True, "model": "gpt-4o-mini", "provider": "openai", "base_url": judge_server.openai_base_url,
        "max_cost_usd": 0.50, "max_concurrency": 2})
    mltrack.instrument("openai")
    client = openai.OpenAI(base_url=bot_server.openai_base_url, api_key="not-a-real-key")

    @mltrack.track(name="rag-turn")
    def answer(question: str) -> str:
        with mltrack.track_retrieval(question) as retrieval:
            docs = retrieve(question)
            retrieval.set_documents(docs)
        context = "\n".join(d["content"] for d in docs)
        response = client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "system", "content": f"Answer from this context only:\n{context}"},
            {"role": "user", "content": question}])
        return response.choices[0].message.content

    for question in QUESTIONS:
        started = time.perf_counter()
        reply = answer(question)
        print(f"bot ({(time.perf_counter() - started) * 1000:.0f} ms): {question} -> {reply}")

    print("\nwaiting for the judges and the writer ...")
    mltrack.flush(timeout=120)
    show(os.environ["MLFLOW_TRACKING_URI"])
    bot_server.stop()
    judge_server.stop()


def show(uri: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("rag-bot")
    for run in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]):
        m = run.data.metrics
        print(f"\nrun {run.info.run_name} {run.info.run_id[:8]}: {int(m['rag.num_docs_retrieved'])} docs in "
              f"{m['rag.retrieval_time_ms']:.2f} ms, LLM cost ${m['llm.cost.cumulative']:.6f}, "
              f"judge cost ${m.get('judge.cost', 0):.6f}, judge errors {int(m.get('judge.errors', 0))}")
        print("  scores: " + ", ".join(f"{k.removeprefix('judge.')}={v:g}" for k, v in sorted(m.items())
                                       if k.startswith("judge.") and k not in ("judge.cost", "judge.errors")))
        (found,) = client.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id)
        trace = client.get_trace(found.info.trace_id)
        spans = sorted(trace.data.spans, key=lambda s: (s.parent_id is not None, s.start_time_ns))
        print("  trace: " + " > ".join(f"{s.span_type}:{s.name}" for s in spans))
        for a in sorted(trace.info.assessments, key=lambda a: a.name):
            print(f"  feedback {a.name}={a.value:g} ({a.source.source_type}, {a.source.source_id}): {a.rationale}")


if __name__ == "__main__":
    main()
