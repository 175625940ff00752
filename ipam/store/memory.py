"""`memory:`: a store that lives as long as the process, for dry runs and unit tests."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ipam.store.base import ClusterState, ClusterWrite, R, Snapshot, Store, apply_write


class MemoryStore(Store):
    def __init__(self) -> None:
        self.url = "memory:"
        self._clusters: dict[str, ClusterState] = {}
        self._next_seq = 1
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(dict(self._clusters), self._next_seq)

    def update(self, plan: Callable[[Snapshot], tuple[ClusterWrite | None, R]]) -> R:
        with self._lock:
            write, result = plan(Snapshot(dict(self._clusters), self._next_seq))
            if write is not None:
                apply_write(self._clusters, write)
                if write.released:
                    self._next_seq = max(h.seq for h in write.released) + 1
            return result
