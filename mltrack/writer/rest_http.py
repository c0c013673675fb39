"""HTTP for the light MLflow client: MLflow's connection settings, kept-alive connections, error codes.

Standard library only. MLflow's settings are read from the environment at each request (a rotated token
takes effect at once): ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (Basic, also from
``~/.mlflow/credentials``; they win over the token, as in MLflow), ``MLFLOW_TRACKING_TOKEN`` (Bearer),
``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``
and ``MLFLOW_HTTP_REQUEST_TIMEOUT``; proxies from ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` (as requests,
hence MLflow's client, uses them). The ``Authorization`` header is built per request and never kept, logged
or put in an error message. Connections: one per thread and host, kept alive; a forked child opens its own; a
request on a kept-alive connection that the server closed meanwhile is sent again once on a new one (unless
``idempotent`` is False). A server that cannot be reached raises an ``OSError``.
"""

from __future__ import annotations

import base64
import configparser
import http.client
import json
import os
import select
import ssl
import threading
from urllib.parse import unquote, urlsplit

__all__ = ["Connections", "RestError", "error_from_reply", "supports"]

_STATUS_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "ENDPOINT_NOT_FOUND",
                 409: "RESOURCE_CONFLICT", 429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR",
                 501: "NOT_IMPLEMENTED", 502: "TEMPORARILY_UNAVAILABLE", 503: "TEMPORARILY_UNAVAILABLE",
                 504: "TEMPORARILY_UNAVAILABLE"}


class RestError(Exception):
    """The server answered with an error: ``error_code`` is MLflow's (from its JSON body, else from the HTTP
    status), ``status`` the HTTP status."""

    def __init__(self, message: str, error_code: str, status: int = 0) -> None:
        super().__init__(f"{error_code}: {message}" if message else error_code)
        self.error_code = error_code
        self.status = status
        self.message = message


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("true", "1")


def supports(uri: str) -> bool:
    """Can this client write to ``uri``? Only ``http(s)://`` servers, and only without MLflow's auth plugins."""
    scheme = urlsplit(uri).scheme.lower()
    return scheme in ("http", "https") and not os.environ.get("MLFLOW_TRACKING_AUTH") \
        and not _env_flag("MLFLOW_TRACKING_AWS_SIGV4")


def _credentials_file() -> tuple[str | None, str | None]:
    path = os.path.expanduser("~/.mlflow/credentials")
    if not os.path.exists(path):
        return None, None
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error:
        return None, None
    if "mlflow" not in parser:
        return None, None
    section = parser["mlflow"]
    return section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")


def _authorization() -> str | None:
    """The Authorization header value for this request (MLflow's precedence: username/password, then token)."""
    username = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not (username and password):
        file_user, file_password = _credentials_file()
        username, password = username or file_user, password or file_password
    if username and password:
        return "Basic " + base64.standard_b64encode(f"{username}:{password}".encode()).decode("ascii")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return f"Bearer {token}" if token else None


def _timeout() -> float:
    try:
        return float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 120)
    except ValueError:
        return 120.0


def _tls_context() -> ssl.SSLContext:
    if _env_flag("MLFLOW_TRACKING_INSECURE_TLS"):
        context = ssl._create_unverified_context()  # noqa: S323 - the user asked for it, as in MLflow
    else:
        context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    if client_cert:
        context.load_cert_chain(client_cert)  # a PEM file with the certificate and its key, as requests takes
    return context


def _split(netloc: str) -> tuple[str, int | None]:
    host, _, port = netloc.rpartition(":") if netloc.rsplit(":", 1)[-1].isdigit() else (netloc, "", "")
    return host.strip("[]"), int(port) if port else None


