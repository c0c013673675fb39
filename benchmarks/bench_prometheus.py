"""What Prometheus costs, against the same thing with Prometheus off, measured in the same run.

    python benchmarks/bench_prometheus.py [--calls 3000] [--rounds 2] [--quick]

1. The engine step (``process()``, run by whichever thread prices a call) with Prometheus off and on: the
   difference is the observer (label lookup, counters, histograms), paid once per call.
2. The caller's thread per ``tracker.log_prompt_response`` (pricing deferred to the writer thread, the usual
   case) and with a budget limit set (then every call is priced on the caller's thread, observer included),
   each in fresh interpreters, off and on alternating; ratio on / off.
3. How long after a call its figures are visible to a scrape (no flush), with a working SQLite store and with a
   store that cannot be opened; the contract says within 1 s.

Uses mltrack internals (``mltrack.engine.process``) for (1) only. Not a test: nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as C  # noqa: E402

USAGE = {"prompt_tokens": 900, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 512}}


def _enable(on: bool) -> None:
    if on:
        from prometheus_client import CollectorRegistry

        import mltrack

        mltrack.enable_prometheus(registry=CollectorRegistry())


def child_engine(calls: int, on: bool) -> dict:
    """(1): process() per call, off or on, hot loop (no store: the engine only)."""
    from mltrack.config import get_settings
    from mltrack.engine.process import RawCall, process

    _enable(on)
    settings = get_settings()
    models = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"]
    samples = []
    for i in range(calls):
        raw = RawCall(prompt="p", response="r", model=models[i % 3], provider="openai", token_usage=USAGE,
                      latency_ms=120.0)
        t = time.perf_counter_ns()
        process(raw, settings, None)
        samples.append(time.perf_counter_ns() - t)
    return C.summary_us(samples[calls // 10:])  # the first tenth warms caches up


def child_caller(calls: int, on: bool, budget: bool) -> dict:
    """(2): the caller's thread per log_prompt_response, a real SQLite store behind the writer."""
    import mltrack

    _enable(on)
    if budget:
        mltrack.configure(llm_cost_limit_warning=1e9)  # a limit: each call is priced at once, on this thread
    samples = []
    with mltrack.track_llm_context("bench-prometheus") as tracker:
        for i in range(calls):
            t = time.perf_counter_ns()
            tracker.log_prompt_response("What is 2+2?", "4", model="gpt-4o-mini", token_usage=USAGE)
            samples.append(time.perf_counter_ns() - t)
            if i % 100 == 99:
                time.sleep(0.005)  # let the writer run, as between real LLM calls
    ok = mltrack.flush(timeout=120)
    out = C.summary_us(samples[calls // 10:])
    out["flushed"] = ok
    return out


def child_visibility(calls: int) -> dict:
    """(3): seconds from a call's return to its count in the registry (no flush), one call every 0.2 s."""
    import warnings

    import mltrack

    warnings.simplefilter("ignore")
    registry = mltrack.enable_prometheus(registry=__import__("prometheus_client").CollectorRegistry())
    delays = []
    labels = {"provider": "openai", "model": "gpt-4o-mini", "status": "ok"}
    with mltrack.track_llm_context("bench-visibility") as tracker:
        for i in range(calls):
            tracker.log_prompt_response("p", "r", model="gpt-4o-mini", token_usage=USAGE)
            t = time.monotonic()
            while (registry.get_sample_value("mltrack_llm_calls_total", labels) or 0) < i + 1:
                if time.monotonic() - t > 30:
                    break
                time.sleep(0.005)
            delays.append(time.monotonic() - t)
            time.sleep(0.2)
    first, rest = delays[0], sorted(delays[1:])
    return {"first_s": first, "p50_s": C.percentile(rest, 50), "max_s": rest[-1], "n": len(rest)}


def run_child(kind: str, args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, *args], env=env, capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{kind} {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small counts (figures rough)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "engine":
            print(json.dumps(child_engine(int(rest[0]), rest[1] == "on")))
        elif kind == "caller":
            print(json.dumps(child_caller(int(rest[0]), rest[1] == "on", rest[2] == "budget")))
        else:
            print(json.dumps(child_visibility(int(rest[0]))))
        return 0

    calls = 500 if args.quick else args.calls
    rounds = 1 if args.quick else args.rounds
    root = Path(tempfile.mkdtemp(prefix="mltrack-bench-prom-"))
    template = C.make_template_store(root / "template.db")
    base_env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLTRACK_JOURNAL_DIR=str(root / "journal"),
                    PYTHONPATH=str(C.REPO))
    for var in ("MLTRACK_STRICT", "MLTRACK_CONFIG", "PROMETHEUS_MULTIPROC_DIR"):
        base_env.pop(var, None)
    print(f"mltrack + Prometheus benchmark - {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}; {calls} calls per variant, {rounds} round(s), off/on alternating")

    print("\n1. process() per call (the thread that prices a call pays this), p50 / p99:")
    engine = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            engine[mode].append(run_child("engine", [str(calls * 3), mode], base_env))
    off = min(r["p50"] for r in engine["off"])
    on = min(r["p50"] for r in engine["on"])
    print(f"   off {C.fmt_us(off)} / {C.fmt_us(min(r['p99'] for r in engine['off']))}   "
          f"on {C.fmt_us(on)} / {C.fmt_us(min(r['p99'] for r in engine['on']))}   "
          f"observer adds {C.fmt_us(on - off)} (ratio {on / off:.2f})")

    print("\n2. caller's thread per log_prompt_response (SQLite store behind the writer), p50 / p99:")
    for budget in ("deferred", "budget"):
        results = {"off": [], "on": []}
        for r in range(rounds):
            for mode in ("off", "on"):
                uri, _ = C.fresh_store(template, root / "stores", f"{budget}-{mode}-{r}")
                env = dict(base_env, MLFLOW_TRACKING_URI=uri)
                results[mode].append(run_child("caller", [str(calls), mode, budget], env))
        off = min(x["p50"] for x in results["off"])
        on = min(x["p50"] for x in results["on"])
        flushed = all(x["flushed"] for x in results["off"] + results["on"])
        what = ("priced later on the writer thread" if budget == "deferred"
                else "with a budget limit: priced on the caller's thread")
        print(f"   {what}:\n     off {C.fmt_us(off)} / {C.fmt_us(min(x['p99'] for x in results['off']))}   "
              f"on {C.fmt_us(on)} / {C.fmt_us(min(x['p99'] for x in results['on']))}   ratio on/off {on / off:.2f}"
              + ("" if flushed else "   (!! a flush timed out)"))

    print("\n3. from a call's return to its figures in the registry (no flush), one call every 0.2 s:")
    n = 10 if args.quick else 25
    uri, _ = C.fresh_store(template, root / "stores", "visible")
    live = run_child("visibility", [str(n)], dict(base_env, MLFLOW_TRACKING_URI=uri))
    down = root / "down"
    down.write_text("a file where the store's folder should be: the store cannot be opened")
    dead = run_child("visibility", [str(n)], dict(base_env, MLFLOW_TRACKING_URI=f"sqlite:///{down / 'x.db'}"))
    for label, res in (("working store", live), ("store down", dead)):
        verdict = C.verdict(max(res["max_s"], res["first_s"]) <= 1.0)
        print(f"   {verdict}  {label}: first call {res['first_s']:.2f} s (the writer starts then); the next "
              f"{res['n']}: p50 {res['p50_s']:.2f} s, max {res['max_s']:.2f} s (contract: within 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
