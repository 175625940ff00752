"""The embedded store: one SQLite file, one transaction per run.

`BEGIN IMMEDIATE` takes the write lock before the snapshot is read, so two allocators on
one file run one after the other and the second plans from what the first wrote: no CIDR
can be handed out twice, and a failed run writes nothing.

Triggers log every insert and delete of a lease in `changes`, whose AUTOINCREMENT key is
the store's revision; watchers poll it. Writers are serialized, so a reader never sees a
higher revision before a lower one. Every write trims the log to its last KEEP_CHANGES
rows: a watcher further behind than that reads a snapshot and is sent the difference, as
after an etcd compaction.

A reader opens the file read-only and never creates it. A writer killed mid-transaction
leaves a hot journal, which a read-only connection may not roll back: the reader rolls it
back as a writer would, where it may write the file and its directory, and otherwise reads a
rolled-back copy.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import quote

from ipam.allocation import Lease, Released
from ipam.errors import InvalidInput, StoreError, StoreUnavailable
from ipam.net import Cidr, parse_cidr
from ipam.state import ClusterRecord, ClusterState, ClusterWrite, Snapshot
from ipam.store.base import FileStore, LeaseEvent, LeaseWatch, R, ResyncingWatch, Store
from ipam.store.codec import record_from_json, record_to_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS clusters (
    name   TEXT PRIMARY KEY,
    record TEXT NOT NULL            -- JSON: pools, services, reserved, avoid, node addresses
);
CREATE TABLE IF NOT EXISTS leases (
    cluster TEXT NOT NULL,
    pool    TEXT NOT NULL,
    node    TEXT NOT NULL,
    cidr    TEXT NOT NULL,
    PRIMARY KEY (cluster, pool, node),
    UNIQUE (cluster, pool, cidr)
);
CREATE TABLE IF NOT EXISTS released (  -- history: CIDRs handed out and freed
    cluster TEXT NOT NULL,
    pool    TEXT NOT NULL,
    cidr    TEXT NOT NULL,
    seq     INTEGER NOT NULL,       -- release sequence: lower was freed earlier
    PRIMARY KEY (cluster, pool, cidr)
);
CREATE TABLE IF NOT EXISTS changes (   -- every lease put and delete, for watchers
    rev     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,          -- put | delete
    cluster TEXT NOT NULL,
    pool    TEXT NOT NULL,
    node    TEXT NOT NULL,
    cidr    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_cluster ON changes (cluster, rev);
CREATE TRIGGER IF NOT EXISTS lease_put AFTER INSERT ON leases BEGIN
    INSERT INTO changes (kind, cluster, pool, node, cidr)
    VALUES ('put', NEW.cluster, NEW.pool, NEW.node, NEW.cidr);
END;
CREATE TRIGGER IF NOT EXISTS lease_delete AFTER DELETE ON leases BEGIN
    INSERT INTO changes (kind, cluster, pool, node, cidr)
    VALUES ('delete', OLD.cluster, OLD.pool, OLD.node, OLD.cidr);
END;
"""

# Long enough to queue behind another allocator's run of thousands of nodes.
BUSY_TIMEOUT_S = 60
# How often a watcher looks for new changes.
POLL_S = 0.2
# Lease changes kept for watchers (some 7 MiB of log); the log grew without end before.
KEEP_CHANGES = 100_000

# SQLite's locks on a database file (os_unix.c): a reader holds a read lock on the SHARED
# range, taken through the PENDING byte, which a writer holds while it waits to commit.
PENDING_BYTE = 0x40000000
SHARED_FIRST = PENDING_BYTE + 2
SHARED_SIZE = 510

T = TypeVar("T")


class _Compacted(Exception):
    """The changes a watcher asked for were trimmed from the log."""


