"""Run mltrack's fake OpenAI server in its own process for the benchmarks; prints its OpenAI base URL.

A separate process keeps the server's threads off the benchmarked interpreter's GIL (a real LLM API is
remote too). It stops when its standard input closes (run.py holds the pipe) or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main() -> int:
    server = C.start_fake_server()
    try:
        print(server.openai_base_url, flush=True)
        try:
            sys.stdin.read()  # returns when the parent closes the pipe or exits
        except KeyboardInterrupt:
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
