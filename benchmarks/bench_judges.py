"""What judges cost the user's request: a @track RAG turn (a retrieval and an instrumented OpenAI call to a local
fake server) with judges off, then on with a judge model that takes 200 ms per answer; p50 / p99 per turn and
the ratio on / off, measured in the same run, then how long flush() waits for the judgments.

    python benchmarks/bench_judges.py [--turns 200]

Not a test: nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as C  # noqa: E402


def turns(answer, n: int) -> list[int]:
    samples = []
    for i in range(n):
        started = time.perf_counter_ns()
        answer(f"question {i}?")
        samples.append(time.perf_counter_ns() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp(prefix='bench-judges-')}/mlflow.db"
    import openai

    import mltrack
    from mltrack.testing import FakeLLMServer, ScriptedReply

    bot, judge = FakeLLMServer().start(), FakeLLMServer().start()
    answer_json = json.dumps({"score": 4, "rationale": "fine"})
    for _ in range(args.turns * 2):
        judge.queue(ScriptedReply(text=answer_json, delay_s=0.2))
    mltrack.instrument("openai")
    client = openai.OpenAI(base_url=bot.openai_base_url, api_key="x", max_retries=0)

    @mltrack.track(name="turn")
    def answer(question: str) -> str:
        with mltrack.track_retrieval(question) as r:
            r.set_documents(["doc one", "doc two"])
        return client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": question}]).choices[0].message.content

    turns(answer, 20)  # warm-up: writer start, first imports
    mltrack.flush(120)
    off = C.summary_us(turns(answer, args.turns))
    mltrack.flush(120)
    mltrack.configure(judges={"enabled": True, "base_url": judge.openai_base_url, "metrics": ["answer_relevancy",
                                                                                          "coherence"]})
    on = C.summary_us(turns(answer, args.turns))
    started = time.perf_counter()
    ok = mltrack.flush(600)
    waited = time.perf_counter() - started
    print(f"{args.turns} turns per mode (retrieval + one instrumented call to a local fake server)")
    print(f"  judges off: p50 {C.fmt_us(off['p50'])}  p99 {C.fmt_us(off['p99'])}")
    print(f"  judges on : p50 {C.fmt_us(on['p50'])}  p99 {C.fmt_us(on['p99'])}   (judge: 2 calls x 200 ms per turn)")
    print(f"  ratio on/off: p50 {on['p50'] / off['p50']:.2f}x  p99 {on['p99'] / off['p99']:.2f}x")
    print(f"  flush() then waited {waited:.1f} s for the judgments (4 workers), all written: {ok}")
    bot.stop()
    judge.stop()


if __name__ == "__main__":
    main()
