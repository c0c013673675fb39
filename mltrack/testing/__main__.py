"""`python -m mltrack.testing`: run the fake LLM server in the foreground."""

from __future__ import annotations

import argparse
import sys

from ._server import FakeLLMServer


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, print the base URLs and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m mltrack.testing", description="Run mltrack's fake LLM server.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind; 0 picks a free one (default: 8765)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    server = FakeLLMServer(args.host, args.port, verbose=not args.quiet).start()
    print(f"Fake LLM server listening on {server.url}")
    print(f"  OPENAI_BASE_URL={server.openai_base_url}")
    print(f"  ANTHROPIC_BASE_URL={server.anthropic_base_url}")
    print(f"  AZURE_OPENAI_ENDPOINT={server.azure_endpoint}")
    print("Any API key works. Press Ctrl-C to stop.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
