"""The back ends the Store contract suite runs against: memory, sqlite, the etcd store on
the in-memory key-value layer (etcd-kv), and the etcd store on a real etcd."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from ipam.store import Store, StoreOptions, open_store
from ipam.store.etcd import EtcdStore
from ipam.store.etcd.memory_kv import MemoryKV

# The etcd launcher lives with the etcd integration tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "etcd"))
from etcd_server import EtcdCluster

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def etcd_for_contract(tmp_path_factory):
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd-contract")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["memory", "sqlite", "etcd-kv", "etcd"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def open_test_store(backend, tmp_path, request):
    """Open (another handle on) this test's store: same file, same etcd prefix."""
    opened: list[Store] = []
    if backend == "etcd-kv":
        kv = MemoryKV()

        def make() -> Store:
            # Every handle a store object of its own on the one key-value store.
            store = EtcdStore("etcd://memory", StoreOptions(), kv=kv)
            opened.append(store)
            return store

        yield make
        for store in opened:
            store.close()
        return
    if backend == "etcd":
        etcd = request.getfixturevalue("etcd_for_contract")
        url = etcd.url
        options = StoreOptions(etcd_prefix=f"/contract-{next(_prefixes)}", timeout=5)
    else:
        url = "memory:" if backend == "memory" else str(tmp_path / "netplan.db")
        options = StoreOptions()
    shared = open_store(url, options) if backend == "memory" else None

    def make() -> Store:
        store = shared or open_store(url, options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_test_store) -> Store:
    return open_test_store()
