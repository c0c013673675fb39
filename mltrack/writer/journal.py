"""The on-disk journal: every record goes here first, as append-only JSON lines, before MLflow sees it.

Layout of the journal folder (``journal_dir``; default: ``mltrack/journal`` in the user cache folder), all of it
readable by its owner only (folders 0700, files 0600)::

    server.lock                          held (flock) by the one writer serving this folder (a process or a thread)
    server.sock                          the server's wake-up socket (POSIX; producers send it a byte)
    status.json                          the server's word on each store: up, or down since when and why
    owners/<owner>.lock                  held by a live producer process for its life
    stores/<store>/uri                   the store's tracking URI, and the working directory it was resolved in
    stores/<store>/<owner>.<seq>.jsonl   a producer's segment: one record per line, in order
    stores/<store>/<owner>.<seq>.ack     how far the server has written that segment, and the run ids it made

``owner`` is ``<start ns>-<pid>-<random>``: one per process (a new one after a fork), and names sort by start.
The operating system releases a lock when its process dies, however it dies, so "the lock is free" means "that
producer (or server) is gone".
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from hashlib import sha1
from pathlib import Path
from typing import Any, Iterator

SEGMENT_MAX_BYTES = 8 << 20
CLOSED = '{"t":"z"}\n'  # a segment's last line once its producer moved on to the next one

try:  # POSIX
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]


def default_dir() -> Path:
    """``mltrack/journal`` in the user cache folder of this platform."""
    if sys.platform == "win32":  # pragma: no cover
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "mltrack" / "Cache"
    elif sys.platform == "darwin":  # pragma: no cover
        base = Path.home() / "Library" / "Caches" / "mltrack"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mltrack"
    return base / "journal"


def fallback_dir() -> Path:
    """Where the journal goes when the configured or default folder cannot be written (a read-only home)."""
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"mltrack-{uid}" / "journal"


def private_dir(path: Path) -> Path:
    """Create ``path`` (0700) if needed; refuse a folder another user owns (its journal is never read)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if hasattr(os, "getuid"):
        st = path.stat()
        if st.st_uid != os.getuid():
            raise PermissionError(f"{path} belongs to another user")
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
    return path


