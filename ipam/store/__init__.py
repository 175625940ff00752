"""Lease stores: the Store interface and its back ends (memory, sqlite, etcd)."""

from __future__ import annotations

from dataclasses import replace

from ipam.errors import InvalidInput
from ipam.store.base import LeaseEvent, LeaseWatch, Store, StoreOptions
from ipam.store.tls import check_tls_files
from ipam.store.url import parse_store_url

__all__ = ["LeaseEvent", "LeaseWatch", "Store", "StoreOptions", "open_store"]


def open_store(url: str, options: StoreOptions | None = None) -> Store:
    """A store from its --store spelling: a file path, `memory:` or an etcd URL
    (ipam/store/url.py). Malformed spellings and unusable TLS files are InvalidInput."""
    options = options or StoreOptions()
    if not url:
        raise InvalidInput("--store", url, "is empty")
    if url == "memory:":
        from ipam.store.memory import MemoryStore

        return MemoryStore()
    location = parse_store_url(url)
    if location is not None:
        check_tls_files(options.etcd_ca, options.etcd_cert, options.etcd_key)
        from ipam.store.etcd import EtcdStore

        tls = options.etcd_tls or location.tls
        return EtcdStore(location.url, replace(options, etcd_tls=tls))
    from ipam.store.sqlite import SQLiteStore

    return SQLiteStore(url)