class SQLiteStore(Store, FileStore):
    def __init__(self, path: str) -> None:
        self.path = path
        self.url = path
        # Read-only opening takes a URI, in which SQLite reads `#`, `?` and `%` and takes
        # `:memory:` for no file: the path is quoted whole, so that it names the file it spells.
        self._uri = "file://" + quote(os.fsencode(os.path.abspath(path)), safe="/")

    def _open(self, mode: str) -> sqlite3.Connection:
        return sqlite3.connect(f"{self._uri}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None)

    def _connect(self) -> sqlite3.Connection:
        """A connection for a write, creating the file if needed."""
        try:
            if not os.path.exists(self.path):
                # Leases name every node of a cluster: readable by the owner only.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            if os.path.isdir(self.path):
                raise StoreUnavailable(f"store {self.path}: is a directory")
            conn = self._open("rw")
            conn.executescript(SCHEMA)
            return conn
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"store {self.path}: {_reason(exc)}") from exc

    def _reading(self, read: Callable[[sqlite3.Connection], T], missing: T) -> T:
        """read(conn) of the last committed state; `missing` when there is no file."""
        if not os.path.exists(self.path):
            return missing
        try:
            if os.path.isdir(self.path):
                raise StoreUnavailable(f"store {self.path}: is a directory")
            try:
                return _closing(self._open("ro"), read)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_READONLY_ROLLBACK:
                    raise
            # Rolling back writes the file and deletes the journal beside it.
            directory = os.path.dirname(os.path.abspath(self.path))
            if os.access(self.path, os.W_OK) and os.access(directory, os.W_OK | os.X_OK):
                return _closing(self._open("rw"), read)
            return self._read_copy(read)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"store {self.path}: {_reason(exc)}") from exc

    def _read_copy(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """read(conn) of a copy of the file and its hot journal, rolled back in a directory
        of our own. SQLite's shared lock, held while copying, keeps writers from changing
        either meanwhile."""
        with tempfile.TemporaryDirectory(prefix="netplan-") as tmp:
            copy = os.path.join(tmp, "store.db")
            fd = os.open(self.path, os.O_RDONLY)
            try:
                _lock(fd, fcntl.F_RDLCK, PENDING_BYTE, 1)
                _lock(fd, fcntl.F_RDLCK, SHARED_FIRST, SHARED_SIZE)
                _lock(fd, fcntl.F_UNLCK, PENDING_BYTE, 1)
                with open(fd, "rb", closefd=False) as src, open(copy, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                try:
                    shutil.copyfile(f"{self.path}-journal", f"{copy}-journal")
                except FileNotFoundError:
                    pass  # a writer rolled it back before the lock was ours: the file is whole
            finally:
                os.close(fd)
            return _closing(sqlite3.connect(copy, isolation_level=None), read)

    def snapshot(self) -> Snapshot:
        def read(conn: sqlite3.Connection) -> Snapshot:
            conn.execute("BEGIN")
            if not conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='leases'"
            ).fetchone():
                return Snapshot()
            return _read(conn, self.path)

        return self._reading(read, Snapshot())

    def update(self, plan: Callable[[Snapshot], tuple[ClusterWrite | None, R]],
               cluster: str | None = None) -> R:
        if not os.path.exists(self.path):
            # A run that fails, or has nothing to write, must not leave a new file behind:
            # plan against the empty store first; create it only for a real write (and
            # plan again inside the transaction, in case another run created it meanwhile).
            write, result = plan(Snapshot())
            if write is None:
                return result
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                write, result = plan(_read(conn, self.path))
                if write is not None:
                    _write(conn, write)
                    conn.execute("DELETE FROM changes WHERE rev <= "
                                 "(SELECT MAX(rev) FROM changes) - ?", (KEEP_CHANGES,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store {self.path}: {_reason(exc)}") from exc
        finally:
            conn.close()

    def watch(self, cluster: str, start_revision: int | None = None,
              known: Iterable[Lease] = (), node: str | None = None) -> LeaseWatch:
        return _SQLiteWatch(self, cluster, start_revision, known, node)

    def _changes(self, cluster: str, start: int, node: str | None) -> list[LeaseEvent]:
        def read(conn: sqlite3.Connection) -> list[LeaseEvent]:
            if not _has_changes(conn):
                return []
            # AUTOINCREMENT never reuses a revision: a log that starts above `start` was
            # trimmed past it.
            first = conn.execute("SELECT MIN(rev) FROM changes").fetchone()[0]
            if first is not None and first > start:
                raise _Compacted
            where = f"store {self.path}: table changes, cluster {cluster}"
            return [
                LeaseEvent(kind, Lease(cluster, pool, node,
                                       _cidr(f"{where}, rev {rev}", cidr)), rev)
                for rev, kind, pool, node, cidr in conn.execute(
                    "SELECT rev, kind, pool, node, cidr FROM changes "
                    "WHERE cluster = ?1 AND rev >= ?2 AND (?3 IS NULL OR node = ?3) "
                    "ORDER BY rev LIMIT 10000",
                    (cluster, start, node),
                )
            ]

        return self._reading(read, [])


class _SQLiteWatch(ResyncingWatch):
    _history_lost = "trimmed from the log"

    def __init__(self, store: SQLiteStore, cluster: str, start_revision: int | None,
                 known: Iterable[Lease], node: str | None) -> None:
        self._store = store
        self._cluster = cluster
        self._node = node
        self._stop = threading.Event()
        self._pending: deque[LeaseEvent] = deque()
        # What the consumer holds once it took every event so far: (pool, node) -> lease.
        self._leases = {(x.pool, x.node): x for x in known if node in (None, x.node)}
        if start_revision is None:
            revision, self._leases = self._listing()
            self._pending.extend(LeaseEvent("put", x, revision) for x in self._leases.values())
            self._next = revision + 1
        else:
            self._next = start_revision

    def _listing(self) -> tuple[int, dict[tuple[str, str], Lease]]:
        snapshot = self._store.snapshot()
        state = snapshot.clusters.get(self._cluster, ClusterState(None))
        return snapshot.revision, {(x.pool, x.node): x for x in state.leases
                                   if self._node in (None, x.node)}

    def __next__(self) -> LeaseEvent:
        while not self._stop.is_set():
            if self._pending:
                return self._pending.popleft()
            try:
                events = self._store._changes(self._cluster, self._next, self._node)
            except _Compacted:
                self._resync()
                continue
            for event in events:
                key = (event.lease.pool, event.lease.node)
                if event.kind == "put":
                    self._leases[key] = event.lease
                elif self._leases.get(key) == event.lease:
                    del self._leases[key]
            if events:
                self._pending.extend(events)
                self._next = events[-1].revision + 1
            else:
                self._stop.wait(POLL_S)
        raise StopIteration

    def close(self) -> None:
        self._stop.set()


def _has_changes(conn: sqlite3.Connection) -> bool:
    """Whether the file has the changes table (files of older versions get it on a write)."""
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='changes'"
    ).fetchone() is not None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _closing(conn: sqlite3.Connection, read: Callable[[sqlite3.Connection], T]) -> T:
    try:
        return read(conn)
    finally:
        conn.close()


def _lock(fd: int, kind: int, start: int, length: int) -> None:
    """Wait for a lock on a byte range of fd's file. An open file description lock, unlike
    a POSIX one, is not dropped when another connection of this process closes the file."""
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for these locks)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW,
                struct.pack("hhqqi4x", kind, os.SEEK_SET, start, length, 0))


