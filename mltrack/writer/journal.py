"""The on-disk journal: records the MLflow store could not take (yet), kept as append-only JSON lines.

Layout of the journal folder (``journal_dir``; default: ``mltrack/journal`` in the user cache folder)::

    <owner>.lock                         held (flock) by the live process that owns the files below
    <owner>.ids                          run key -> MLflow run id, learned while replaying (JSON lines)
    <owner>.<lane>.<seq>.jsonl           a segment: a header line, then one record per line, in order
    <owner>.<lane>.<seq>.jsonl.ack       how far the segment has been written to MLflow (byte offsets, one a line)

``owner`` is ``<pid>-<random>``, one per process (a new one after a fork); ``lane`` is a hash of the tracking
URI (one journal per store); ``seq`` orders a lane's segments. A process creates its lock file before any
segment and holds an exclusive lock on it for its life; the operating system releases that lock when the
process dies, however it dies. A process whose writer starts tries each other owner's lock without waiting:
getting it means the owner is dead and nobody else is replaying its files, so it adopts them (keeping the
lock until it has written and deleted them).
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

from mltrack.writer import records
from mltrack.writer._quiet import warn_once

FORMAT = 1
SEGMENT_MAX_BYTES = 8 << 20
FSYNC_INTERVAL_S = 1.0

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


def lane_id(uri: str) -> str:
    return sha1(uri.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on an open lock file without waiting; False when a live process holds it."""
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


