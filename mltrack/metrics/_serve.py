"""Serving a registry's metrics over HTTP (prometheus-client's own server thread), once per address and port."""

from __future__ import annotations

import threading
from typing import Any

from mltrack.metrics._instruments import import_client

_servers: dict[tuple[str, int], tuple[Any, Any, Any]] = {}  # (addr, port) -> (server, thread, registry)
_lock = threading.Lock()


def serve(registry: Any, addr: str, port: int) -> None:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a daemon thread; a second call for the same
    address, port and registry does nothing. OSError (naming the address) when the port cannot be bound."""
    client = import_client()
    with _lock:
        running = _servers.get((addr, port))
        if running is not None:
            if running[2] is not registry:
                raise ValueError(f"mltrack: {addr}:{port} already serves another Prometheus registry")
            return
        try:
            server, thread = client.start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            raise OSError(exc.errno, f"mltrack: cannot serve Prometheus metrics on {addr}:{port}: {exc}") from exc
        _servers[(addr, port)] = (server, thread, registry)


def stop_all() -> None:
    """Stop every server this process started (tests; servers are daemon threads otherwise)."""
    with _lock:
        running = list(_servers.values())
        _servers.clear()
    for server, thread, _ in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
