"""Side by side, in one run: what tracking adds per call and what the process tree weighs, per way of writing.

Modes (each in a fresh interpreter, the real openai SDK against mltrack's fake server in a process of its own,
``--calls`` calls inside one run): a bare call; mltrack with its shared writer process (the default); mltrack
with ``writer_process: false`` (a thread of the application writes); ``mlflow.openai.autolog()``. Stores: a
SQLite file, and a local ``mlflow server`` (SQLite backend, proxied artifacts). Prints per mode: the call's p50
and the p50 added over the bare call of the same store, p99, the RSS of the application's process tree (it and
every process it started: mltrack's writer process counts) after the calls are written, and the seconds until
everything is written.

    python benchmarks/bench_modes.py [--calls 1200] [--stores sqlite,server]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODES = ("bare", "mltrack", "mltrack-thread", "autolog")

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["BENCH_DIR"])
import _common as C
mode, n, base_url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode.startswith("mltrack"):
    import mltrack
    if mode == "mltrack-thread":
        mltrack.configure(writer_process=False)
    mltrack.instrument("openai")
elif mode == "autolog":
    import mlflow
    mlflow.openai.autolog()
client = C.openai_client(base_url)
samples = []
def run():
    for i in range(n):
        t = time.perf_counter_ns()
        client.chat.completions.create(model=C.MODEL, messages=C.MESSAGES)
        samples.append(time.perf_counter_ns() - t)
for _ in range(20):  # warm up: connections, imports, the writer
    client.chat.completions.create(model=C.MODEL, messages=C.MESSAGES)
if mode.startswith("mltrack"):
    mltrack.flush(120)
    with mltrack.track_llm_context("bench", model=C.MODEL):
        run()
elif mode == "autolog":
    import mlflow
    with mlflow.start_run(run_name="bench"):
        run()
else:
    run()
t = time.perf_counter()
if mode.startswith("mltrack"):
    ok = mltrack.flush(600)
elif mode == "autolog":
    import mlflow
    mlflow.flush_trace_async_logging()
    ok = True
else:
    ok = True
written_s = time.perf_counter() - t
print(json.dumps({"summary": C.summary_us(samples), "rss": C.tree_rss_bytes(), "written_s": written_s, "ok": ok}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_mlflow_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                             "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("mlflow server did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1200)
    parser.add_argument("--stores", default="sqlite,server")
    args = parser.parse_args(argv)
    fake = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_fake_server.py"))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    base_url = fake.stdout.readline().strip()
    tmp = Path(tempfile.mkdtemp(prefix="mltrack-bench-modes-"))
    server = None
    try:
        stores: list[tuple[str, str]] = []
        for name in args.stores.split(","):
            if name == "sqlite":
                template = C.make_template_store(tmp / "template.db")
                stores.append(("sqlite", C.fresh_store(template, tmp / "sqlite", "bench")[0]))
            elif name == "server":
                server, uri = _start_mlflow_server(tmp / "server")
                stores.append(("mlflow server", uri))
        for store_name, uri in stores:
            print(f"\n{store_name} ({uri}), {args.calls} calls per mode")
            print(f"  {'mode':<16}{'call p50':>11}{'added p50':>11}{'call p99':>11}{'tree RSS':>11}{'written in':>12}")
            bare_p50 = None
            for mode in MODES:
                env = dict(os.environ, MLFLOW_TRACKING_URI=uri, BENCH_DIR=str(Path(__file__).parent),
                           MLTRACK_JOURNAL_DIR=str(tmp / f"journal-{mode}-{store_name[:6]}"))
                result = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.calls), base_url], env=env,
                                        cwd=tmp, capture_output=True, text=True, timeout=1800)
                if result.returncode != 0:
                    print(f"  {mode:<16} failed: {result.stderr[-500:]}")
                    continue
                data = json.loads(result.stdout.strip().splitlines()[-1])
                s = data["summary"]
                bare_p50 = s["p50"] if mode == "bare" else bare_p50
                added = "–" if mode == "bare" or bare_p50 is None else C.fmt_us(s["p50"] - bare_p50)
                print(f"  {mode:<16}{C.fmt_us(s['p50']):>11}{added:>11}{C.fmt_us(s['p99']):>11}"
                      f"{data['rss'] / C.MIB:>8.0f} MiB{data['written_s']:>10.2f} s" + ("" if data["ok"] else " (not all)"))
    finally:
        fake.stdin.close()
        fake.wait(10)
        if server is not None:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
