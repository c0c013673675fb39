"""Price table cost of the generated prices: loading the table, looking names up, pricing a call.

Standalone: `python benchmarks/bench_pricing.py [--rounds N]`. Each figure is printed next to its baseline
measured in the same run: the full table (hand-checked + generated, ~545 models) against the hand-checked
files alone (~110 models, what mltrack shipped before the generated layer), and the call-dependent pricing
(long-context tier, service tier, dated price) against a flat-rate model. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mltrack.engine.cost import compute_cost  # noqa: E402
from mltrack.engine.price_files import pricing_dir  # noqa: E402
from mltrack.engine.pricing import PriceTable, generated_dir  # noqa: E402
from mltrack.record import Usage  # noqa: E402

NAMES = ["gpt-4o", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "publishers/google/models/gemini-2.5-pro",
         "anthropic/claude-3.5-sonnet", "gpt-4o-2025-06-01", "no-such-model", "groq/llama-3.1-8b-instant"]


def _best_of(rounds: int, fn) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    full_load = _best_of(args.rounds, lambda: PriceTable.layered(pricing_dir(), generated_dir()))
    base_load = _best_of(args.rounds, lambda: PriceTable.from_directory(pricing_dir()))
    full = PriceTable.layered(pricing_dir(), generated_dir())
    base = PriceTable.from_directory(pricing_dir())
    print(f"table load     full {full_load * 1000:7.1f} ms ({len(full.models())} models)   "
          f"hand-checked only {base_load * 1000:7.1f} ms ({len(base.models())} models)   "
          f"ratio {full_load / base_load:.1f}x")

    fresh = [PriceTable(full.models(), full.prefixes) for _ in range(args.rounds)]  # empty lookup caches
    cold = min(_timed(lambda t=table: [t.lookup(name) for name in NAMES]) for table in fresh) / len(NAMES)
    cached = _best_of(args.rounds, lambda: [full.lookup(name) for name in NAMES]) / len(NAMES)
    print(f"lookup         first time {cold * 1e6:7.2f} us per name   cached {cached * 1e6:5.2f} us per name   "
          f"({len(NAMES)} names: Bedrock, Vertex, OpenRouter forms, a dated fallback, a miss)")

    usage = Usage(250_000, 1000, 251_000, 10_000, 2000, 0, 1000)
    flat = full.lookup("gpt-4o-mini")
    rich = full.lookup("o3")  # service tiers and a dated price
    tiered = full.lookup("gemini-2.5-pro")
    n = 20_000
    samples = {}
    for label, price, kw in (("flat rate", flat, {}), ("service tier + date", rich,
                                                         {"service_tier": "flex", "day": "2025-01-01"}),
                             ("long-context tier", tiered, {})):
        run = (lambda p=price, k=kw: [compute_cost(p, usage, **k) for _ in range(n)])
        samples[label] = _best_of(args.rounds, run) / n
    baseline = samples["flat rate"]
    for label, seconds in samples.items():
        print(f"compute_cost   {label:22} {seconds * 1e6:6.2f} us   ratio to flat {seconds / baseline:.2f}x")
    print(f"median of the three: {statistics.median(samples.values()) * 1e6:.2f} us")


if __name__ == "__main__":
    main()
