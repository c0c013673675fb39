"""Section 4: memory while the MLflow store is dead, after many tracked calls.

The tracking URI points at a store that cannot take writes: a closed local port (``http://127.0.0.1:9``, the
writer then gets "connection refused", through MLflow's HTTP retries) or a SQLite file that cannot be created
(every write fails at once). N calls are logged with ``tracker.log_prompt_response`` (each with its own prompt
and response text, as in real use) inside one ``track_llm_context``. Measured from a baseline taken after a
warm-up: RSS growth (``--mode rss``) or the tracemalloc peak (``--mode tracemalloc``; its own process, since
tracing inflates RSS). This process's memory is what is bounded; MLflow's client lives in mltrack's writer
process (started in the warm-up, before the baseline), whose RSS is printed apart: it holds one batch at a time.
MLflow and the store client are also imported here before the baseline (with ``writer_process: false`` the
writer would import them on first use, a one-time cost that is not memory held per record).

The bound is ``writer_queue_size`` records. What one record holds in memory is measured by ``--calibrate``:
a dead store, a journal folder that cannot be created and a queue far larger than the calls, so that every
record handed over stays in memory; growth / calls is the size of one held record. The bound in bytes is
``writer_queue_size`` x that. PASS when the peak stays within the bound (+10% and 4 MiB for measurement
noise) and the last half of the calls added no more than 4 MiB (memory does not grow with the calls).
Usage (normally run by run.py):
  python benchmarks/bench_memory.py --calibrate --mode rss --calls 5000 --workdir DIR
  python benchmarks/bench_memory.py --uri http://127.0.0.1:9 --mode rss --calls 100000 --bytes-per-record B --workdir DIR
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
DEAD_HTTP = "http://127.0.0.1:9"
NO_JOURNAL = "/proc/mltrack-bench-no-journal"  # /proc takes no new folders: the journal cannot be written


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
    """Wait until the writer's backlog stops changing for 0.5 s (stuck on the store, or drained); at most limit_s."""
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


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Log ``args.calls`` calls against the dead store; sample memory and the writer's backlog as it goes."""
    import tracemalloc

    from mlflow import MlflowClient

    try:
        MlflowClient(tracking_uri=args.uri)
    except Exception:  # noqa: BLE001 - a dead store is the point
        pass

    import mltrack

    samples: list[dict[str, Any]] = []
    every = max(1, args.calls // 40)
    tracing = args.mode == "tracemalloc"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with mltrack.track_llm_context("bench-memory", tags={"benchmark": "dead-store"}) as tracker:
            for i in range(args.warmup):
                tracker.log_prompt_response(_messages(i), _make_response(i))
            settle_s = _settle()
            gc.collect()
            if tracing:
                tracemalloc.start()
            base_rss = C.rss_bytes()
            writer_pid = C.writer_process_pid()
            writer_base = writer_peak = C.rss_bytes(writer_pid) if writer_pid else 0
            base_traced = tracemalloc.get_traced_memory()[0] if tracing else 0
            peak_rss = base_rss
            t0 = time.perf_counter()
            for i in range(args.calls):
                tracker.log_prompt_response(_messages(i), _make_response(i))
                if (i + 1) % every == 0 or i + 1 == args.calls:
                    rss = C.rss_bytes()
                    peak_rss = max(peak_rss, rss)
                    if writer_pid:
                        writer_peak = max(writer_peak, C.rss_bytes(writer_pid))
                    traced = tracemalloc.get_traced_memory() if tracing else (0, 0)
                    samples.append({"calls": i + 1, "t": round(time.perf_counter() - t0, 3), "rss": rss - base_rss,
                                    "traced": traced[0] - base_traced, "traced_peak": traced[1] - base_traced,
                                    "pending": C.writer_pending(), "dropped": C.writer_dropped()})
            loop_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        flushed = mltrack.flush(timeout=1.0)
        flush_s = time.perf_counter() - t1
        peak_rss = max(peak_rss, C.rss_bytes())
        traced_peak = tracemalloc.get_traced_memory()[1] if tracing else 0
        if tracing:
            tracemalloc.stop()
    key = "traced" if tracing else "rss"
    peak = (traced_peak - base_traced) if tracing else (peak_rss - base_rss)
    half = next((s for s in samples if s["calls"] >= args.calls // 2), samples[-1])
    return {
        "uri": args.uri, "mode": args.mode, "calls": args.calls,
        "queue_size": int(mltrack.get_config()["writer_queue_size"]), "peak_growth_bytes": peak,
        "final_growth_bytes": samples[-1][key], "late_growth_bytes": samples[-1][key] - half[key],
        "writer_process_rss_bytes": writer_base if writer_pid else None,
        "writer_process_growth_bytes": (writer_peak - writer_base) if writer_pid else None,
        "loop_s": loop_s, "settle_s": settle_s, "flushed": flushed, "flush_s": flush_s,
        "pending_end": C.writer_pending(), "dropped": C.writer_dropped(),
        "warnings": sorted({str(w.message)[:200] for w in seen}), "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", default=DEAD_HTTP)
    parser.add_argument("--calls", type=int, default=100000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--mode", choices=("rss", "tracemalloc"), default="rss")
    parser.add_argument("--queue-size", type=int, help="writer_queue_size (default: mltrack's default)")
    parser.add_argument("--calibrate", action="store_true", help="measure the memory one held record takes")
    parser.add_argument("--bytes-per-record", type=float, help="from a --calibrate run of the same --mode")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--exit-now", action="store_true",
                        help="skip interpreter shutdown (and mltrack's exit-time flush) once the result is written")
    parser.add_argument("--result")
    args = parser.parse_args(argv)

    os.environ["MLFLOW_TRACKING_URI"] = args.uri
    if args.calibrate:
        os.environ["MLTRACK_JOURNAL_DIR"] = NO_JOURNAL
        os.environ["MLTRACK_WRITER_QUEUE_SIZE"] = str(max(1_000_000, 4 * args.calls))
    else:
        # A journal of its own (run.py also gives one per process): never adopt another run's leftovers.
        os.environ.setdefault("MLTRACK_JOURNAL_DIR", str(Path(args.workdir) / f"journal-{os.getpid()}"))
        if args.queue_size is not None:
            os.environ["MLTRACK_WRITER_QUEUE_SIZE"] = str(args.queue_size)

    result = measure(args)
    result["finished_at"] = time.time()
    peak, late = result["peak_growth_bytes"], result["late_growth_bytes"]
    what = "tracemalloc" if args.mode == "tracemalloc" else "RSS"
    if args.calibrate:
        last = result["samples"][-1]
        held = (last["pending"] or 0) >= args.calls and not last["dropped"]
        per_record = result["final_growth_bytes"] / args.calls
        result.update(bytes_per_record=per_record, all_held=held)
        print(f"  calibration [{args.mode}]: {args.calls:,} records held in memory (store {args.uri} dead, no journal, "
              f"queue {result['queue_size']:,}): {what} +{result['final_growth_bytes'] / C.MIB:.1f} MiB -> "
              f"{per_record / 1024:.2f} KiB per held record" + ("" if held else
                                                                  f"  (!! only {last['pending']} held)"))
    else:
        per_record = args.bytes_per_record
        bound = result["queue_size"] * per_record if per_record else None
        flat = late <= SLACK
        within = None if bound is None else peak <= TOLERANCE * bound + SLACK
        ok = flat and within is not False
        result.update(bytes_per_record=per_record, bound_bytes=bound, flat=flat, within_bound=within, ok=ok,
                      records_worth=peak / per_record if per_record else None)
        print(f"  dead store {args.uri} [{args.mode}]: {args.calls:,} calls in {result['loop_s']:.1f} s; "
              f"writer_queue_size {result['queue_size']:,}")
        if bound is not None:
            print(f"    bound: {result['queue_size']:,} records x {per_record / 1024:.2f} KiB = {bound / C.MIB:.1f} MiB "
                  f"(with tolerance {(TOLERANCE * bound + SLACK) / C.MIB:.1f} MiB)")
        worth = f" (~{peak / per_record:,.0f} records' worth)" if per_record else ""
        print(f"    {what} growth, peak: {peak / C.MIB:.1f} MiB{worth}; over the last half of the calls: "
              f"{late / C.MIB:+.1f} MiB; at the end {result['pending_end']} not written, {result['dropped']} dropped; "
              f"flush(timeout=1) -> {result['flushed']} in {result['flush_s']:.1f} s   {C.verdict(ok)}")
        if result.get("writer_process_rss_bytes"):
            print(f"    mltrack's writer process (not in the figure above): RSS {result['writer_process_rss_bytes'] / C.MIB:.1f}"
                  f" MiB at the start, peak growth {result['writer_process_growth_bytes'] / C.MIB:+.1f} MiB "
                  "(MLflow's client and its caches; the records held are in the figure above)")
        for message in result["warnings"][:3]:
            print(f"    warning seen: {message}")
    C.write_result(args.result, result)
    sys.stdout.flush()
    if args.exit_now:
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