def _cidr(where: str, text: object) -> Cidr:
    try:
        return parse_cidr(text)
    except ValueError as exc:
        raise StoreError(f"{where}: cidr {text!r} {exc}") from None


def _record(where: str, text: str) -> ClusterRecord:
    try:
        return record_from_json(text)
    except KeyError as exc:
        reason = f"no field {exc}"
    except json.JSONDecodeError as exc:
        reason = f"not JSON: {exc.msg} at character {exc.pos}"
    except (ValueError, TypeError, InvalidInput) as exc:
        reason = " ".join(str(exc).split())
    raise StoreError(f"{where}: malformed record ({reason})")


def _read(conn: sqlite3.Connection, path: str) -> Snapshot:
    records = {name: _record(f"store {path}: table clusters, cluster {name}", text)
               for name, text in conn.execute("SELECT name, record FROM clusters")}
    leases: dict[str, list[Lease]] = {}
    for cluster, pool, node, cidr in conn.execute(
        "SELECT cluster, pool, node, cidr FROM leases"
    ):
        where = f"store {path}: table leases, cluster {cluster}, pool {pool}, node {node}"
        leases.setdefault(cluster, []).append(Lease(cluster, pool, node, _cidr(where, cidr)))
    history: dict[str, list[Released]] = {}
    last_seq = 0
    for cluster, pool, cidr, seq in conn.execute(
        "SELECT cluster, pool, cidr, seq FROM released"
    ):
        where = f"store {path}: table released, cluster {cluster}, pool {pool}"
        if type(seq) is not int:
            raise StoreError(f"{where}: seq {seq!r} is not an integer")
        history.setdefault(cluster, []).append(Released(cluster, pool, _cidr(where, cidr), seq))
        last_seq = max(last_seq, seq)
    clusters = {
        name: ClusterState(
            records.get(name),
            tuple(sorted(leases.get(name, ()))),
            tuple(sorted(history.get(name, ()))),
        )
        for name in sorted(set(records) | set(leases))
    }
    revision = 0
    if _has_changes(conn):
        revision = conn.execute("SELECT COALESCE(MAX(rev), 0) FROM changes").fetchone()[0]
    return Snapshot(clusters, last_seq + 1, revision)


def _write(conn: sqlite3.Connection, write: ClusterWrite) -> None:
    if write.record is None:
        for table in ("leases", "released"):
            conn.execute(f"DELETE FROM {table} WHERE cluster = ?", (write.cluster,))
        conn.execute("DELETE FROM clusters WHERE name = ?", (write.cluster,))
        return
    conn.execute(
        "INSERT INTO clusters (name, record) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET record = excluded.record",
        (write.cluster, record_to_json(write.record)),
    )
    conn.executemany(
        "DELETE FROM leases WHERE cluster = ? AND pool = ? AND node = ? AND cidr = ?",
        [(x.cluster, x.pool, x.node, str(x.cidr)) for x in write.delete],
    )
    conn.executemany(
        "INSERT INTO leases (cluster, pool, node, cidr) VALUES (?, ?, ?, ?)",
        [(x.cluster, x.pool, x.node, str(x.cidr)) for x in write.create],
    )
    conn.executemany(
        "INSERT INTO released (cluster, pool, cidr, seq) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (cluster, pool, cidr) DO UPDATE SET seq = excluded.seq",
        [(x.cluster, x.pool, str(x.cidr), x.seq) for x in write.released],
    )
