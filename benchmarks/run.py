"""mltrack benchmarks: caller-thread latency, SQLite throughput, import time, memory under a dead store.

    python benchmarks/run.py            # full run, a few minutes
    python benchmarks/run.py --quick    # small counts, under a minute (a smoke test; figures are rough)
    python benchmarks/run.py --only latency,throughput --json results.json

Every section runs in fresh Python processes (MLFLOW_DISABLE_TELEMETRY=true, stores in a temporary folder that
is removed at the end) and measures its baseline in the same run, because the machine may be noisy: compare
the ratios and differences, not the absolute figures, across machines. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as C  # noqa: E402

SECTIONS = ("latency", "throughput", "import", "memory")
DEAD_HTTP = "http://127.0.0.1:9"  # the discard port: nothing listens there, connections are refused
DEAD_SQLITE = "sqlite:////proc/mltrack-bench-cannot-exist/mlflow.db"  # /proc takes no new folders

FULL = {"latency_calls": 2000, "autolog_calls": 1000, "latency_warmup": 200, "latency_block": 50,
        "throughput_calls": 20000, "throughput_rounds": 4, "import_runs": 7, "memory_calls": 100000,
        "memory_tracemalloc_calls": 30000, "memory_calibrate": 5000, "memory_queue": None, "memory_sqlite": True,
        "latency_skip": (), "memory_modes": ("rss", "tracemalloc")}
QUICK = {"latency_calls": 150, "autolog_calls": 150, "latency_warmup": 20, "latency_block": 15,
         "throughput_calls": 1000, "throughput_rounds": 2, "import_runs": 1, "memory_calls": 5000,
         "memory_tracemalloc_calls": 5000, "memory_calibrate": 1000, "memory_queue": 1000, "memory_sqlite": False,
         "latency_skip": ("autolog",), "memory_modes": ("rss",)}

TARGET_ADDED_P50_US = 50.0
TARGET_ADDED_P99_US = 1000.0
TARGET_THROUGHPUT_RATIO = 0.8


# ------------------------------------------------------------------------------------------------ plumbing
def child_env() -> dict[str, str]:
    """The environment of every benchmark process: telemetry off, mltrack from this checkout, no user config."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MLTRACK_") and k not in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME",
                                                          "MLFLOW_EXPERIMENT_ID", "MLFLOW_ENABLED")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # MLflow's tracing prices spans with litellm: no network here
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(C.REPO), os.environ.get("PYTHONPATH")) if p)
    return env


class Runner:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.failures: list[str] = []

    def run(self, name: str, script: str, args: list[str], timeout: float) -> dict[str, Any] | None:
        """Run one section process (its stdout goes to ours), return its JSON result or None on failure."""
        result_file = self.root / f"{name}.json"
        stderr_file = self.root / f"{name}.stderr"
        cmd = [sys.executable, str(HERE / script), *args, "--result", str(result_file)]
        # A journal folder of its own: a later process would otherwise adopt (and replay) what one left behind.
        env = {**self.env, "MLTRACK_JOURNAL_DIR": str(self.root / "journals" / name)}
        t0 = time.perf_counter()
        with open(stderr_file, "w", encoding="utf-8") as err:
            try:
                proc = subprocess.run(cmd, env=env, cwd=self.root, stderr=err, timeout=timeout, check=False)
                rc: int | str = proc.returncode
            except subprocess.TimeoutExpired:
                rc = f"timed out after {timeout:.0f} s"
        elapsed = time.perf_counter() - t0
        if rc != 0 or not result_file.exists():
            self.failures.append(name)
            tail = stderr_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
            print(f"  !! {name} failed ({rc}); last lines of its stderr:")
            for line in tail:
                print(f"     {line}")
            return None
        result = json.loads(result_file.read_text(encoding="utf-8"))
        result["_process_s"] = elapsed
        result["_ended_at"] = time.time()
        return result


