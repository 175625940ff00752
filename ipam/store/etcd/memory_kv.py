"""The key-value interface in memory, with etcd's revisions, compares, leases, watch history
and limits: the etcd store's MockTransport, so that its logic is tested without a server.

Like etcd: one revision per transaction that changes something; a key's create and mod
revisions and version; reads at a past revision until compact(); at most MAX_TXN_OPS
operations a branch, and a key put or deleted at most once in a transaction. Not like etcd:
leases expire only when a test says so (expire()), and `cut_after(n)` makes the store go
away after n more transactions that write, as a killed run or a lost etcd would see it.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ipam.errors import StoreUnavailable
from ipam.store.etcd.kv import (
    KV,
    MAX_TXN_OPS,
    Compacted,
    Compare,
    Delete,
    Op,
    Put,
    RangeReply,
    TxnReply,
    WatchCallback,
    WatchEvent,
)


@dataclass(frozen=True, slots=True)
class StoredKey:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass
class _Watcher:
    start: str
    end: str | None
    callback: WatchCallback

    def covers(self, key: str) -> bool:
        return key == self.start if self.end is None else self.start <= key < self.end


class MemoryKV(KV):
    def __init__(self, max_txn_ops: int = MAX_TXN_OPS) -> None:
        self.where = "memory"
        self.max_txn_ops = max_txn_ops
        self.revision = 1  # etcd starts at 1
        self.compacted = 0
        self.transactions = 0  # every transaction asked for, for tests
        self._keys: list[str] = []  # every key that ever existed, sorted
        self._history: dict[str, list[tuple[int, StoredKey | None]]] = {}
        self._leases: dict[int, tuple[int, set[str]]] = {}  # id -> (ttl, its keys)
        self._lease_ids = itertools.count(0x1000)
        self._watchers: list[_Watcher] = []
        self._log: list[tuple[int, list[tuple[str, WatchEvent]]]] = []  # for replays
        self._writes_left: int | None = None
        self._lock = threading.RLock()

    # --- test controls ---------------------------------------------------------------------

    def cut_after(self, writes: int | None) -> None:
        """After this many more transactions that write, every call fails as if etcd were
        gone; None: never."""
        self._writes_left = writes

    def compact(self, revision: int) -> None:
        with self._lock:
            self.compacted = revision

    def expire(self, lease_id: int) -> None:
        """The lease runs out, as if its holder had died."""
        self._end_lease(lease_id)

    def expire_all(self) -> None:
        """Every lease runs out, as when the writers that held them died."""
        for lease_id in list(self._leases):
            self._end_lease(lease_id)

    def keys(self, prefix: str = "") -> dict[str, bytes]:
        """Every live key starting with prefix and its value."""
        with self._lock:
            return {k: kv.value for k in self._keys if k.startswith(prefix)
                    and (kv := self._now(k)) is not None}

    # --- reading ---------------------------------------------------------------------------

    @property
    def is_cut(self) -> bool:
        """Whether the writes cut_after allowed are spent: every call fails."""
        return self._writes_left is not None and self._writes_left <= 0

    def _check_up(self) -> None:
        if self.is_cut:
            raise StoreUnavailable(f"etcd {self.where}: no endpoint answered (cut)")

    def _now(self, key: str) -> StoredKey | None:
        versions = self._history.get(key)
        return versions[-1][1] if versions else None

    def _at(self, key: str, revision: int) -> StoredKey | None:
        versions = self._history.get(key, [])
        i = bisect.bisect_right(versions, revision, key=lambda v: v[0])
        return versions[i - 1][1] if i else None

    def _select(self, key: str, range_end: str | None, limit: int, revision: int
                ) -> RangeReply:
        if range_end is None:
            names = [key] if key in self._history else []
        else:
            names = self._keys[bisect.bisect_left(self._keys, key):
                               bisect.bisect_left(self._keys, range_end)]
        found = [kv for k in names if (kv := self._at(k, revision)) is not None]
        if limit and len(found) > limit:
            return RangeReply(found[:limit], True)
        return RangeReply(found, False)

    def range(self, key: str, range_end: str | None = None, *, limit: int = 0,
              revision: int = 0) -> tuple[int, RangeReply]:
        with self._lock:
            self._check_up()
            if revision and revision <= self.compacted:
                raise Compacted(f"revision compacted at {self.compacted}")
            return self.revision, self._select(key, range_end, limit, revision or self.revision)

    # --- writing ---------------------------------------------------------------------------

    def _holds(self, c: Compare) -> bool:
        if c.range_end is None:
            targets = [self._now(c.key)]
        else:
            targets = self._select(c.key, c.range_end, 0, self.revision).kvs or [None]
        for kv in targets:
            got = 0 if kv is None else kv.mod_revision if c.target == "mod" else kv.version
            if got != c.value:
                return False
        return True

    def _set(self, key: str, kv: StoredKey | None) -> None:
        if key not in self._history:
            bisect.insort(self._keys, key)
            self._history[key] = []
        self._history[key].append((self.revision + 1, kv))

    def txn(self, compare: Sequence[Compare], success: Sequence[Op],
            failure: Sequence[Op] = ()) -> TxnReply:
        with self._lock:
            self._check_up()
            self.transactions += 1
            ok = all(self._holds(c) for c in compare)
            ops = success if ok else failure
            if len(ops) > self.max_txn_ops:
                raise StoreUnavailable(f"etcd {self.where}: transaction: too many operations "
                                       "in txn request")
            written = [op.key for op in ops if isinstance(op, (Put, Delete))]
            if len(written) != len(set(written)):
                raise StoreUnavailable(f"etcd {self.where}: transaction: duplicate key given "
                                       "in txn request")
            replies: list[RangeReply | None] = []
            events: list[tuple[str, WatchEvent]] = []
            for op in ops:
                if isinstance(op, Put):
                    events.append(self._put(op))
                    replies.append(None)
                elif isinstance(op, Delete):
                    events += self._delete(op.key, op.range_end)
                    replies.append(None)
                else:
                    replies.append(self._select(op.key, op.range_end, op.limit, self.revision))
            if events:
                self._commit(events)
            return TxnReply(ok, self.revision, replies)

    def _put(self, op: Put) -> tuple[str, WatchEvent]:
        if op.lease and op.lease not in self._leases:
            raise StoreUnavailable(f"etcd {self.where}: transaction: requested lease not found")
        old = self._now(op.key)
        value = op.value.encode() if isinstance(op.value, str) else op.value
        rev = self.revision + 1
        if old is not None and old.lease and old.lease != op.lease:
            self._leases[old.lease][1].discard(op.key)
        if op.lease:
            self._leases[op.lease][1].add(op.key)
        self._set(op.key, StoredKey(op.key.encode(), value,
                                    old.create_revision if old else rev, rev,
                                    old.version + 1 if old else 1, op.lease))
        return op.key, WatchEvent("put", op.key.encode(), value, rev,
                                  old.value if old else None)

    def _delete(self, key: str, range_end: str | None) -> list[tuple[str, WatchEvent]]:
        gone = self._select(key, range_end, 0, self.revision).kvs
        events = []
        for kv in gone:
            name = kv.key.decode()
            if kv.lease in self._leases:
                self._leases[kv.lease][1].discard(name)
            self._set(name, None)
            events.append((name, WatchEvent("delete", kv.key, b"", self.revision + 1,
                                            kv.value)))
        return events

    def _commit(self, events: list[tuple[str, WatchEvent]]) -> None:
        self.revision += 1
        self._log.append((self.revision, events))
        if self._writes_left is not None:
            self._writes_left -= 1
        for watcher in list(self._watchers):
            mine = [e for key, e in events if watcher.covers(key)]
            if mine:
                watcher.callback(mine)

    # --- leases ----------------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        with self._lock:
            self._check_up()
            lease_id = next(self._lease_ids)
            self._leases[lease_id] = (ttl, set())
            return lease_id

    def refresh(self, lease_id: int) -> int:
        with self._lock:
            self._check_up()
            held = self._leases.get(lease_id)
            return held[0] if held else 0

    def revoke(self, lease_id: int) -> None:
        self._check_up()
        self._end_lease(lease_id)

    def _end_lease(self, lease_id: int) -> None:
        with self._lock:
            held = self._leases.pop(lease_id, None)
            if held is None:
                return
            events = [e for key in sorted(held[1]) for e in self._delete(key, None)]
            if events:
                self._commit(events)

    # --- watching --------------------------------------------------------------------------

    def watch(self, key: str, range_end: str | None, start_revision: int,
              callback: WatchCallback) -> Callable[[], None]:
        with self._lock:
            self._check_up()
            if start_revision and start_revision <= self.compacted:
                raise Compacted(f"revision compacted at {self.compacted}")
            watcher = _Watcher(key, range_end, callback)
            if start_revision:
                for revision, events in self._log:
                    mine = [e for k, e in events if revision >= start_revision
                            and watcher.covers(k)]
                    if mine:
                        callback(mine)
            self._watchers.append(watcher)

        def cancel() -> None:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

        return cancel
