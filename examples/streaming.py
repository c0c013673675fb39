"""Zero-code tracking of streamed calls: mltrack.instrument(), then use the SDKs as usual.

Runs offline against mltrack's local fake server (OpenAI and Anthropic wire formats, streamed over SSE);
with OPENAI_API_KEY / ANTHROPIC_API_KEY set, the matching client talks to the real API instead.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import anthropic  # noqa: E402
import openai  # noqa: E402

import mltrack  # noqa: E402
from mltrack.testing import FakeLLMServer, ScriptedReply  # noqa: E402


def main() -> None:
    server = FakeLLMServer().start()
    # Slow the fake tokens down a little so time-to-first-token and tokens/s mean something.
    server.queue(ScriptedReply(text="Streams are tracked chunk by chunk, usage included.", chunk_delay_s=0.02),
                 ScriptedReply(text="Claude streams are tracked too.", chunk_delay_s=0.02))
    oai = openai.OpenAI() if os.environ.get("OPENAI_API_KEY") else \
        openai.OpenAI(base_url=server.openai_base_url, api_key="not-a-real-key")
    claude = anthropic.Anthropic() if os.environ.get("ANTHROPIC_API_KEY") else \
        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="not-a-real-key")

    mltrack.instrument()  # patch every installed SDK; nothing else changes in your code

    with mltrack.track_llm_context("streaming-demo", tags={"example": "streaming"}) as tracker:
        stream = oai.chat.completions.create(model="gpt-4o-mini", stream=True,
                                             messages=[{"role": "user", "content": "How are streams tracked?"}])
        print("openai:    ", "".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        with claude.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=100,
                                    messages=[{"role": "user", "content": "And Claude?"}]) as s:
            print("anthropic: ", "".join(s.text_stream))
        print("totals:    ", tracker.totals)
        run_id = tracker.run_id

    mltrack.flush()
    server.stop()
    from mlflow import MlflowClient

    metrics = MlflowClient().get_run(run_id).data.metrics
    for key in ("llm.ttft_ms", "llm.inter_token_latency_ms", "llm.tokens_per_second", "llm.latency",
                "llm.tokens.cumulative.total", "llm.cost.cumulative"):
        if key in metrics:
            print(f"{key:30} {metrics[key]:.6g}  (last call)" if "cumulative" not in key else
                  f"{key:30} {metrics[key]:.6g}")
    print(f"\nrun {run_id}; look at it with: mlflow ui")


if __name__ == "__main__":
    main()