class Owner:
    """One process's set of journal files, and the lock that says who replays them."""

    def __init__(self, directory: Path, name: str, fd: int) -> None:
        self.directory = directory
        self.name = name
        self.fd: int | None = fd
        self.lanes_open = 0  # replay lanes still working on this (adopted) owner's segments

    @property
    def lock_path(self) -> Path:
        return self.directory / f"{self.name}.lock"

    @property
    def ids_path(self) -> Path:
        return self.directory / f"{self.name}.ids"

    @classmethod
    def create(cls, directory: Path) -> "Owner":
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):  # pragma: no cover - a fresh random name cannot be locked by anyone else
            os.close(fd)
            raise OSError(f"cannot lock the new journal lock file for {name}")
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(directory, name, fd)

    def segment_paths(self) -> list[Path]:
        return sorted(self.directory.glob(f"{self.name}.*.jsonl"), key=_segment_order)

    def record_ids(self, ids: dict[str, str]) -> None:
        """Remember run ids learned from this owner's records (so a later replay needs no search)."""
        with open(self.ids_path, "a", encoding="ascii") as fh:
            fh.write(json.dumps(ids, separators=(",", ":")) + "\n")

    def load_ids(self) -> dict[str, str]:
        ids: dict[str, str] = {}
        try:
            with open(self.ids_path, encoding="ascii", errors="replace") as fh:
                for line in fh:
                    try:
                        value = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(value, dict):
                        ids.update({str(k): str(v) for k, v in value.items()})
        except FileNotFoundError:
            pass
        return ids

    def release(self, remove: bool) -> None:
        """Give the files up: drop the lock, and delete the bookkeeping when ``remove`` and no segment is left."""
        remove = remove and not self.segment_paths()
        self.close_fd()
        if remove:
            for path in (self.ids_path, self.lock_path):
                try:
                    path.unlink()
                except OSError:  # gone already, or (Windows) open elsewhere: the next adopter cleans it up
                    pass

    def close_fd(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass


def _segment_order(path: Path) -> tuple[str, int]:
    parts = path.name.split(".")
    try:
        return parts[1], int(parts[2])
    except (IndexError, ValueError):
        return path.name, 0


class Segment:
    """One journal file of one lane: appended by the spilling thread, read and acknowledged by the sender."""

    def __init__(self, owner: Owner, path: Path, uri: str, acked: int, size: int, pending: int) -> None:
        self.owner = owner
        self.path = path
        self.uri = uri
        self.acked = acked  # byte offset up to which every record is written to MLflow
        self.size = size  # bytes known to be in the file (complete lines)
        self.pending = pending  # records not yet acknowledged
        self._wf: Any = None
        self._rf: Any = None
        self._last_sync = 0.0
        self._dirty = False

    @property
    def ack_path(self) -> Path:
        return self.path.with_name(self.path.name + ".ack")

    # writing ------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, owner: Owner, uri: str, lane: str, seq: int) -> "Segment":
        """A new segment; ``lane`` names the writer's queue (a hash of the URI), ``seq`` orders it in the lane."""
        path = owner.directory / f"{owner.name}.{lane}.{seq:08d}.jsonl"
        header = json.dumps({"mltrack_journal": FORMAT, "uri": uri, "owner": owner.name, "pid": os.getpid(),
                             "created": time.time()}, ensure_ascii=True) + "\n"
        wf = open(path, "ab")
        wf.write(header.encode("ascii"))
        wf.flush()
        segment = cls(owner, path, uri, acked=len(header), size=len(header), pending=0)
        segment._wf = wf
        segment._dirty = True
        return segment

    @property
    def writable(self) -> bool:
        return self._wf is not None

    def append(self, lines: list[str]) -> int:
        """Append records (already serialized, one per line); returns the new end offset. Raises OSError."""
        if not lines:
            return self.size
        data = ("\n".join(lines) + "\n").encode("ascii")
        self._wf.write(data)
        self._wf.flush()  # in the OS now: survives the process being killed
        self.size += len(data)
        self.pending += len(lines)
        self._dirty = True
        return self.size

    def sync(self, force: bool = False) -> None:
        """fsync at most once a second (or now, when ``force``): survives a machine crash."""
        if self._wf is None or not self._dirty:
            return
        now = time.monotonic()
        if force or now - self._last_sync >= FSYNC_INTERVAL_S:
            try:
                os.fsync(self._wf.fileno())
            except OSError:  # pragma: no cover
                pass
            self._last_sync = now
            self._dirty = False

    @property
    def full(self) -> bool:
        return self.size >= SEGMENT_MAX_BYTES

    def close_write(self) -> None:
        wf, self._wf = self._wf, None
        if wf is not None:
            try:
                wf.flush()
                os.fsync(wf.fileno())
            except OSError:  # pragma: no cover
                pass
            wf.close()

    # reading ------------------------------------------------------------------------------------------
    def read(self, max_records: int) -> tuple[list[dict[str, Any]], int, int]:
        """Up to ``max_records`` unacknowledged records: (records, end offset, lines consumed incl. bad ones)."""
        if self._rf is None:
            self._rf = open(self.path, "rb")
        rf = self._rf
        rf.seek(self.acked)
        out: list[dict[str, Any]] = []
        offset, consumed = self.acked, 0
        while len(out) < max_records:
            line = rf.readline()
            if not line.endswith(b"\n"):  # end of file, or a line still being written (or torn by a crash)
                break
            offset += len(line)
            consumed += 1
            try:
                out.append(records.loads(line))
            except ValueError:
                _bad_line(self.path)
        return out, offset, consumed  # ``size`` is the appending thread's to keep (under the writer's lock)

    def ack(self, offset: int, count: int) -> None:
        """Everything before ``offset`` is written to MLflow."""
        self.acked = offset
        self.pending = max(0, self.pending - count)
        with open(self.ack_path, "a", encoding="ascii") as fh:
            fh.write(f"{offset}\n")

    def delete(self) -> None:
        self.close_write()
        if self._rf is not None:
            self._rf.close()
            self._rf = None
        for path in (self.path, self.ack_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    # adopting -----------------------------------------------------------------------------------------
    @classmethod
    def open_existing(cls, owner: Owner, path: Path) -> "Segment | None":
        """A segment another (dead) process left; None when it holds nothing to replay."""
        try:
            with open(path, "rb") as fh:
                header_line = fh.readline()
                if not header_line.endswith(b"\n"):
                    return None
                header = json.loads(header_line)
                start = len(header_line)
                acked = max(start, _last_ack(path.with_name(path.name + ".ack")))
                fh.seek(acked)
                data = fh.read()
        except (OSError, ValueError):
            return None
        if not isinstance(header, dict) or header.get("mltrack_journal") != FORMAT or not header.get("uri"):
            return None
        complete = data[:data.rfind(b"\n") + 1]
        segment = cls(owner, path, str(header["uri"]), acked=acked, size=acked + len(complete),
                      pending=complete.count(b"\n"))
        return segment


def _last_ack(path: Path) -> int:
    best = 0
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if line.isdigit():
                    best = max(best, int(line))
    except FileNotFoundError:
        pass
    return best


def _bad_line(path: Path) -> None:
    warn_once(f"journal-bad-line:{path}", f"mltrack: skipped an unreadable line in journal file {path}.")


class Journal:
    """A journal folder, from this process's side: its own files (created on first use) and adopted ones."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_dir()
        self._own: Owner | None = None

    def own(self) -> Owner:
        """This process's owner (the folder and lock file are created now, on the first spill)."""
        if self._own is None:
            self._own = Owner.create(self.directory)
        return self._own

    @property
    def has_own(self) -> bool:
        return self._own is not None

    def orphans(self) -> Iterator[tuple[Owner, list[Segment]]]:
        """Owners whose process is dead and whose files nobody else replays; each is locked by us when yielded."""
        if not self.directory.is_dir():
            return
        own_name = self._own.name if self._own is not None else None
        names = {p.name.split(".")[0] for p in self.directory.glob("*.lock")}
        names |= {p.name.split(".")[0] for p in self.directory.glob("*.jsonl")}
        for name in sorted(names):
            if name == own_name:
                continue
            try:
                fd = os.open(self.directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                continue
            if not _try_lock(fd):
                os.close(fd)  # a live process owns (or replays) it
                continue
            owner = Owner(self.directory, name, fd)
            segments = [s for s in (Segment.open_existing(owner, p) for p in owner.segment_paths()) if s is not None]
            live = []
            for segment in segments:
                if segment.pending:
                    live.append(segment)
                else:
                    segment.delete()
            if not live:
                for path in owner.segment_paths():  # unreadable leftovers: keep them out of the way
                    try:
                        path.rename(path.with_name(path.name + ".bad"))
                    except OSError:
                        pass
                owner.release(remove=True)
                continue
            yield owner, live

    def close(self, remove_if_empty: bool) -> None:
        own, self._own = self._own, None
        if own is not None:
            own.release(remove=remove_if_empty)

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's lock file descriptor (the parent still holds the lock)."""
        own, self._own = self._own, None
        if own is not None:
            own.close_fd()