def open_private(path: Path, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old or the new content, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def store_id(uri: str) -> str:
    return sha1(uri.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# locks ---------------------------------------------------------------------------------------------------
class Lock:
    """An exclusive lock on a file, held until :meth:`release` or the process's death."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def try_take(cls, path: Path) -> "Lock | None":
        """The lock if nobody holds it now, else None (never waits)."""
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        if _try_lock(fd):
            return cls(path, fd)
        os.close(fd)
        return None

    def release(self, remove: bool = False) -> None:
        if self.fd < 0:
            return
        if remove:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        os.close(self.fd)  # closing the descriptor releases the lock
        self.fd = -1


def _try_lock(fd: int) -> bool:
    if _fcntl is not None:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            return True
        except OSError:
            return False
    import msvcrt  # pragma: no cover

    try:  # pragma: no cover - the lock is on the file's first byte, whoever holds it
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:  # pragma: no cover
        return False


def is_held(path: Path) -> bool:
    """Does a live process hold the lock at ``path``? (Checks by taking it for a moment.)"""
    if not path.exists():
        return False
    try:
        lock = Lock.try_take(path)
    except OSError:
        return True
    if lock is None:
        return True
    lock.release()
    return False


# the folder ----------------------------------------------------------------------------------------------
class Folder:
    """Paths of one journal folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.owners = root / "owners"
        self.stores = root / "stores"
        self.server_lock = root / "server.lock"
        self.socket = root / "server.sock"
        self.status = root / "status.json"

    def prepare(self) -> "Folder":
        for path in (self.root, self.owners, self.stores):
            private_dir(path)
        return self

    def store_dir(self, uri: str, cwd: str | None = None) -> Path:
        path = self.stores / store_id(uri)
        if not (path / "uri").exists():
            private_dir(path)
            write_atomic(path / "uri", json.dumps({"uri": uri, "cwd": cwd or os.getcwd()}))
        return path

    def store_dirs(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        try:
            entries = sorted(self.stores.iterdir())
        except OSError:
            return
        for path in entries:
            try:
                meta = json.loads((path / "uri").read_text("utf-8"))
            except (OSError, ValueError):
                continue
            yield path, meta

    def owner_alive(self, owner: str) -> bool:
        return is_held(self.owners / f"{owner}.lock")

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status.read_text("utf-8"))
        except (OSError, ValueError):
            return {}


def new_owner() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}"


def owner_of(segment: Path) -> str:
    return segment.name.split(".", 1)[0]


def ack_path(segment: Path) -> Path:
    return segment.with_suffix(".ack")


def read_ack(segment: Path) -> tuple[int, bool]:
    """How far the server has written ``segment`` (bytes), and whether a write past that was begun and maybe not
    finished (a server died in it): what follows must then be replayed, looking up what may exist already."""
    try:
        data = json.loads(ack_path(segment).read_text("utf-8"))
        offset = int(data.get("offset", 0))
        return offset, int(data.get("writing", offset)) > offset
    except (OSError, ValueError, TypeError):
        return 0, False


def write_ack(segment: Path, offset: int, writing: int | None = None) -> None:
    """Record progress: ``offset`` is written; ``writing``, the end of a write begun now."""
    data = {"offset": offset} if writing is None else {"offset": offset, "writing": writing}
    write_atomic(ack_path(segment), json.dumps(data))


class Segment:
    """The producer's side of one segment: an append-only file it writes whole lines to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.size = os.fstat(self.fd).st_size

    def append(self, data: bytes) -> int:
        """Write ``data`` (whole lines) and return the file's size after it: what the server must ack."""
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.size += len(data)
        return self.size

    def close(self, mark_closed: bool) -> None:
        if self.fd < 0:
            return
        if mark_closed:
            try:
                self.append(CLOSED.encode())
            except OSError:
                pass
        os.close(self.fd)
        self.fd = -1


def read_lines(path: Path, offset: int, max_bytes: int | None) -> tuple[list[bytes], int]:
    """Whole lines of ``path`` from ``offset`` (at most about ``max_bytes``; None: all), and the offset after the
    last one."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(-1 if max_bytes is None else max_bytes)
    except OSError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        if max_bytes is not None and len(data) >= max_bytes:  # one line longer than a read: take it whole
            with open(path, "rb") as handle:
                handle.seek(offset)
                line = handle.readline()
            return ([line] if line.endswith(b"\n") else []), offset + (len(line) if line.endswith(b"\n") else 0)
        return [], offset
    return data[:end + 1].splitlines(), offset + end + 1


# what waits, for `mltrack journal` -----------------------------------------------------------------------
class Waiting:
    """What waits on disk for one store."""

    def __init__(self, uri: str, path: Path) -> None:
        self.uri = uri
        self.path = path
        self.records = 0
        self.bytes = 0
        self.oldest: float | None = None  # mtime of the oldest segment with something unwritten
        self.segments: list[Path] = []
        self.live_segments = 0  # of which a live process is still writing


def waiting(folder: Folder) -> list[Waiting]:
    """Per store: the records not written yet, their size, the oldest, whose producers still live."""
    result = []
    alive: dict[str, bool] = {}
    for path, meta in folder.store_dirs():
        entry = Waiting(str(meta.get("uri")), path)
        for segment in sorted(path.glob("*.jsonl")):
            offset = read_ack(segment)[0]
            try:
                stat = segment.stat()
            except OSError:
                continue
            if offset >= stat.st_size:
                continue
            lines, _ = read_lines(segment, offset, None)
            records = sum(1 for line in lines if line.strip() and line != CLOSED.strip().encode())
            if not records:
                continue
            owner = owner_of(segment)
            if owner not in alive:
                alive[owner] = folder.owner_alive(owner)
            entry.records += records
            entry.bytes += stat.st_size - offset
            entry.oldest = stat.st_mtime if entry.oldest is None else min(entry.oldest, stat.st_mtime)
            entry.segments.append(segment)
            entry.live_segments += alive[owner]
        if entry.records:
            result.append(entry)
    return result


def drop(entry: Waiting) -> tuple[int, int]:
    """Delete what dead processes left for a store; returns (segments dropped, segments kept: live producers')."""
    dropped = kept = 0
    for segment in entry.segments:
        if is_held(Folder(entry.path.parents[1]).owners / f"{owner_of(segment)}.lock"):
            kept += 1
            continue
        for path in (segment, ack_path(segment), segment.with_suffix(".ids")):
            try:
                os.unlink(path)
            except OSError:
                pass
        dropped += 1
    return dropped, kept
