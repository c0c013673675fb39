"""Section 4: memory while the MLflow store is dead, after many tracked calls.

The tracking URI points at a store that cannot take writes: a closed local port (``http://127.0.0.1:9``, the
writer thread then sits in MLflow's HTTP retries) or a SQLite file that cannot be created (every write fails
at once). N calls are logged with ``tracker.log_prompt_response`` (each with its own prompt and response text,
as in real use) inside one ``track_llm_context``. Measured: RSS growth (``--mode rss``) or the tracemalloc
peak (``--mode tracemalloc``, run in its own process because tracing inflates RSS), both from a baseline taken
after a warm-up.

The bound: ``writer_queue_size`` records. While nothing is written or dropped yet, every record handed to
mltrack is still in memory, so the growth over the first calls divided by their count is the memory one
record holds; the bound in bytes is ``writer_queue_size`` x that. PASS when the peak stays within the bound
(+10% and 4 MiB for measurement noise) and the last half of the calls added no more than 4 MiB.
Usage (normally run by run.py):
  python benchmarks/bench_memory.py --uri http://127.0.0.1:9 --calls 100000 --mode rss --workdir DIR
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TOLERANCE = 1.10
SLACK = 4 * C.MIB


def _make_response(i: int) -> Any:
    from openai.types.chat import ChatCompletion

    text = f"answer {i}: " + "the quick brown fox jumps over the lazy dog " * 6
    return ChatCompletion.model_validate({
        "id": f"chatcmpl-bench-{i}", "object": "chat.completion", "created": 1_700_000_000 + i, "model": C.MODEL,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 80 + i % 50, "completion_tokens": 60, "total_tokens": 140 + i % 50},
    })


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"question {i}: " + "please summarise the following text " * 6}]


def _settle(limit_s: float = 5.0) -> float:
    """Wait until the writer's queue stops changing for 0.5 s (stuck in retries, or drained); at most limit_s."""
    t0 = time.perf_counter()
    last, since = C.writer_pending(), time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        time.sleep(0.05)
        now = C.writer_pending()
        if now != last:
            last, since = now, time.perf_counter()
        elif time.perf_counter() - since >= 0.5:
            break
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--calls", type=int, default=100000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--mode", choices=("rss", "tracemalloc"), default="rss")
    parser.add_argument("--queue-size", type=int, help="writer_queue_size (default: mltrack's default)")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--result")
    args = parser.parse_args(argv)

    os.environ["MLFLOW_TRACKING_URI"] = args.uri
    os.environ["MLTRACK_JOURNAL_DIR"] = str(Path(args.workdir) / "journal")
    if args.queue_size is not None:
        os.environ["MLTRACK_WRITER_QUEUE_SIZE"] = str(args.queue_size)
    import tracemalloc

    import mlflow  # noqa: F401 - imported up front: the writer imports it on first use, which is not per-record memory

    import mltrack

    queue_size = int(mltrack.get_config()["writer_queue_size"])
    caught: list[str] = []
    samples: list[dict[str, Any]] = []
    every = max(1, args.calls // 40)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with mltrack.track_llm_context("bench-memory", tags={"benchmark": "dead-store"}) as tracker:
            for i in range(args.warmup):
                tracker.log_prompt_response(_messages(i), _make_response(i))
            # Let the writer reach the dead store (it then sits in MLflow's retries, or has failed and moved on)
            # before the baseline, so that its one-time setup is not counted as memory held per record.
            settle_s = _settle()
            gc.collect()
            if args.mode == "tracemalloc":
                tracemalloc.start()
            base_rss = C.rss_bytes()
            base_traced = tracemalloc.get_traced_memory()[0] if args.mode == "tracemalloc" else 0
            peak_rss = base_rss
            t0 = time.perf_counter()
            for i in range(args.calls):
                tracker.log_prompt_response(_messages(i), _make_response(i))
                if (i + 1) % every == 0 or i + 1 == args.calls:
                    rss = C.rss_bytes()
                    peak_rss = max(peak_rss, rss)
                    traced = tracemalloc.get_traced_memory() if args.mode == "tracemalloc" else (0, 0)
                    samples.append({"calls": i + 1, "t": time.perf_counter() - t0, "rss": rss - base_rss,
                                    "traced": traced[0] - base_traced, "traced_peak": traced[1] - base_traced,
                                    "pending": C.writer_pending(), "dropped": C.writer_dropped()})
            loop_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        flushed = mltrack.flush(timeout=1.0)
        flush_s = time.perf_counter() - t1
        final_rss = C.rss_bytes()
        peak_rss = max(peak_rss, final_rss)
        traced_now, traced_peak = tracemalloc.get_traced_memory() if args.mode == "tracemalloc" else (0, 0)
        if args.mode == "tracemalloc":
            tracemalloc.stop()
        caught = sorted({str(w.message)[:160] for w in seen})

    key = "traced" if args.mode == "tracemalloc" else "rss"
    # Bytes per record: growth over the calls made before anything could have been dropped or written.
    early = [s for s in samples if not s["dropped"] and (s["pending"] or 0) < queue_size and s[key] > 0]
    per_record = early[-1][key] / (early[-1]["calls"] + args.warmup) if early else float("nan")
    bound = queue_size * per_record
    peak = (traced_peak - base_traced) if args.mode == "tracemalloc" else (peak_rss - base_rss)
    half = next((s for s in samples if s["calls"] >= args.calls // 2), samples[-1])
    late_growth = samples[-1][key] - half[key]
    held = peak / per_record if per_record == per_record and per_record > 0 else float("nan")
    ok = bool(peak <= TOLERANCE * bound + SLACK and late_growth <= SLACK) if bound == bound else peak <= SLACK
    result = {
        "uri": args.uri, "mode": args.mode, "calls": args.calls, "queue_size": queue_size,
        "bytes_per_record": per_record, "bound_bytes": bound, "peak_growth_bytes": peak,
        "final_growth_bytes": (traced_now - base_traced) if args.mode == "tracemalloc" else final_rss - base_rss,
        "late_growth_bytes": late_growth, "records_held_estimate": held, "ok": ok, "loop_s": loop_s, "settle_s": settle_s,
        "flushed": flushed, "flush_s": flush_s, "pending_end": C.writer_pending(), "dropped": C.writer_dropped(),
        "warnings": caught, "samples": samples, "finished_at": time.time(),
    }
    what = "tracemalloc peak" if args.mode == "tracemalloc" else "RSS growth (peak)"
    print(f"  dead store {args.uri}  [{args.mode}]  {args.calls:,} calls in {loop_s:.1f} s; "
          f"writer_queue_size = {queue_size:,} records")
    if per_record == per_record:
        print(f"    one queued record holds ~{per_record / 1024:.1f} KiB -> bound {bound / C.MIB:.1f} MiB "
              f"(+10% +4 MiB tolerance = {(TOLERANCE * bound + SLACK) / C.MIB:.1f} MiB)")
    else:
        print("    nothing accumulated (every write failed at once and the records were let go)")
    print(f"    {what}: {peak / C.MIB:.1f} MiB (~{held:,.0f} records' worth); growth over the last half of the "
          f"calls: {late_growth / C.MIB:+.1f} MiB; at the end: {C.writer_pending()} queued, "
          f"{C.writer_dropped()} dropped; flush(timeout=1) -> {flushed} in {flush_s:.1f} s  {C.verdict(ok)}")
    for message in caught[:3]:
        print(f"    warning seen: {message}")
    C.write_result(args.result, result)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