def machine() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=C.REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    ns: dict[str, str] = {}
    exec((C.REPO / "mltrack" / "_version.py").read_text(encoding="utf-8"), ns)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    cpu_model = ""
    try:
        cpu_model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo", encoding="utf-8")
                          if line.startswith("model name")), "")
    except OSError:
        pass
    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "platform": platform.platform(), "cpu": cpu_model or platform.processor(), "cpu_count": os.cpu_count(),
        "cpus_usable": affinity, "python": f"{platform.python_implementation()} {platform.python_version()}",
        "mltrack": ns.get("__version__"), "mlflow": version("mlflow"), "openai": version("openai"),
        "sqlalchemy": version("SQLAlchemy"), "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "loadavg_start": _loadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def start_server(env: dict[str, str], root: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(HERE / "_fake_server.py")], env=env, cwd=root,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = proc.stdout.readline().strip() if proc.stdout else ""
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError("the fake LLM server did not start")
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    try:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def header(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 100 - len(title)))


def check(label: str, measured: float, target: float, unit: str = "µs", higher_is_better: bool = False,
          noise: float | None = None) -> dict:
    ok = measured >= target if higher_is_better else measured <= target
    sign = ">=" if higher_is_better else "<="
    shown = C.fmt_us(measured) if unit == "µs" else f"{measured:.2f}{unit}"
    if noise is not None:
        within = ", within noise" if abs(measured) <= noise else (", below zero: noise" if measured < 0 else "")
        shown += f" (noise +/- {C.fmt_us(noise)}{within})"
    target_shown = C.fmt_us(target) if unit == "µs" else f"{target:.2f}{unit}"
    print(f"  {C.verdict(ok)}  {label}: {shown}  (target {sign} {target_shown})")
    return {"label": label, "measured": shown, "target": f"{sign} {target_shown}", "ok": ok}


# ------------------------------------------------------------------------------------------------ sections
def section_latency(r: Runner, cfg: dict, template: Path, url: str) -> tuple[dict, list[dict]]:
    header("1. latency added on the caller's thread per tracked OpenAI call (writer busy, local SQLite)")
    print("  (every call: openai SDK -> mltrack's fake OpenAI server in another process, over loopback)")
    results: dict[str, Any] = {}
    common = ["--warmup", str(cfg["latency_warmup"]), "--block", str(cfg["latency_block"]), "--template",
              str(template), "--workdir", str(r.root), "--base-url", url]
    for variant in ("mltrack", "instrument", "decorator", "autolog"):
        if variant in cfg["latency_skip"]:
            print(f"  {variant}: skipped in --quick (importing MLflow's tracing stack takes longer than the whole "
                  "smoke test); the full run measures it")
            continue
        calls = cfg["autolog_calls"] if variant == "autolog" else cfg["latency_calls"]
        results[variant] = r.run(f"latency-{variant}", "bench_latency.py",
                                 ["--variant", variant, "--calls", str(calls), *common], timeout=900)
    checks: list[dict] = []
    m = results.get("mltrack")
    print("  verdicts, per entry point:")
    for key, name, direct in (("mltrack", "log_prompt_response()", "direct cost on the caller's thread"),
                              ("instrument", "instrument('openai')", "direct cost around the SDK method"),
                              ("decorator", "track_llm_call()", "direct cost around the call")):
        res = results.get(key)
        if not res or res.get("skipped"):
            continue
        for q, target in (("p50", TARGET_ADDED_P50_US), ("p99", TARGET_ADDED_P99_US)):
            checks.append(check(f"{name}: {direct}, {q}", res["direct"][q], target))
        for q, target in (("p50", TARGET_ADDED_P50_US), ("p99", TARGET_ADDED_P99_US)):
            checks.append(check(f"{name}: end-to-end added, {q}", res["diff"][q], target, noise=res["noise"][q]))
    if m and "direct_read" in m:
        print(f"  info: log_prompt_response with its record read at once (the call is priced then, on the caller's "
              f"thread): p50 {C.fmt_us(m['direct_read']['p50'])}, p99 {C.fmt_us(m['direct_read']['p99'])}")
    if m:
        print(f"  info: back-to-back (writer saturated) log_prompt_response p50 "
              f"{C.fmt_us(m['direct_saturated']['p50'])}, p99 {C.fmt_us(m['direct_saturated']['p99'])}; a fixed "
              f"piece of Python work runs {m['control']['p50'] / m['control_hot']['p50']:.1f}x slower right after "
              f"an HTTP call than back-to-back (control rows)")
    a = results.get("autolog")
    if a and m:
        print(f"  comparison: mlflow.openai.autolog() adds p50 {C.fmt_us(a['diff']['p50'])} / p99 "
              f"{C.fmt_us(a['diff']['p99'])} end to end; mltrack adds p50 {C.fmt_us(m['diff']['p50'])} / p99 "
              f"{C.fmt_us(m['diff']['p99'])}")
    return results, checks


