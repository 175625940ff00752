"""Lease stores: the Store interface and its back ends (memory, sqlite, etcd)."""

from __future__ import annotations

from ipam.errors import InvalidInput
from ipam.store.base import (
    ClusterRecord,
    ClusterState,
    ClusterWrite,
    PoolRecord,
    Snapshot,
    Store,
)

__all__ = [
    "ClusterRecord", "ClusterState", "ClusterWrite", "PoolRecord", "Snapshot", "Store",
    "open_store",
]


def open_store(url: str) -> Store:
    """A store from its --store spelling: a file path, `memory:` or `etcd://...`."""
    if not url:
        raise InvalidInput("--store", url, "is empty")
    if url == "memory:":
        from ipam.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith("etcd://"):
        raise InvalidInput("--store", url, "needs the etcd store, which is not built yet")
    if "://" in url:
        raise InvalidInput("--store", url, "is not a file path, memory: or etcd://HOST:PORT")
    from ipam.store.sqlite import SQLiteStore

    return SQLiteStore(url)
