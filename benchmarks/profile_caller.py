"""Where the caller's thread spends its time in ``tracker.log_prompt_response`` (cProfile, caller thread only).

    python benchmarks/profile_caller.py [--calls 3000] [--top 25]

Real OpenAI SDK calls to mltrack's fake server (in another process) with a local SQLite store, as in
section 1 of run.py. The profiler is switched on only around each ``log_prompt_response`` call, so HTTP time is
left out; it runs twice: right after each HTTP call (as in real use, the writer busy with earlier calls) and
back-to-back in bursts of 500 after a flush (hot caches, the writer idle: no time waiting for the GIL charged
to whatever function happened to run). cProfile adds its own overhead to every Python call: read the shares,
not the absolute times. Prints the functions by own time and by cumulative time, the time grouped by package,
and (``--stages``, uses mltrack internals) the hot time of each step of the logging path without a profiler.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as C  # noqa: E402


def _group(filename: str) -> str:
    if "/mltrack/" in filename:
        part = filename.split("/mltrack/", 1)[1]
        return "mltrack/" + (part.split("/", 1)[0] if "/" in part else part)
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    return "stdlib: " + Path(filename).stem


def report(profile: cProfile.Profile, calls: int, title: str, top: int) -> None:
    stats = pstats.Stats(profile)
    total = sum(row[2] for row in stats.stats.values())  # sum of own times = total profiled time
    print(f"\n--- {title}: {calls} calls, {total / calls * 1e6:.1f} µs per call under the profiler ---")
    groups: dict[str, float] = defaultdict(float)
    for (filename, _, _), row in stats.stats.items():
        groups[_group(filename)] += row[2]
    print("  own time by package/module:")
    for name, own in sorted(groups.items(), key=lambda kv: kv[1], reverse=True)[:12]:
        print(f"    {own / total:6.1%}  {own / calls * 1e6:7.1f} µs/call  {name}")
    for key, label in (("tottime", "own time"), ("cumulative", "cumulative time")):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(key).print_stats(top)
        lines = out.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
        print(f"  top {top} functions by {label}:")
        for line in lines[start:]:
            if line.strip():
                print("   " + line)


def stages(response: object) -> None:
    """Hot, unprofiled time of each step of ``log_prompt_response`` (best of 5 x 5000). Uses internals."""
    import timeit

    print("\n--- the steps of log_prompt_response, hot, no profiler (best of 5 x 5000 runs) ---")
    try:
        from mltrack.config import get_settings
        from mltrack.engine.cost import compute_cost
        from mltrack.engine.process import RawCall, price_table, process
        from mltrack.providers import _registry
        from mltrack.run_state import RunHandle

        settings = get_settings()
        extracted = _registry.extract_response(response)
        price = price_table(settings.pricing).lookup(extracted.model, extracted.provider)
        handle = RunHandle("stages")
        usage = response.usage  # type: ignore[attr-defined]
        adapter = _registry.response_adapter(response)
        steps = [
            ("RawCall(...) (tracker)", lambda: RawCall(prompt=C.MESSAGES, response=response)),
            ("extract_response (openai adapter)", lambda: _registry.extract_response(response)),
            ("  of which extract_usage", lambda: adapter.extract_usage(usage)),
            ("  one getattr of a missing attribute on a pydantic model",
             lambda: getattr(usage, "cached_prompt_tokens", None)),
            ("request_from_object(prompt)", lambda: _registry.request_from_object(C.MESSAGES)),
            ("price_table(...).lookup(model)", lambda: price_table(settings.pricing).lookup(extracted.model,
                                                                                          extracted.provider)),
            ("compute_cost (Decimal)", lambda: compute_cost(price, extracted.usage)),
            ("RunHandle.add (running totals, lock)", lambda: handle.add(extracted.usage, None, extracted.model,
                                                                       extracted.provider, False)),
            ("process(...) in all (no handle)", lambda: process(RawCall(prompt=C.MESSAGES, response=response),
                                                                settings, None)),
        ]
    except Exception as exc:  # noqa: BLE001 - internals move; the profile above still stands
        print(f"  unavailable: {type(exc).__name__}: {exc}")
        return
    for label, fn in steps:
        try:
            best = min(timeit.repeat(fn, number=5000, repeat=5)) / 5000 * 1e6
        except Exception as exc:  # noqa: BLE001
            print(f"  {label:58s} failed: {type(exc).__name__}: {exc}")
            continue
        print(f"  {label:58s} {best:7.2f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--stages", action="store_true", help="also time each step alone (mltrack internals)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mltrack-profile-"))
    server = subprocess.Popen([sys.executable, str(HERE / "_fake_server.py")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = server.stdout.readline().strip() if server.stdout else ""
        template = C.make_template_store(work / "template.db")
        uri, _ = C.fresh_store(template, work, "profile")
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ["MLTRACK_JOURNAL_DIR"] = str(work / "journal")
        import mltrack

        client = C.openai_client(url)
        call = lambda: client.chat.completions.create(model=C.MODEL, messages=C.MESSAGES)  # noqa: E731
        with mltrack.track_llm_context("profile-warmup") as tracker:
            for _ in range(100):
                tracker.log_prompt_response(C.MESSAGES, call())
        mltrack.flush(60)

        after_http = cProfile.Profile()
        responses = []
        with mltrack.track_llm_context("profile-after-http") as tracker:
            for _ in range(args.calls):
                response = call()
                after_http.enable()
                tracker.log_prompt_response(C.MESSAGES, response)
                after_http.disable()
                if len(responses) < 200:
                    responses.append(response)
        hot = cProfile.Profile()
        with mltrack.track_llm_context("profile-hot") as tracker:
            for i in range(args.calls):
                if i % 500 == 0:
                    mltrack.flush(60)
                response = responses[i % len(responses)]
                hot.enable()
                tracker.log_prompt_response(C.MESSAGES, response)
                hot.disable()
        mltrack.flush(300)
        report(after_http, args.calls, "log_prompt_response right after each HTTP call (writer busy)", args.top)
        report(hot, args.calls, "log_prompt_response back-to-back (hot caches, writer idle)", args.top)
        if args.stages:
            stages(responses[0])
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=10)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