def _open(scheme: str, netloc: str) -> http.client.HTTPConnection:
    """A new connection to ``netloc``, through the proxy that ``HTTP(S)_PROXY`` / ``NO_PROXY`` name for it, as
    MLflow's client (requests) would use."""
    import urllib.request  # 15 ms of imports: only when a connection is opened

    host, port = _split(netloc)
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and urllib.request.proxy_bypass(host):
        proxy = None
    if not proxy:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=_timeout(), context=_tls_context())
        return http.client.HTTPConnection(host, port, timeout=_timeout())
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    proxy_host, proxy_port = _split(parts.netloc.rpartition("@")[2])
    proxy_headers = {}
    if parts.username:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        proxy_headers["Proxy-Authorization"] = "Basic " + base64.standard_b64encode(credentials).decode("ascii")
    if scheme == "https":  # CONNECT tunnel: TLS runs end to end with the server
        conn = http.client.HTTPSConnection(proxy_host, proxy_port or 8080, timeout=_timeout(), context=_tls_context())
        conn.set_tunnel(host, port, headers=proxy_headers)
        return conn
    conn = http.client.HTTPConnection(proxy_host, proxy_port or 8080, timeout=_timeout())
    conn.mltrack_via_proxy = True  # type: ignore[attr-defined]
    conn.mltrack_proxy_headers = proxy_headers  # type: ignore[attr-defined]
    return conn


class Connections:
    """Kept-alive HTTP(S) connections, one per thread and (scheme, host:port)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def send(self, scheme: str, netloc: str, method: str, url: str, data: bytes | None, headers: dict[str, str],
             idempotent: bool = True) -> tuple[int, bytes]:
        """One request with MLflow's credentials added; returns (HTTP status, body)."""
        headers = dict(headers)
        auth = _authorization()
        if auth:
            headers["Authorization"] = auth
        for attempt in (0, 1):
            conn, reused = self._connection(scheme, netloc)
            try:
                # Through an http:// proxy a plain-HTTP request names the whole URL (https tunnels instead).
                target = f"{scheme}://{netloc}{url}" if getattr(conn, "mltrack_via_proxy", False) else url
                conn.request(method, target, body=data,
                             headers={**headers, **getattr(conn, "mltrack_proxy_headers", {})})
                response = conn.getresponse()
                payload = response.read()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
                conn.close()
                if reused and attempt == 0 and (idempotent or isinstance(exc, BrokenPipeError)):
                    continue  # the server closed the kept-alive connection meanwhile: once more on a new one
                raise ConnectionError(f"{method} {scheme}://{netloc}: {type(exc).__name__}: {exc}") from None
            except http.client.HTTPException as exc:  # a broken reply: the server is not answering properly
                conn.close()
                raise ConnectionError(f"{method} {scheme}://{netloc}: {type(exc).__name__}: {exc}") from None
            except OSError:
                conn.close()
                raise
            if response.will_close:
                conn.close()
            return response.status, payload
        raise AssertionError("unreachable")

    def _connection(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's kept-alive connection to ``netloc`` (a new one after a fork), and whether it was used."""
        pid = os.getpid()
        conns = getattr(self._local, "conns", None)
        if conns is None or getattr(self._local, "pid", None) != pid:
            for old in (conns or {}).values():
                old.close()  # in a forked child: closes this process's copy only
            conns = self._local.conns = {}
            self._local.pid = pid
        conn = conns.get((scheme, netloc))
        if conn is None:
            conn = conns[(scheme, netloc)] = _open(scheme, netloc)
        sock = conn.sock
        if sock is None:
            return conn, False
        try:  # readable while idle: the server closed it (or sent garbage); start afresh
            readable = select.select([sock], [], [], 0)[0]
        except (OSError, ValueError):
            readable = [sock]
        if readable:
            conn.close()
            return conn, False
        return conn, True

    def close(self) -> None:
        """Close this thread's connections."""
        for conn in (getattr(self._local, "conns", None) or {}).values():
            conn.close()
        self._local.conns = {}


def error_from_reply(status: int, payload: bytes, method: str, path: str) -> RestError:
    """The error a non-2xx reply means: MLflow's JSON ``error_code``, else one from the HTTP status."""
    code, message = "", ""
    try:
        reply = json.loads(payload)
        if isinstance(reply, dict):
            code = str(reply.get("error_code") or "")
            message = str(reply.get("message") or reply.get("detail") or "")
    except ValueError:
        message = payload[:200].decode("utf-8", "replace").strip()
    return RestError(message or f"HTTP {status} from {method} {path}",
                     code or _STATUS_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST"),
                     status)
