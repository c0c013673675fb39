"""mltrack quickstart: real OpenAI-SDK calls, tracked three ways, written to MLflow.

With no OPENAI_API_KEY (and no network) the calls go to mltrack's local fake OpenAI server over HTTP;
with OPENAI_API_KEY set they go to the real API. Results land in MLflow's default store (./mlflow.db)
unless MLFLOW_TRACKING_URI or .mltrack.yml says otherwise.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # this demo sends nothing anywhere but to MLflow

import openai  # noqa: E402

import mltrack  # noqa: E402

MODEL = os.environ.get("QUICKSTART_MODEL", "gpt-4o-mini")
QUESTIONS = ["What is MLflow?", "What does a run hold?", "How do I compare runs?"]


def make_client() -> tuple[openai.OpenAI, object | None]:
    if os.environ.get("OPENAI_API_KEY"):
        print("OPENAI_API_KEY is set: calling the real OpenAI API")
        return openai.OpenAI(), None
    from mltrack.testing import FakeLLMServer

    server = FakeLLMServer().start()
    print(f"no OPENAI_API_KEY: calling mltrack's local fake OpenAI server at {server.openai_base_url}")
    return openai.OpenAI(base_url=server.openai_base_url, api_key="not-a-real-key"), server


def main() -> None:
    client, server = make_client()

    # 1. @track: one run per call; a returned OpenAI response is logged with no other code.
    @mltrack.track(tags={"example": "quickstart"})
    def answer(question: str):
        return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}])

    print("\n@track:", answer(QUESTIONS[0]).choices[0].message.content)

    # 2. track_llm_context: one run for a block of calls, with running totals.
    with mltrack.track_llm_context("rag-session", model=MODEL, tags={"example": "quickstart"}) as tracker:
        for question in QUESTIONS:
            messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}]
            started = time.perf_counter()
            response = client.chat.completions.create(model=MODEL, messages=messages)
            tracker.log_prompt_response(messages, response, latency_ms=(time.perf_counter() - started) * 1000)
        # Text without usage is counted locally (tiktoken) and flagged as estimated.
        estimated = tracker.log_prompt_response("Summarize the session.", "Three questions about MLflow.")
        print(f"track_llm_context totals: {tracker.totals}")
        print(f"locally counted call: {estimated.prompt_tokens}+{estimated.completion_tokens} tokens, "
              f"estimated={estimated.tokens_estimated}")
        session_run = tracker.run_id

    # 3. LLMTracker.track_llm_call with the ready OpenAI extractors.
    tracker = mltrack.LLMTracker(model=MODEL)

    @tracker.track_llm_call(extract_prompt=mltrack.openai_prompt_extractor,
                            extract_response=mltrack.openai_response_extractor,
                            extract_token_usage=mltrack.openai_token_extractor)
    def chat(**kwargs):
        return client.chat.completions.create(**kwargs)

    with mltrack.track_llm_context("extractors", tags={"example": "quickstart"}):
        chat(model=MODEL, messages=[{"role": "user", "content": "Say hello."}])
        chat(model=MODEL, messages=[{"role": "user", "content": "Say goodbye."}])

    mltrack.flush()
    if server is not None:
        server.stop()
    show_runs(session_run)


def show_runs(session_run: str | None) -> None:
    import mlflow
    from mlflow import MlflowClient

    store = MlflowClient()
    runs = store.search_runs(["0"], filter_string="tags.example = 'quickstart'",
                             order_by=["attributes.start_time DESC"], max_results=3)
    print(f"\nMLflow store: {mlflow.get_tracking_uri()}")
    for run in reversed(runs):
        metrics = run.data.metrics
        print(f"\nrun {run.info.run_name!r}  id={run.info.run_id}  status={run.info.status}")
        print(f"  model={run.data.tags.get('llm.model')}  calls={metrics.get('llm.calls'):.0f}  "
              f"tokens={metrics.get('llm.tokens.cumulative.total'):.0f}  "
              f"cost=${metrics.get('llm.cost.cumulative', 0):.8f}")
        for step_metric in store.get_metric_history(run.info.run_id, "llm.tokens.total"):
            cost = [m.value for m in store.get_metric_history(run.info.run_id, "llm.cost.total")
                    if m.step == step_metric.step]
            print(f"    call {step_metric.step}: {step_metric.value:.0f} tokens"
                  + (f", ${cost[0]:.8f}" if cost else ", no price"))
    uri = mlflow.get_tracking_uri()
    print(f"\nLook at them in the MLflow UI:\n  mlflow ui --backend-store-uri {uri}")


if __name__ == "__main__":
    main()
