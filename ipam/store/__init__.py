"""Lease stores: the Store interface and its back ends (memory, sqlite, etcd)."""

from __future__ import annotations

from dataclasses import dataclass

from ipam.errors import InvalidInput
from ipam.store.base import LeaseEvent, LeaseWatch, Store

__all__ = ["LeaseEvent", "LeaseWatch", "Store", "StoreOptions", "open_store"]


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Connection settings that only some back ends use (etcd)."""

    etcd_prefix: str = "/netplan"
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    etcd_user: str | None = None
    etcd_password: str | None = None  # from $NETPLAN_ETCD_PASSWORD, never printed
    timeout: float = 5.0  # seconds to wait for an answer before the store counts as down


def open_store(url: str, options: StoreOptions | None = None) -> Store:
    """A store from its --store spelling: a file path, `memory:` or `etcd://...`."""
    options = options or StoreOptions()
    if not url:
        raise InvalidInput("--store", url, "is empty")
    if url == "memory:":
        from ipam.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith("etcd://"):
        from ipam.store.etcd import EtcdStore

        return EtcdStore(url, options)
    if "://" in url:
        raise InvalidInput("--store", url, "is not a file path, memory: or etcd://HOST:PORT")
    from ipam.store.sqlite import SQLiteStore

    return SQLiteStore(url)
