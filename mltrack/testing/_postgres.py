"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` into a temporary folder, then ``postgres``
on 127.0.0.1 at a free port, as a child of this process (no service, no Docker).

PostgreSQL refuses to run as root: as root it runs as the ``postgres`` system user (Debian's ``postgresql``
package creates it). Authentication is ``trust`` for local connections: for tests only (docs/deploy.md shows a
production setup). ``fsync`` is off: it only matters when the machine itself crashes.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

__all__ = ["PostgresServer", "PostgresNotFound", "find_postgres", "free_port"]

_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/usr/pgsql-*/bin",
           "/opt/homebrew/opt/postgresql*/bin", "/usr/local/opt/postgresql*/bin")
_TOOLS = ("initdb", "postgres", "pg_isready", "createdb", "dropdb")


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_postgres() -> Path | None:
    """The folder with PostgreSQL's server binaries (``initdb``, ``postgres``, ...), newest version first.

    ``MLTRACK_PG_BIN`` wins; then ``initdb`` on PATH (Debian keeps it off PATH); then the usual install folders."""
    candidates = [os.environ.get("MLTRACK_PG_BIN", "")]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for pattern in _SEARCH:
        candidates += sorted(glob.glob(pattern), key=_version_key, reverse=True)
    for folder in candidates:
        if folder and all(os.access(os.path.join(folder, tool), os.X_OK) for tool in _TOOLS):
            return Path(folder)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child_setup(user: pwd.struct_passwd | None, sig: int = signal.SIGTERM) -> Callable[[], None]:
    """What the child runs before exec: become ``user`` (if given), then ask for ``sig`` when the process that
    started it dies (Linux; set after the user change, which would clear it), so no server outlives a killed test."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the finalizers still stop it
        prctl = None

    def setup() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        if prctl is not None:
            prctl(1, sig)  # PR_SET_PDEATHSIG

    return setup


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder. ``start()`` initializes it the first time; the data survive
    ``stop()`` / ``kill()`` / ``restart()`` (same port), and ``close()`` removes everything."""

    def __init__(self, bin_dir: Path | None = None, *, port: int | None = None) -> None:
        found = bin_dir or find_postgres()
        if found is None:
            raise PostgresNotFound("PostgreSQL is not installed (no initdb/postgres found on PATH or in "
                                   f"{', '.join(_SEARCH)}); on Debian/Ubuntu: apt-get install -y postgresql")
        self.bin_dir = Path(found)
        self.port = port or free_port()
        self.user = "postgres"  # the database superuser (initdb -U)
        self._os_user = _os_user()
        self.root = Path(tempfile.mkdtemp(prefix="mltrack-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        if self._os_user is not None:
            os.chown(self.root, self._os_user.pw_uid, self._os_user.pw_gid)
        self._proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0  # how long the last start() took (initdb included the first time)

    # -- life cycle ------------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> "PostgresServer":
        """Initialize the cluster if needed, start the server, and wait until it accepts connections."""
        begin = time.monotonic()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust", "--no-sync",
                      "-E", "UTF8", "--locale=C")
        deadline = time.monotonic() + timeout
        while True:
            self._launch()
            if self._wait_ready(deadline):
                break
            # A killed server's backends may still hold its shared memory for a moment: try again.
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start within {timeout:.0f} s; its log:\n{self.log_tail()}")
            time.sleep(0.3)
        self.start_seconds = time.monotonic() - begin
        return self

    def _launch(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
                 "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                preexec_fn=_child_setup(self._os_user, signal.SIGINT))  # SIGINT: fast shutdown
        finally:
            log.close()

    def _wait_ready(self, deadline: float) -> bool:
        """True once the server accepts connections; False if it exited (the caller may try again)."""
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            ready = subprocess.run([str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                    "-U", self.user, "-t", "1"], stdin=subprocess.DEVNULL, check=False)
            if ready.returncode == 0:
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): open transactions are rolled back, every committed one is kept."""
        self._signal(signal.SIGINT, timeout)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; committed data survive (crash recovery at the next start)."""
        self._signal(signal.SIGKILL, 30.0)

    def restart(self, hard: bool = False) -> None:
        """Stop (``hard``: kill) and start again on the same port."""
        self.kill() if hard else self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Stop the server and delete its folder."""
        if self.running:
            try:
                self.stop(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def _signal(self, sig: int, timeout: float) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        proc.wait(timeout)

    # -- databases -------------------------------------------------------------------------------------
    def create_database(self, name: str) -> str:
        """Create an empty database (dropping one of that name first); returns its SQLAlchemy URL."""
        self._run("dropdb", "--if-exists", *self._conn_args(), name)
        self._run("createdb", *self._conn_args(), name)
        return self.url(name)

    def url(self, database: str = "mlflow") -> str:
        """The SQLAlchemy URL of a database, for ``mlflow server --backend-store-uri``.

        ``+psycopg2`` names the driver: SQLAlchemy 2.1 would otherwise pick psycopg 3."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "mlflow") -> str:
        """Run SQL with ``psql`` (next to the server binaries, else on PATH); returns its unaligned output."""
        psql = self.bin_dir / "psql"
        exe = str(psql) if psql.exists() else (shutil.which("psql") or "psql")
        return self._run(exe, *self._conn_args(), "-d", database, "-At", "-c", sql, absolute=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- helpers ---------------------------------------------------------------------------------------
    def _conn_args(self) -> tuple[str, ...]:
        return ("-h", "127.0.0.1", "-p", str(self.port), "-U", self.user)

    def _as_user(self) -> dict:
        return {} if self._os_user is None else {"user": self._os_user.pw_uid, "group": self._os_user.pw_gid,
                                                  "extra_groups": [], "cwd": str(self.root)}

    def _run(self, tool: str, *args: str, absolute: bool = False) -> str:
        exe = tool if absolute else str(self.bin_dir / tool)
        done = subprocess.run([exe, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False, timeout=120, **self._as_user())
        if done.returncode != 0:
            raise RuntimeError(f"{Path(exe).name} {' '.join(args)} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _os_user() -> pwd.struct_passwd | None:
    """Whom to run PostgreSQL as: None (this user) unless this is root, then the ``postgres`` system user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresNotFound("PostgreSQL refuses to run as root and there is no 'postgres' user to run it as "
                               "(Debian's postgresql package creates one; or: useradd --system postgres)") from None
