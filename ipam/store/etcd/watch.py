"""The watch of a cluster's leases, or of one node's: resumed from the last revision
delivered when its stream fails, resynced from a snapshot when etcd compacted the history.

The key-value layer calls back from its stream thread with every revision's events, or
with the error that ended the stream; both go through one queue, so an error comes after
every event received before it, and a resume revision always follows a complete revision.

A lease may change keys: its node's first write after an upgrade puts the new key and
deletes the old one in one transaction (layout.py). The watch nets each revision's events
per lease, so that a consumer sees a lease go only when no key of the revision keeps it.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable

from ipam.allocation import Lease
from ipam.errors import StoreError, StoreUnavailable
from ipam.store.base import LeaseEvent, ResyncingWatch
from ipam.store.codec import lease_from_json, record_from_json
from ipam.store.etcd.kv import (
    KV,
    Compacted,
    Range,
    StreamLost,
    WatchEvent,
    prefix_end,
    read_all,
)
from ipam.store.etcd.layout import Keys

_CLOSED = object()


def _at_old_keys(kv: KV, keys: Keys, cluster: str, node: str) -> bool:
    """Whether a lease of the node still stands at its key of the old layout,
    `<cluster>/leases/<pool>/<node>` (a write of the cluster moves it): such a node is
    watched with the whole cluster, filtered, and any other alone. Two small reads, the
    record for its pools and their old keys, whatever the size of the cluster."""
    _, record = kv.range(keys.of(cluster, "record"))
    if not record.kvs:
        return False
    try:
        pools = [p.pool.name for p in record_from_json(record.kvs[0].value).pools]
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"etcd key {keys.of(cluster, 'record')}: malformed value ({exc})"
                         ) from exc
    reply = kv.txn([], [Range(keys.of(cluster, "leases", pool, node)) for pool in pools])
    return any(r.kvs for r in reply.replies)


class EtcdWatch(ResyncingWatch):
    _history_lost = "compacted away"

    def __init__(self, kv: KV, keys: Keys, cluster: str, node: str | None,
                 start_revision: int | None, known: Iterable[Lease]) -> None:
        self._kv = kv
        self._cluster = cluster
        self._node = node
        self._queue: queue.Queue = queue.Queue()
        self._pending: deque[LeaseEvent] = deque()
        self._cancel: Callable[[], None] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._prefix = keys.node_leases(cluster)
        if node is not None and not _at_old_keys(kv, keys, cluster, node):
            self._prefix = keys.node_leases(cluster, node)
        # What the consumer holds once it took every event so far (lease -> lease).
        self._leases = {x: x for x in known if self._mine(x)}
        if start_revision is None:
            revision, now = self._listing()
            self._pending.extend(LeaseEvent("put", x, revision) for x in now.values())
            self._leases = now
            self._next = revision + 1
        else:
            self._next = start_revision
        self._subscribe()

    def _mine(self, lease: Lease) -> bool:
        return self._node is None or lease.node == self._node

    def _listing(self) -> tuple[int, dict]:
        revision, kvs = read_all(self._kv, self._prefix)
        now = [lease_from_json(kv.value) for kv in kvs]
        return revision, {x: x for x in now if self._mine(x)}

    def _subscribe(self) -> None:
        while True:
            try:
                cancel = self._kv.watch(self._prefix, prefix_end(self._prefix), self._next,
                                        self._queue.put)
            except Compacted:
                self._resync()
                continue
            with self._lock:
                self._cancel = cancel
                if self._closed:
                    self._stop()
            return

    def _stop(self) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None

    def __next__(self) -> LeaseEvent:
        while True:
            if self._closed:
                raise StopIteration
            if self._pending:
                return self._pending.popleft()
            item = self._queue.get()
            if item is _CLOSED:
                continue
            if isinstance(item, Exception):
                try:
                    self._resume(item)
                except StoreError:
                    self.close()
                    raise
                continue
            at = 0
            for i in range(1, len(item) + 1):  # the events of each revision together
                if i == len(item) or item[i].mod_revision != item[at].mod_revision:
                    self._take(item[at:i])
                    at = i

    def _resume(self, error: Exception) -> None:
        """The stream ended: go on from self._next (the key-value layer moved on to the
        next endpoint if one failed)."""
        with self._lock:
            self._cancel = None
        if isinstance(error, StoreUnavailable):
            raise error
        if isinstance(error, Compacted):
            self._resync()
        elif not isinstance(error, StreamLost):
            raise error
        self._subscribe()

    def _take(self, events: list[WatchEvent]) -> None:
        """One revision's events, netted per lease: a lease that one key of the revision
        gives up and another takes (a move to the new layout, a TTL tie) has not changed."""
        revision = events[0].mod_revision  # of a delete event too: the deletion's revision
        gone: dict[Lease, None] = {}
        came: dict[Lease, None] = {}
        for event in events:
            old = lease_from_json(event.prev_value) if event.prev_value else None
            new = lease_from_json(event.value) if event.kind == "put" else None
            if old is not None and old != new and self._mine(old):
                gone[old] = None
            if new is not None and self._mine(new):
                came[new] = None
        for lease in gone:
            if lease not in came:
                self._leases.pop(lease, None)
                self._pending.append(LeaseEvent("delete", lease, revision))
        for lease in came:
            if lease not in self._leases:
                self._leases[lease] = lease
                self._pending.append(LeaseEvent("put", lease, revision))
        self._next = max(self._next, revision + 1)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop()
        self._queue.put(_CLOSED)