def section_throughput(r: Runner, cfg: dict, template: Path, url: str) -> tuple[dict, list[dict]]:
    header("2. throughput persisted to local SQLite: mltrack vs MlflowClient.log_batch (same rows)")
    res = r.run("throughput", "bench_throughput.py",
                ["--calls", str(cfg["throughput_calls"]), "--rounds", str(cfg["throughput_rounds"]), "--template",
                 str(template), "--workdir", str(r.root), "--base-url", url], timeout=1800)
    checks: list[dict] = []
    if res:
        ok_rows = res["mltrack"]["metric_rows"] == res["log_batch"]["metric_rows"] and res["mltrack"]["flushed"]
        if not ok_rows:
            print("  !! row counts differ or the flush timed out: the comparison is not like for like")
        checks.append(check("mltrack metric rows/s ÷ log_batch metric rows/s", res["ratio"], TARGET_THROUGHPUT_RATIO,
                            unit="x", higher_is_better=True))
    return res or {}, checks


def section_import(r: Runner, cfg: dict) -> tuple[dict, list[dict]]:
    header("3. import time: python -c pass vs import mltrack vs import mlflow (fresh processes)")
    res = r.run("import", "bench_import.py", ["--runs", str(cfg["import_runs"]), "--workdir", str(r.root / "import")],
                timeout=900)
    checks: list[dict] = []
    if res:
        heavy = [m for m in res["heavy_modules_loaded"] if m in ("mlflow", "openai", "anthropic")]
        ok = not heavy
        added = res["stats"]["import mltrack"]["added_median_ms"]
        print(f"  {C.verdict(ok)}  `import mltrack` imports none of mlflow / openai / anthropic "
              f"(package docstring promise): {'yes' if ok else 'no: ' + ', '.join(heavy)}")
        print("  (the issue sets no number for import time; reported: "
              f"+{added:.0f} ms over a bare interpreter, {res['ratio_vs_mlflow']:.1%} of `import mlflow`)")
        checks.append({"label": "import mltrack pulls in no mlflow/openai/anthropic", "ok": ok,
                       "measured": f"+{added:.0f} ms (median), {res['ratio_vs_mlflow']:.1%} of import mlflow",
                       "target": "none imported"})
    return res or {}, checks


def args_quick(cfg: dict) -> bool:
    return cfg is QUICK


