"""Section 1: latency added on the caller's thread per tracked OpenAI call (one variant per process).

Variants:
  mltrack     bare call vs. the same call + ``tracker.log_prompt_response(prompt, response)`` inside
              ``track_llm_context``, interleaved call by call; the logging call is also timed on its own
              (its direct cost on the caller's thread); then with the returned record read at once (which
              prices the call there), and back-to-back with the writer saturated.
  instrument  bare call vs. the call made with ``mltrack.instrument("openai")`` on (skipped if unsupported):
              blocks of calls end to end, then mltrack's own work before and after the SDK method it wraps
              (its direct cost on the caller's thread), call after call.
  decorator   a function making the call, plain vs. decorated with ``tracker.track_llm_call()``, interleaved call
              by call; the function marks when the SDK call starts and returns, so the decorator's own work
              before and after it (its direct cost on the caller's thread) is timed apart from the HTTP call.
  autolog     bare call vs. the call made with ``mlflow.openai.autolog()`` on (MLflow's own tracing).

Every variant writes to its own fresh local SQLite store. Usage (normally run by run.py):
  python benchmarks/bench_latency.py --variant mltrack --calls 3000 --template T.db --workdir DIR
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

ns = time.perf_counter_ns


def _call(client: Any) -> Any:
    return client.chat.completions.create(model=C.MODEL, messages=C.MESSAGES)


def _timed_bare(client: Any, out: list[int]) -> Any:
    t0 = ns()
    response = _call(client)
    out.append(ns() - t0)
    return response


def _control() -> Any:
    """A fixed piece of pure-Python work (deep-copying the request messages twice), timed at the same spot as
    the logging call: it shows how much slower any Python code runs right after a blocking HTTP call (cold
    caches, the writer thread holding the GIL) than in a hot loop."""
    return copy.deepcopy(C.MESSAGES), copy.deepcopy(C.MESSAGES)


def _print_row(label: str, s: dict[str, float]) -> None:
    print(f"    {label:44s} p50 {C.fmt_us(s['p50']):>10s}  p90 {C.fmt_us(s['p90']):>10s}  "
          f"p99 {C.fmt_us(s['p99']):>10s}  max {C.fmt_us(s['max']):>10s}  (n={s['n']})")


def _diff(tracked: dict[str, float], bare: dict[str, float]) -> dict[str, float]:
    return {k: tracked[k] - bare[k] for k in ("p50", "p90", "p99", "max", "mean")}


def _noise(bare: list[int]) -> dict[str, float]:
    """How far apart two halves of the same bare samples (alternate calls) are at each percentile: a difference
    between tracked and bare smaller than this cannot be told from noise."""
    a, b = C.summary_us(bare[0::2]), C.summary_us(bare[1::2])
    return {k: abs(a[k] - b[k]) for k in ("p50", "p90", "p99", "mean")}


def _print_diff(label: str, d: dict[str, float]) -> None:
    print(f"    {label:44s} p50 {C.fmt_us(d['p50']):>10s}  p90 {C.fmt_us(d['p90']):>10s}  "
          f"p99 {C.fmt_us(d['p99']):>10s}  mean {C.fmt_us(d['mean']):>10s}")


def _print_noise(d: dict[str, float]) -> None:
    print(f"    {'noise: bare half vs bare half (+/-)':44s} p50 {C.fmt_us(d['p50']):>10s}  p90 {C.fmt_us(d['p90']):>10s}  "
          f"p99 {C.fmt_us(d['p99']):>10s}  mean {C.fmt_us(d['mean']):>10s}")


def _alternate_blocks(client: Any, calls: int, block: int, on: Callable[[], None], off: Callable[[], None]
                      ) -> tuple[list[int], list[int]]:
    """Blocks of ``block`` bare calls and ``block`` calls with the feature on, order swapped every round."""
    bare: list[int] = []
    traced: list[int] = []
    rounds = max(1, calls // block)
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for enabled in order:
            (on if enabled else off)()
            target = traced if enabled else bare
            for _ in range(block):
                _timed_bare(client, target)
    off()
    return bare, traced


# --------------------------------------------------------------------------------------------- variants
def run_mltrack(args: argparse.Namespace, client: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"variant": "mltrack"}
    # Phase 0: bare calls before mltrack is even imported (no writer thread anywhere).
    pristine: list[int] = []
    for _ in range(args.calls // 2):
        _timed_bare(client, pristine)
    result["bare_pristine"] = C.summary_us(pristine)

    import mltrack

    with mltrack.track_llm_context("bench-warmup") as tracker:
        for _ in range(args.warmup):
            tracker.log_prompt_response(C.MESSAGES, _call(client))
    mltrack.flush(60)

    bare: list[int] = []
    tracked: list[int] = []
    logged: list[int] = []
    control: list[int] = []
    pending: list[int] = []
    responses: list[Any] = []
    gc.collect()
    started = time.perf_counter()
    with mltrack.track_llm_context("bench-latency", tags={"benchmark": "latency"}) as tracker:
        for i in range(args.calls):
            if i % 2:
                _timed_bare(client, bare)
                t0 = ns()
                _control()
                control.append(ns() - t0)
            t0 = ns()
            response = _call(client)
            t1 = ns()
            tracker.log_prompt_response(C.MESSAGES, response)
            t2 = ns()
            tracked.append(t2 - t0)
            logged.append(t2 - t1)
            if not i % 2:
                _timed_bare(client, bare)
                t0 = ns()
                _control()
                control.append(ns() - t0)
            if i % 25 == 0:
                pending.append(C.writer_pending() or 0)
            if len(responses) < 200:
                responses.append(response)
    loop_s = time.perf_counter() - started
    t0 = time.perf_counter()
    flushed = mltrack.flush(300)
    result["flush_after_loop_s"] = time.perf_counter() - t0
    result["flushed"] = flushed
    result["loop_s"] = loop_s
    result["bare"] = C.summary_us(bare)
    result["tracked"] = C.summary_us(tracked)
    result["direct"] = C.summary_us(logged)
    result["control"] = C.summary_us(control)
    result["diff"] = _diff(result["tracked"], result["bare"])
    result["noise"] = _noise(bare)
    result["writer_busy_fraction"] = sum(1 for p in pending if p > 0) / max(1, len(pending))
    result["writer_pending_max"] = max(pending or [0])
    result["metric_rows_written"] = C.count_rows(Path(args.db), "metrics")

    # Phase 1b: the caller reads the returned record at once (its cost): the call is priced then, on this thread,
    # together with any earlier call of the run still waiting for the writer. Reported, not a verdict.
    read_at_once: list[int] = []
    with mltrack.track_llm_context("bench-read-record", tags={"benchmark": "latency-read"}) as tracker:
        for _ in range(args.calls // 2):
            response = _call(client)
            t1 = ns()
            tracker.log_prompt_response(C.MESSAGES, response).total_cost  # noqa: B018 - the read is the point
            read_at_once.append(ns() - t1)
    mltrack.flush(300)
    result["direct_read"] = C.summary_us(read_at_once)

    # Phase 2: the logging call back to back, writer saturated (no HTTP between calls); paced so the queue
    # never overflows (a full queue would measure the drop path instead). Real SDK responses, reused.
    queue_size = int(mltrack.get_config().get("writer_queue_size") or 10000)
    high, low = max(1, int(queue_size * 0.8)), max(0, queue_size // 4)
    saturated: list[int] = []
    control_hot: list[int] = []
    for _ in range(min(args.calls, 2000)):
        t0 = ns()
        _control()
        control_hot.append(ns() - t0)
    result["control_hot"] = C.summary_us(control_hot)
    with mltrack.track_llm_context("bench-saturated", tags={"benchmark": "latency-saturated"}) as tracker:
        for i in range(args.calls):
            if i % 50 == 0 and (C.writer_pending() or 0) > high:
                while (C.writer_pending() or 0) > low:
                    time.sleep(0.001)
            response = responses[i % len(responses)]
            t0 = ns()
            tracker.log_prompt_response(C.MESSAGES, response)
            saturated.append(ns() - t0)
    mltrack.flush(300)
    result["direct_saturated"] = C.summary_us(saturated)
    result["dropped"] = C.writer_dropped()

    print(f"  mltrack (track_llm_context + log_prompt_response), {args.calls} tracked + {len(bare)} bare calls, "
          f"interleaved call by call; records waiting for the writer in {result['writer_busy_fraction']:.0%} of "
          f"samples (at most {result['writer_pending_max']}); {result['metric_rows_written']} metric rows written")
    _print_row("bare call, before mltrack was imported", result["bare_pristine"])
    _print_row("bare call (interleaved)", result["bare"])
    _print_row("tracked call (call + log_prompt_response)", result["tracked"])
    _print_diff("end-to-end difference tracked - bare", result["diff"])
    _print_noise(result["noise"])
    _print_row("direct: log_prompt_response alone", result["direct"])
    _print_row("direct, reading the record's cost at once", result["direct_read"])
    _print_row("direct, back-to-back (writer saturated)", result["direct_saturated"])
    _print_row("control: fixed pure-Python work after a call", result["control"])
    _print_row("control: same work, back-to-back", result["control_hot"])
    return result


def run_instrument(args: argparse.Namespace, client: Any) -> dict[str, Any]:
    import mltrack

    try:
        patched = mltrack.instrument("openai")
    except Exception as exc:  # noqa: BLE001 - not there yet is a result too
        patched, error = [], f"{type(exc).__name__}: {exc}"
    else:
        error = None
    if "openai" not in (patched or []):
        note = (f"mltrack.instrument('openai') is not available yet ({error or f'returned {patched!r}'}); "
                "skipped")
        print(f"  instrument: {note}")
        return {"variant": "instrument", "skipped": note}
    mltrack.uninstrument("openai")
    ctx = mltrack.track_llm_context("bench-instrument", tags={"benchmark": "latency-instrument"})
    ctx.__enter__()
    try:
        mltrack.instrument("openai")
        for _ in range(args.warmup):
            _call(client)
        mltrack.flush(60)
        bare, traced = _alternate_blocks(client, args.calls, args.block, lambda: mltrack.instrument("openai"),
                                         lambda: mltrack.uninstrument("openai"))
        # Phase 2: the direct cost, as for the decorator. mltrack's wrapper calls the SDK's own method through
        # CallScope.run; the benchmark hands it a callable that marks when that method starts and returns, so
        # mltrack's work before and after it (wrapt's dispatch included) is timed apart from the HTTP call.
        # The mark itself adds one Python call: the figure errs high, not low.
        from mltrack.instrumentation import _call as scope_module

        marks = [0, 0]
        original_run = scope_module.CallScope.run

        def marked_run(self: Any, wrapped: Any, call_args: tuple, call_kwargs: dict) -> Any:
            def sdk_method(*a: Any, **k: Any) -> Any:
                marks[0] = ns()
                try:
                    return wrapped(*a, **k)
                finally:
                    marks[1] = ns()

            return original_run(self, sdk_method, call_args, call_kwargs)

        mltrack.instrument("openai")
        scope_module.CallScope.run = marked_run  # type: ignore[method-assign]
        around: list[int] = []
        try:
            gc.collect()
            for _ in range(args.calls):
                t0 = ns()
                _call(client)
                t1 = ns()
                around.append((marks[0] - t0) + (t1 - marks[1]))
        finally:
            scope_module.CallScope.run = original_run  # type: ignore[method-assign]
            mltrack.uninstrument("openai")
    finally:
        ctx.__exit__(None, None, None)
    flushed = mltrack.flush(300)
    result = {"variant": "instrument", "bare": C.summary_us(bare), "tracked": C.summary_us(traced),
              "flushed": flushed, "metric_rows_written": C.count_rows(Path(args.db), "metrics"),
              "direct": C.summary_us(around)}
    result["diff"] = _diff(result["tracked"], result["bare"])
    result["noise"] = _noise(bare)
    print(f"  mltrack.instrument('openai'), blocks of {args.block} calls alternating on/off, "
          f"{result['metric_rows_written']} metric rows written")
    _print_row("bare call", result["bare"])
    _print_row("instrumented call", result["tracked"])
    _print_diff("end-to-end difference instrumented - bare", result["diff"])
    _print_noise(result["noise"])
    _print_row("direct: mltrack's work around the SDK method", result["direct"])
    return result


def run_decorator(args: argparse.Namespace, client: Any) -> dict[str, Any]:
    import mltrack

    marks = [0, 0]

    def ask(model: str, messages: Any) -> Any:
        marks[0] = ns()
        response = client.chat.completions.create(model=model, messages=messages)
        marks[1] = ns()
        return response

    def timed(fn: Callable[..., Any], around: list[int], total: list[int]) -> None:
        t0 = ns()
        fn(model=C.MODEL, messages=C.MESSAGES)
        t1 = ns()
        around.append((marks[0] - t0) + (t1 - marks[1]))
        total.append(t1 - t0)

    with mltrack.track_llm_context("bench-decorator", tags={"benchmark": "latency-decorator"}) as tracker:
        decorated = tracker.track_llm_call()(ask)
        for _ in range(args.warmup):
            decorated(model=C.MODEL, messages=C.MESSAGES)
        mltrack.flush(60)
        plain_around: list[int] = []
        plain_total: list[int] = []
        tracked_around: list[int] = []
        tracked_total: list[int] = []
        pending: list[int] = []
        gc.collect()
        for i in range(args.calls):
            order = (ask, decorated) if i % 2 else (decorated, ask)
            for fn in order:
                if fn is ask:
                    timed(ask, plain_around, plain_total)
                else:
                    timed(decorated, tracked_around, tracked_total)
            if i % 25 == 0:
                pending.append(C.writer_pending() or 0)
    flushed = mltrack.flush(300)
    result = {"variant": "decorator", "bare": C.summary_us(plain_total), "tracked": C.summary_us(tracked_total),
              "plain_around": C.summary_us(plain_around), "direct": C.summary_us(tracked_around),
              "flushed": flushed, "metric_rows_written": C.count_rows(Path(args.db), "metrics"),
              "writer_busy_fraction": sum(1 for p in pending if p > 0) / max(1, len(pending))}
    result["diff"] = _diff(result["tracked"], result["bare"])
    result["noise"] = _noise(plain_total)
    print(f"  tracker.track_llm_call() around a function making the call, {args.calls} decorated + {args.calls} "
          f"plain calls, interleaved call by call; records waiting for the writer in "
          f"{result['writer_busy_fraction']:.0%} of samples; {result['metric_rows_written']} metric rows written")
    _print_row("plain function", result["bare"])
    _print_row("decorated function", result["tracked"])
    _print_diff("end-to-end difference decorated - plain", result["diff"])
    _print_noise(result["noise"])
    _print_row("direct: the decorator's work around the call", result["direct"])
    _print_row("the same spots, plain function", result["plain_around"])
    return result


def run_autolog(args: argparse.Namespace, client: Any) -> dict[str, Any]:
    import mlflow

    try:  # MLflow prices each span with litellm when it is installed, importing it on the first traced call;
        import litellm  # noqa: F401 - importing it here, untimed, avoids a lazy import racing the exporter thread
    except ImportError:
        pass
    mlflow.set_tracking_uri(args.uri)
    mlflow.openai.autolog()
    for _ in range(args.warmup):
        _call(client)
    bare, traced = _alternate_blocks(client, args.calls, args.block, lambda: mlflow.openai.autolog(),
                                     lambda: mlflow.openai.autolog(disable=True))
    t0 = time.perf_counter()
    flush = getattr(mlflow, "flush_trace_async_logging", None)
    if flush is not None:
        try:
            flush(terminate=False)
        except TypeError:
            flush()
    result = {"variant": "autolog", "bare": C.summary_us(bare), "tracked": C.summary_us(traced),
              "trace_flush_s": time.perf_counter() - t0,
              "traces_written": C.count_rows(Path(args.db), "trace_info")}
    result["diff"] = _diff(result["tracked"], result["bare"])
    result["noise"] = _noise(bare)
    print(f"  mlflow.openai.autolog() (MLflow tracing), blocks of {args.block} calls alternating on/off, "
          f"{result['traces_written']} traces written (incl. {args.warmup} warm-up)")
    _print_row("bare call", result["bare"])
    _print_row("autologged call", result["tracked"])
    _print_diff("end-to-end difference autolog - bare", result["diff"])
    _print_noise(result["noise"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=("mltrack", "instrument", "decorator", "autolog"), required=True)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--template", required=True, help="a migrated SQLite store to copy")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--switch-interval", type=float,
                        help="sys.setswitchinterval(S) first (an experiment: how much of the tail is GIL hand-off)")
    parser.add_argument("--base-url", help="the fake server's OpenAI base URL (default: one in this process)")
    parser.add_argument("--result")
    args = parser.parse_args(argv)

    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    args.uri, db = C.fresh_store(Path(args.template), Path(args.workdir), f"latency-{args.variant}")
    args.db = str(db)
    os.environ["MLFLOW_TRACKING_URI"] = args.uri
    server = None if args.base_url else C.start_fake_server()
    try:
        client = C.openai_client(args.base_url or server.openai_base_url)
        for _ in range(args.warmup):
            _call(client)
        runner = {"mltrack": run_mltrack, "instrument": run_instrument, "decorator": run_decorator,
                  "autolog": run_autolog}[args.variant]
        result = runner(args, client)
    finally:
        if server is not None:
            server.stop()
    C.write_result(args.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
