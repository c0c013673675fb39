"""``mltrack journal [list | replay [--store URI] | drop --store URI]``: what waits on disk for stores that could
not take it, written now, or dropped."""

from __future__ import annotations

import argparse
import datetime as _dt
import time


def _folder(args: argparse.Namespace):
    from mltrack.config import get_settings
    from mltrack.writer import _journal_folder

    folder = _journal_folder(args.journal_dir or get_settings().journal_dir)
    if folder is None:
        raise OSError("no journal folder can be read here")
    return folder


def _pick(entries, store: str | None):
    if store is None:
        return entries
    picked = [e for e in entries if e.uri == store]
    if not picked:
        known = ", ".join(e.uri for e in entries) or "none"
        raise ValueError(f"nothing waits for store {store!r} (stores with records waiting: {known})")
    return picked


def cmd_list(args: argparse.Namespace) -> int:
    from mltrack.writer import journal

    folder = _folder(args)
    entries = journal.waiting(folder)
    if not entries:
        print(f"nothing waits in {folder.root}")
        return 0
    status = folder.read_status().get("stores", {})
    rows = [("store", "records", "oldest", "size", "writing now", "state")]
    for e in entries:
        oldest = _dt.datetime.fromtimestamp(e.oldest or 0).strftime("%Y-%m-%d %H:%M:%S")
        report = status.get(e.uri, {})
        state = f"down: {report.get('error')}" if report.get("down") else "ok"
        rows.append((e.uri, str(e.records), oldest, _size(e.bytes), f"{e.live_segments} process(es)", state))
    _print_table(rows)
    print(f"\njournal folder: {folder.root}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Write what waits now: by the running writer if there is one, else from this process."""
    from mltrack.writer import journal
    from mltrack.writer.launch import poke
    from mltrack.writer.server import Server

    folder = _folder(args)
    entries = _pick(journal.waiting(folder), args.store)
    if not entries:
        print("nothing waits")
        return 0
    lock = journal.Lock.try_take(folder.server_lock)
    server = None
    if lock is not None:
        from mltrack.config import get_settings

        server = Server(folder, retention_s=get_settings().journal_retention_days * 86400.0, idle_exit_s=None)
    uris = {e.uri for e in entries}
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            if server is not None:
                server.round()
            else:
                poke(folder.socket)
                time.sleep(0.2)
            left = [e for e in journal.waiting(folder) if e.uri in uris]
            if not left:
                print(f"written: {sum(e.records for e in entries)} records")
                return 0
            down = {uri: r for uri, r in folder.read_status().get("stores", {}).items() if uri in uris and r.get("down")}
            if server is not None and down and all(e.uri in down for e in left):
                for uri, report in down.items():
                    print(f"mltrack: {uri} does not answer ({report.get('error')}); its records stay in the journal")
                return 1
    finally:
        if lock is not None:
            lock.release()
    print(f"mltrack: not all written within {args.timeout:g} s; the rest stays in the journal")
    return 1


def cmd_drop(args: argparse.Namespace) -> int:
    from mltrack.writer import journal

    folder = _folder(args)
    dropped = kept = records = 0
    for entry in _pick(journal.waiting(folder), args.store):
        d, k = journal.drop(entry)
        dropped, kept = dropped + d, kept + k
        records += entry.records
    print(f"dropped {dropped} segment(s) for {args.store}" + (f"; kept {kept} a live process is still writing" if kept
                                                               else ""))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("journal", help="records waiting on disk for stores that could not take them")
    parser.add_argument("--journal-dir", help="the journal folder (default: the configured one)")
    parser.set_defaults(func=cmd_list)
    verbs = parser.add_subparsers(dest="verb")
    verbs.add_parser("list", help="per store: records waiting, the oldest, their size").set_defaults(func=cmd_list)
    replay = verbs.add_parser("replay", help="write what waits now")
    replay.add_argument("--store", help="only this store's records (its tracking URI, as `list` shows it)")
    replay.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (300)")
    replay.set_defaults(func=cmd_replay)
    drop = verbs.add_parser("drop", help="delete what waits for a store (what live processes write is kept)")
    drop.add_argument("--store", required=True, help="the store's tracking URI, as `list` shows it")
    drop.set_defaults(func=cmd_drop)