def section_memory(r: Runner, cfg: dict) -> tuple[dict, list[dict]]:
    header("4. memory under a dead store: bounded by writer_queue_size?")
    workdir = ["--workdir", str(r.root / "memory")]
    queue = ["--queue-size", str(cfg["memory_queue"])] if cfg["memory_queue"] else []
    results: dict[str, Any] = {}
    checks: list[dict] = []
    per_record: dict[str, float] = {}
    if cfg["memory_modes"] != ("rss", "tracemalloc"):
        print(f"  (--quick: {', '.join(cfg['memory_modes'])} only, {cfg['memory_calls']:,} calls, writer_queue_size "
              f"{cfg['memory_queue']:,}; the full run also measures the tracemalloc peak)")
    else:
        print(f"  (the tracemalloc run makes {cfg['memory_tracemalloc_calls']:,} calls: tracing every allocation makes "
              "each call several times slower, and memory is flat well before that)")
    for mode in cfg["memory_modes"]:
        res = r.run(f"memory-calibrate-{mode}", "bench_memory.py",
                    ["--calibrate", "--mode", mode, "--calls", str(cfg["memory_calibrate"]), "--exit-now", *workdir],
                    timeout=600)
        results[f"calibrate-{mode}"] = res
        if res and res.get("all_held"):
            per_record[mode] = res["bytes_per_record"]
    runs = [(f"http-{mode}", DEAD_HTTP, mode) for mode in cfg["memory_modes"]]
    if cfg["memory_sqlite"]:
        runs.append(("sqlite-rss", DEAD_SQLITE, "rss"))
    for name, uri, mode in runs:
        extra = ["--bytes-per-record", str(per_record[mode])] if mode in per_record else []
        timed_exit = name == "http-rss" and not args_quick(cfg)
        if not timed_exit:
            extra.append("--exit-now")  # the exit with a dead store is timed once, on the first run
        calls = cfg["memory_tracemalloc_calls"] if mode == "tracemalloc" else cfg["memory_calls"]
        res = r.run(f"memory-{name}", "bench_memory.py",
                    ["--uri", uri, "--mode", mode, "--calls", str(calls), *queue, *workdir, *extra], timeout=600)
        results[name] = res
        if not res:
            continue
        res["exit_s"] = res["_ended_at"] - res["finished_at"]
        if timed_exit:
            print(f"    the process then took {res['exit_s']:.1f} s to exit (mltrack's exit-time flush, store down)")
        what = "tracemalloc peak" if mode == "tracemalloc" else "RSS growth"
        bound = res.get("bound_bytes")
        target = f"<= {(1.1 * bound + 4 * C.MIB) / C.MIB:.1f} MiB and flat" if bound else "flat (last half <= +4 MiB)"
        worth = f" (~{res['records_worth']:,.0f} records)" if res.get("records_worth") else ""
        checks.append({"label": f"{what}, {res['calls']:,} calls, store {uri}", "ok": res["ok"],
                       "measured": f"{res['peak_growth_bytes'] / C.MIB:.1f} MiB{worth}, "
                                   f"{res['late_growth_bytes'] / C.MIB:+.1f} MiB in the last half",
                       "target": f"{target}; queue {res['queue_size']:,} records"})
    return results, checks


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test in under a minute")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (stores, logs)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    cfg = QUICK if args.quick else FULL
    started = time.perf_counter()

    info = machine()
    print(f"mltrack benchmarks ({'quick' if args.quick else 'full'} run) - {info['date']}")
    print(f"  machine: {info['platform']}; {info['cpu']}; {info['cpu_count']} CPUs "
          f"({info['cpus_usable']} usable); load average at start {info['loadavg_start']}")
    print(f"  python {info['python']}; mltrack {info['mltrack']} @ {info['commit']}; mlflow {info['mlflow']}; "
          f"openai {info['openai']}; SQLAlchemy {info['sqlalchemy']}")

    root = Path(tempfile.mkdtemp(prefix="mltrack-bench-"))
    env = child_env()
    env["MLTRACK_JOURNAL_DIR"] = str(root / "journal")  # never the user's cache folder
    runner = Runner(root, env)
    results: dict[str, Any] = {"machine": info, "mode": "quick" if args.quick else "full", "config": cfg}
    checks: dict[str, list[dict]] = {}
    server = None
    try:
        template = root / "template" / "mlflow.db"
        url = ""
        if {"latency", "throughput"} & set(only):
            subprocess.run([sys.executable, str(HERE / "_common.py"), "make-template", str(template)], env=env,
                           cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
            server, url = start_server(env, root)
        steps = [("latency", "1. latency", lambda: section_latency(runner, cfg, template, url)),
                 ("throughput", "2. throughput", lambda: section_throughput(runner, cfg, template, url)),
                 ("import", "3. import", lambda: section_import(runner, cfg)),
                 ("memory", "4. memory", lambda: section_memory(runner, cfg))]
        for name, title, step in steps:
            if name not in only:
                continue
            if name == "import" and server is not None:  # nothing after this needs the fake server
                stop_server(server)
                server = None
            t0 = time.perf_counter()
            results[name], checks[title] = step()
            results[name + "_s"] = time.perf_counter() - t0
            print(f"  ({name}: {results[name + '_s']:.0f} s)")
    finally:
        if server is not None:
            stop_server(server)
        if args.keep:
            print(f"\n(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)

    info["loadavg_end"] = _loadavg()
    total = time.perf_counter() - started
    header("summary")
    for section, rows in checks.items():
        for row in rows:
            print(f"  {C.verdict(row['ok'])}  {section:14s} {row['label']}: {row['measured']}  (target {row['target']})")
    for name in runner.failures:
        print(f"  ERROR {name}: the section did not complete (see above)")
    print(f"  total {total:.0f} s; load average at end {info['loadavg_end']}")
    results["checks"] = checks
    results["total_s"] = total
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 2 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())
