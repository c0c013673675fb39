"""Worker pools: 4 "fork" and 4 "spawn" multiprocessing workers x 50 calls each, untracked and tracked, measured
in the same run; and flush() with a few records pending.

Each variant runs as a fresh script (what a user runs): the untracked one makes the same calls to the real openai
SDK against mltrack's fake server; the tracked one has ``mltrack.instrument("openai")`` in every worker and
``@mltrack.track`` around each task. Wall time from start to the end of the interpreter (mltrack writes at exit),
its ratio against the untracked script (target <= 1.5x), and every call counted in the store afterwards.

    python benchmarks/bench_pool.py [--calls 50] [--rounds 50] [--store sqlite|server]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SCRIPT = r"""
import multiprocessing, os, sys
sys.path.insert(0, os.environ["BENCH_DIR"])
import _common as C
TRACKED = os.environ["BENCH_TRACKED"] == "1"
if TRACKED:
    import mltrack
    mltrack.instrument("openai")

def task(n):
    try:
        return _task(n)
    except BaseException as exc:  # an SDK exception may not unpickle in the parent: Pool.map would then hang
        return f"{type(exc).__name__}: {exc}"

def _task(n):
    client = C.openai_client(os.environ["BENCH_BASE_URL"])
    def calls():
        for _ in range(n):
            client.chat.completions.create(model=C.MODEL, messages=C.MESSAGES)
    if TRACKED:
        mltrack.track(name="pool-task")(calls)()
    else:
        calls()
    return os.getpid()

if __name__ == "__main__":
    n = int(os.environ["BENCH_CALLS"])
    for method in ("fork", "spawn"):
        with multiprocessing.get_context(method).Pool(4) as pool:
            errors = [r for r in pool.map(task, [n] * 4, chunksize=1) if isinstance(r, str)]
            if errors:
                sys.exit(f"{method} workers failed: {errors}")
"""

FLUSH = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["BENCH_DIR"])
import _common as C
import mltrack
samples = []
mltrack.LLMTracker(model=C.MODEL).log_prompt_response("warm", "up", token_usage={"prompt_tokens": 1, "completion_tokens": 1})
mltrack.flush(120)
for i in range(int(os.environ["BENCH_ROUNDS"])):
    with mltrack.track_llm_context("flush-bench", model=C.MODEL) as tracker:
        for _ in range(3):
            tracker.log_prompt_response("p", "r", token_usage={"prompt_tokens": 5, "completion_tokens": 2})
    t = time.perf_counter_ns()
    assert mltrack.flush(60)
    samples.append(time.perf_counter_ns() - t)
print(json.dumps(C.summary_us(samples)))
"""


def _run(script: str, env: dict[str, str], cwd: Path, timeout: float = 300.0) -> float:
    path = cwd / "pool_script.py"  # a file, not ``python -c``: "spawn" workers import the main module by its path
    path.write_text(script)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(path)], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)  # a script that hangs fails the benchmark instead of holding it
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return time.perf_counter() - started


def _calls_in(db: Path, experiment: str) -> int:
    if not db.exists():
        return 0
    return max(0, C.count_rows(db, "metrics m JOIN runs r ON m.run_uuid = r.run_uuid JOIN experiments e ON "
                                   f"r.experiment_id = e.experiment_id WHERE m.key = 'llm.calls' AND e.name = '{experiment}'"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=50, help="flush() measurements")
    parser.add_argument("--store", choices=("sqlite", "server"), default="sqlite",
                        help="MLflow's default SQLite file, or a local `mlflow server` (SQLite-backed)")
    args = parser.parse_args(argv)
    fake = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_fake_server.py"))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    base_url = fake.stdout.readline().strip()
    tmp = Path(tempfile.mkdtemp(prefix="mltrack-bench-pool-"))
    server = None
    try:
        env = dict(os.environ, BENCH_DIR=str(Path(__file__).parent), BENCH_BASE_URL=base_url,
                   BENCH_CALLS=str(args.calls))
        env.pop("MLFLOW_TRACKING_URI", None)  # MLflow's default: ./mlflow.db in the script's folder
        db = tmp / "mlflow.db"
        if args.store == "server":
            from mltrack.testing._mlflow_server import MlflowServer

            db = tmp / "server.db"
            server = MlflowServer(f"sqlite:///{db}", tmp / "artifacts", log_path=tmp / "server.log").start()
            env["MLFLOW_TRACKING_URI"] = server.uri
        untracked = _run(SCRIPT, dict(env, BENCH_TRACKED="0"), tmp)
        # The writer process lowers its scheduling priority (its own and its session's autogroup's): the variant
        # without that shows what it is worth. Each tracked variant starts a writer of its own (own journal folder).
        expected = 8 * args.calls

        def tracked_run(experiment: str, **extra: str) -> tuple[float, int, int, float]:
            """Run the tracked script; then wait until every call landed and its writer process left (so that it
            does not run on into the next variant). Returns (seconds, calls at the end, calls later, how much later)."""
            journal_dir = tmp / f"journal-{experiment}"
            seconds = _run(SCRIPT, dict(env, BENCH_TRACKED="1", MLTRACK_EXPERIMENT=experiment,
                                        MLTRACK_JOURNAL_DIR=str(journal_dir), **extra), tmp)
            at_end = _calls_in(db, experiment)
            waited = time.perf_counter()
            later = at_end  # what the workers left on disk is written by the shared writer after them
            while later < expected and time.perf_counter() - waited < 60:
                time.sleep(0.2)
                later = _calls_in(db, experiment)
            settled = time.perf_counter() - waited
            from mltrack.writer import journal

            while journal.is_held(journal_dir / "server.lock") and time.perf_counter() - waited < 120:
                time.sleep(0.2)
            return seconds, at_end, later, settled

        # The writer process lowers its scheduling priority (its own and its session's autogroup's): the variant
        # without that shows what it is worth. Each variant starts a writer of its own (own journal folder).
        tracked, calls, later, settled = tracked_run("pool")
        not_nice = tracked_run("pool-not-nice", _MLTRACK_BENCH_WRITER_NOT_NICE="1")[0]
        ratio = tracked / untracked
        print(f"worker pools, 4 fork + 4 spawn workers x {args.calls} calls "
              f"({'a local mlflow server' if server else 'SQLite default store'})")
        print(f"  untracked {untracked:6.2f} s   tracked {tracked:6.2f} s   ratio {ratio:.2f}x (target <= 1.5x) "
              f"{C.verdict(ratio <= 1.5)}")
        print(f"  the writer process at normal priority instead: {not_nice:6.2f} s, {not_nice / untracked:.2f}x")
        print(f"  calls in the store when the script ended: {calls} of {expected}; {later} of {expected} "
              f"{settled:.1f} s later {C.verdict(later == expected)}")

        flush_uri = server.uri if server else f"sqlite:///{tmp / 'flush.db'}"
        flush_env = dict(env, MLFLOW_TRACKING_URI=flush_uri, BENCH_ROUNDS=str(args.rounds),
                         MLTRACK_JOURNAL_DIR=str(tmp / "journal-flush"))
        result = subprocess.run([sys.executable, "-c", FLUSH], env=flush_env, cwd=tmp, capture_output=True,
                                text=True, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        import json

        s = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"flush() with one run (start, 3 calls, end) pending, {args.rounds} rounds: p50 "
              f"{C.fmt_us(s['p50'])}, p90 {C.fmt_us(s['p90'])} (target p50 <= 100 ms) {C.verdict(s['p50'] <= 100_000)}")
    finally:
        if server is not None:
            server.stop()
        fake.stdin.close()
        fake.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
