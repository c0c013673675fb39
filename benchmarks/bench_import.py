"""Section 3: ``import mltrack`` time vs. a bare interpreter vs. ``import mlflow`` (fresh subprocesses).

Each statement runs in a new ``python -c`` process, ``--runs`` times (round-robin, after one discarded warm-up
round when runs > 1); best and median wall times are reported. mltrack is imported from a byte-compiled copy
of the checkout in the work folder, as from an installed wheel (the checkout itself is not written to, and
``PYTHONDONTWRITEBYTECODE`` would otherwise make every run recompile it); installed packages use their own
byte code. ``python -X importtime -c "import mltrack"`` gives the modules that cost most.
Usage (normally run by run.py): python benchmarks/bench_import.py --runs 7 --workdir DIR
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

STATEMENTS = {
    "python -c pass": "pass",
    "import mltrack": "import mltrack",
    "import mlflow": "import mlflow",
    "import openai": "import openai",
}
HEAVY = ("mlflow", "openai", "anthropic", "sqlalchemy", "pandas", "numpy", "tiktoken")


def _compiled_copy(workdir: Path) -> Path:
    """mltrack (and its pricing data) copied into ``workdir/src`` and byte-compiled there."""
    src = workdir / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(C.REPO / "mltrack", src / "mltrack", ignore=shutil.ignore_patterns("__pycache__"))
    if (C.REPO / "pricing").is_dir():
        shutil.copytree(C.REPO / "pricing", src / "pricing")
    compileall.compile_dir(str(src / "mltrack"), quiet=1)
    return src


def _env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != C.REPO]
    env["PYTHONPATH"] = os.pathsep.join([str(src), *rest])
    return env


def _time(code: str, env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _importtime(env: dict[str, str], cwd: Path) -> list[tuple[int, int, int, str]]:
    """(self us, cumulative us, depth, module) of every import done by ``import mltrack`` itself (the
    interpreter's own start-up imports, e.g. ``site``, are left out)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mltrack"], env=env, cwd=cwd,
                          check=True, capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, raw = line[len("import time:"):].split("|", 2)
        name = raw[1:]  # one space after the bar, then two spaces per nesting level
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((int(self_us), int(cumulative_us), depth, name.strip()))
    end = next((i for i, r in enumerate(rows) if r[2] == 0 and r[3] == "mltrack"), len(rows) - 1)
    start = max((i for i in range(end) if rows[i][2] == 0), default=-1) + 1
    return rows[start:end + 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--result")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = _env(_compiled_copy(workdir))
    where = subprocess.run([sys.executable, "-c", "import mltrack; print(mltrack.__file__)"], env=env, cwd=workdir,
                           check=True, capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(workdir)):
        raise SystemExit(f"expected mltrack from the compiled copy in {workdir}, got {where}")

    times: dict[str, list[float]] = {label: [] for label in STATEMENTS}
    if args.runs > 1:
        for code in STATEMENTS.values():  # warm-up round: the page cache
            _time(code, env, workdir)
    for _ in range(args.runs):  # round-robin, so drift on a noisy machine hits every statement alike
        for label, code in STATEMENTS.items():
            times[label].append(_time(code, env, workdir))
    stats = {label: {"best_ms": min(v) * 1000, "median_ms": statistics.median(v) * 1000, "runs": len(v)}
             for label, v in times.items()}
    base_best = stats["python -c pass"]["best_ms"]
    base_median = stats["python -c pass"]["median_ms"]
    for s in stats.values():
        s["added_best_ms"] = s["best_ms"] - base_best
        s["added_median_ms"] = s["median_ms"] - base_median

    probe = ("import json, sys, mltrack; print(json.dumps(sorted(m for m in %r if m in sys.modules)))" % (HEAVY,))
    heavy_loaded = json.loads(subprocess.run([sys.executable, "-c", probe], env=env, cwd=workdir, check=True,
                                             capture_output=True, text=True).stdout)
    rows = _importtime(env, workdir)
    total_us = rows[-1][1] if rows else 0
    by_self = sorted(rows, key=lambda r: r[0], reverse=True)[:10]
    top_level = sorted((r for r in rows if r[2] == 1), key=lambda r: r[1], reverse=True)[:10]

    mlflow_added = stats["import mlflow"]["added_median_ms"]
    result = {"stats": stats, "heavy_modules_loaded": heavy_loaded, "importtime_total_ms": total_us / 1000,
              "importtime_top_self": by_self, "importtime_top_level": top_level,
              "ratio_vs_mlflow": stats["import mltrack"]["added_median_ms"] / mlflow_added if mlflow_added else None}

    warm = " (after 1 warm-up)" if args.runs > 1 else ""
    print(f"  wall time of a fresh `python -c ...`, {args.runs} runs each{warm}, best / median:")
    for label, s in stats.items():
        print(f"    {label:18s} best {s['best_ms']:7.1f} ms  median {s['median_ms']:7.1f} ms   "
              f"added over `pass`: best {s['added_best_ms']:7.1f} ms  median {s['added_median_ms']:7.1f} ms")
    print(f"  `import mltrack` adds {result['ratio_vs_mlflow']:.1%} of what `import mlflow` adds (medians)")
    print(f"  heavy modules imported by `import mltrack`: {heavy_loaded or 'none'} (of {', '.join(HEAVY)})")
    print(f"  python -X importtime -c 'import mltrack': {total_us / 1000:.1f} ms in all; what mltrack imports "
          "directly, by cumulative time:")
    for self_us, cum_us, _, name in top_level:
        print(f"    {cum_us / 1000:7.1f} ms  {name}")
    print("  modules with the largest self time under `import mltrack`:")
    for self_us, cum_us, _, name in by_self:
        print(f"    {self_us / 1000:7.1f} ms  {name}")
    C.write_result(args.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
