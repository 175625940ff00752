"""`memory:`: a store that lives as long as the process, for dry runs and unit tests.

It declares no capability of ipam/store/base.py: another process cannot open it (not a
SharedStore, so no speaker runs on it), and its leases do not expire (not a TtlStore).
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Callable, Iterable

from ipam.allocation import Lease
from ipam.state import ClusterState, ClusterWrite, Snapshot, apply_write
from ipam.store.base import LeaseEvent, LeaseWatch, R, Store


class MemoryStore(Store):
    def __init__(self) -> None:
        self.url = "memory:"
        self._clusters: dict[str, ClusterState] = {}
        self._next_seq = 1
        self._revision = 0  # one per write, like an etcd transaction
        # Every lease change, oldest first, for watchers; kept whole (nothing compacts it).
        self._log: list[LeaseEvent] = []
        self._changed = threading.Condition()

    def snapshot(self) -> Snapshot:
        with self._changed:
            return Snapshot(dict(self._clusters), self._next_seq, self._revision)

    def update(self, plan: Callable[[Snapshot], tuple[ClusterWrite | None, R]],
               cluster: str | None = None) -> R:
        with self._changed:
            write, result = plan(Snapshot(dict(self._clusters), self._next_seq, self._revision))
            if write is not None:
                old = self._clusters.get(write.cluster, ClusterState(None))
                apply_write(self._clusters, write)
                if write.released:
                    self._next_seq = max(h.seq for h in write.released) + 1
                self._record_changes(old.leases, write)
            return result

    def _record_changes(self, before: tuple[Lease, ...], write: ClusterWrite) -> None:
        held = set(before)
        gone = before if write.record is None else [x for x in write.delete if x in held]
        made = () if write.record is None else write.create
        if not gone and not made:
            return
        self._revision += 1
        self._log += [LeaseEvent("delete", x, self._revision) for x in gone]
        self._log += [LeaseEvent("put", x, self._revision) for x in made]
        self._changed.notify_all()

    def watch(self, cluster: str, start_revision: int | None = None,
              known: Iterable[Lease] = (), node: str | None = None) -> LeaseWatch:
        # known serves only to resync after compaction, which this store never does.
        return _MemoryWatch(self, cluster, start_revision, node)


class _MemoryWatch(LeaseWatch):
    def __init__(self, store: MemoryStore, cluster: str, start_revision: int | None,
                 node: str | None) -> None:
        self._store = store
        self._cluster = cluster
        self._node = node
        self._closed = False
        with store._changed:
            if start_revision is None:
                state = store._clusters.get(cluster, ClusterState(None))
                self._pending = deque(
                    LeaseEvent("put", x, store._revision) for x in state.leases
                    if node in (None, x.node))
                self._at = len(store._log)
            else:
                self._pending = deque()
                self._at = bisect.bisect_left(store._log, start_revision,
                                              key=lambda e: e.revision)

    def __next__(self) -> LeaseEvent:
        if self._pending and not self._closed:
            return self._pending.popleft()
        log = self._store._log
        with self._store._changed:
            while not self._closed:
                while self._at < len(log):
                    event = log[self._at]
                    self._at += 1
                    if event.lease.cluster == self._cluster and \
                            self._node in (None, event.lease.node):
                        return event
                self._store._changed.wait()
        raise StopIteration

    def close(self) -> None:
        with self._store._changed:
            self._closed = True
            self._store._changed.notify_all()
