"""The fake LLM HTTP server: a ThreadingHTTPServer in a daemon thread speaking OpenAI and Anthropic."""

from __future__ import annotations

import itertools
import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlsplit

from . import _openai_wire
from ._routes import match
from ._script import DEFAULT_SCRIPT, ScriptedReply
from ._wire import Context, JsonReply, StreamReply, dumps

__all__ = ["FakeLLMServer", "RecordedRequest"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake server received."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    body: bytes = b""


class _Dropped(Exception):
    """The connection was closed on purpose (drop_after_chunks) or by the client."""


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its FakeLLMServer."""

    daemon_threads = True
    allow_reuse_address = True
    owner: "FakeLLMServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Print handler errors only when verbose (clients vanishing is normal here)."""
        if self.owner.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, records it, and writes the fake provider's answer."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: without this, each reply waits ~40 ms
    server: _HTTPServer

    def setup(self) -> None:
        """Track the connection so stop() can close it."""
        super().setup()
        self.server.owner._connections.add(self.connection)

    def handle(self) -> None:
        """Serve keep-alive requests until the client goes away, quietly."""
        try:
            super().handle()
        except OSError:
            self.close_connection = True

    def finish(self) -> None:
        """Forget the connection."""
        self.server.owner._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Log to stderr only when the server is verbose."""
        if self.server.owner.verbose:
            sys.stderr.write(f"fake-llm: {format % args}\n")

    def do_GET(self) -> None:
        """Health check; everything else is an unknown URL."""
        self._handle()

    def do_POST(self) -> None:
        """Provider endpoints."""
        self._handle()

    def do_DELETE(self) -> None:
        """Unknown URL."""
        self._handle()

    def _handle(self) -> None:
        """Record, route, script and answer one request."""
        owner = self.server.owner
        request = self._read()
        owner._record(request)
        try:
            self._answer(owner, request)
        except _Dropped:
            self.close_connection = True

    def _read(self) -> RecordedRequest:
        """Read the request into a RecordedRequest."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        url = urlsplit(self.path)
        return RecordedRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            json=parsed,
            body=raw,
        )

    def _answer(self, owner: "FakeLLMServer", request: RecordedRequest) -> None:
        """Pick the reply for a recorded request and send it."""
        if request.method == "GET" and request.path.rstrip("/") in ("", "/health"):
            self._send_json(JsonReply(200, {"status": "ok"}))
            return
        route = match(request.method, request.path)
        if route is None:
            self._send_json(_openai_wire.not_found(request.method, request.path))
            return
        body = request.json
        if not isinstance(body, dict):
            self._send_json(route.bad_request("The request body must be a JSON object."))
            return
        missing = route.missing(body)
        if missing:
            self._send_json(route.bad_request(f"Missing required parameter: '{missing}'."))
            return
        script = owner._next_script()
        ctx = Context(seq=owner._next_seq(), created=int(time.time()), deployment=route.deployment)
        if script.delay_s:
            time.sleep(script.delay_s)
        if script.is_error:
            self._send_json(route.error(int(script.status or 500), script, ctx))
            return
        reply = route.build(body, script, ctx)
        if isinstance(reply, StreamReply):
            self._send_stream(reply, script)
        elif script.drop_after_chunks is not None:
            self._drop()
        else:
            self._send_json(reply)

    def _send_head(self, status: int, headers: Mapping[str, str]) -> None:
        """Status line and headers."""
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
        except OSError as exc:
            raise _Dropped from exc

    def _write(self, data: bytes) -> None:
        """Write bytes, turning a vanished client into _Dropped."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as exc:
            raise _Dropped from exc

    def _send_json(self, reply: JsonReply) -> None:
        """A complete JSON response with Content-Length."""
        payload = dumps(reply.body).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(payload)), **reply.headers}
        self._send_head(reply.status, headers)
        self._write(payload)

    def _send_stream(self, reply: StreamReply, script: ScriptedReply) -> None:
        """An SSE response, one HTTP chunk per event; delays and drops apply to content events."""
        headers = {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
            **reply.headers,
        }
        self._send_head(200, headers)
        drop_at = script.drop_after_chunks
        sent = 0
        for event in reply.events:
            if event.content:
                if drop_at is not None and sent >= drop_at:
                    self._drop()
                if script.chunk_delay_s:
                    time.sleep(script.chunk_delay_s)
            data = event.encode()
            self._write(b"%x\r\n%s\r\n" % (len(data), data))
            if event.content:
                sent += 1
                if drop_at is not None and sent >= drop_at:
                    self._drop()
        self._write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Close the socket abruptly, mid-response."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Dropped


class FakeLLMServer:
    """A local fake of the OpenAI, Azure OpenAI and Anthropic HTTP APIs for tests and offline demos."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        """Configure (not start) a server; port 0 picks a free port."""
        self.host = host
        self.verbose = verbose
        self._requested_port = port
        self._lock = threading.Lock()
        self._scripts: deque[ScriptedReply] = deque()
        self._requests: list[RecordedRequest] = []
        self._seq = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "FakeLLMServer":
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self._requested_port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.name = f"fake-llm-server:{self.port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Start, then block until interrupted (for `python -m mltrack.testing`)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def __enter__(self) -> "FakeLLMServer":
        """Start on entering a `with` block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving a `with` block."""
        self.stop()

    # ------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not running; call start() or use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Root URL, e.g. http://127.0.0.1:PORT."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """base_url for openai.OpenAI / AsyncOpenAI."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """base_url for anthropic.Anthropic / AsyncAnthropic."""
        return self.url

    @property
    def azure_endpoint(self) -> str:
        """azure_endpoint for openai.AzureOpenAI / AsyncAzureOpenAI."""
        return self.url

    # ------------------------------------------------------------ scripting and recording

    def queue(self, *replies: ScriptedReply) -> "FakeLLMServer":
        """Queue scripted replies; each LLM request takes the oldest one (FIFO)."""
        for reply in replies:
            if not isinstance(reply, ScriptedReply):
                raise TypeError(f"queue() takes ScriptedReply objects, not {type(reply).__name__}")
        with self._lock:
            self._scripts.extend(replies)
        return self

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        with self._lock:
            return len(self._scripts)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest | None:
        """The most recent request, or None."""
        with self._lock:
            return self._requests[-1] if self._requests else None

    def clear(self) -> None:
        """Forget recorded requests and queued replies."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()

    def _record(self, request: RecordedRequest) -> None:
        """Append a received request."""
        with self._lock:
            self._requests.append(request)

    def _next_script(self) -> ScriptedReply:
        """The oldest queued reply, else the default one."""
        with self._lock:
            return self._scripts.popleft() if self._scripts else DEFAULT_SCRIPT

    def _next_seq(self) -> int:
        """A fresh number for response ids."""
        with self._lock:
            return next(self._seq)
