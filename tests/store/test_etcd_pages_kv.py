"""The record's node pages on the etcd store, on the in-memory key-value layer: a node
that joins rewrites its own page only, a new node's address is a claim, kept nodes keep
their entries (tests/etcd/test_etcd_scale.py keeps the limits of a real etcd)."""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import pytest

from ipam.store import StoreOptions
from ipam.store.etcd import EtcdStore
from ipam.store.etcd.memory_kv import MemoryKV
from planner.plan import build_plan
from planner.spec import load_spec_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "etcd"))
from etcd_support import write_spec  # noqa: E402


class KvEtcd:
    """One in-memory etcd, written as `netplan allocate` writes it."""

    def __init__(self) -> None:
        self.kv = MemoryKV()

    def store(self) -> EtcdStore:
        return EtcdStore("etcd://memory", StoreOptions(), kv=self.kv)

    def allocate(self, spec_path: str, keep_removed: bool = False) -> None:
        spec = load_spec_file(spec_path)
        with self.store() as store:
            store.update(lambda s: ((p := build_plan(spec, s, keep_removed)).write(), p),
                         cluster=spec.cluster)

    def keys(self, prefix: str) -> dict[str, bytes]:
        return self.kv.keys(prefix)

    def mod_revision(self, key: str) -> int:
        return self.kv.range(key)[1].kvs[0].mod_revision


@pytest.fixture
def etcd() -> KvEtcd:
    return KvEtcd()


def _pages(etcd: KvEtcd, cluster: str) -> dict[str, dict]:
    return {k.rsplit("/", 1)[1]: json.loads(v)
            for k, v in etcd.keys(f"/netplan/{cluster}/nodes/").items()}


def test_a_node_that_joins_rewrites_its_own_page_only(etcd, tmp_path):
    names = [f"node-{i:04d}" for i in range(1000)]
    spec = write_spec(tmp_path / "s.yaml", "demo", names)
    etcd.allocate(spec)
    before = {k: v for k, v in etcd.keys("/netplan/demo/nodes/").items()}
    sizes = [len(json.loads(v)) for v in before.values()]
    assert sum(sizes) == 1000 and 5 <= len(sizes) <= 50, sizes
    starts = sorted(n for n in names if zlib.crc32(n.encode()) % 64 == 0)
    assert sorted(k.rsplit("/", 1)[1] for k in before) == sorted({names[0], *starts})

    # A node that sorts among the others, but last in the spec: only the page holding it
    # changes, every other page stays byte for byte (node, index and addresses alike).
    joining = "node-0500a"
    assert zlib.crc32(joining.encode()) % 64  # joins a page, starts none
    spec = write_spec(tmp_path / "s.yaml", "demo", [*names, joining])
    etcd.allocate(spec)
    after = etcd.keys("/netplan/demo/nodes/")
    changed = [k for k in after if after[k] != before.get(k)]
    assert len(changed) == 1 and joining in json.loads(after[changed[0]])
    assert after.keys() == before.keys()


def test_a_new_nodes_address_goes_through_the_global_guard(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a"])
    etcd.allocate(spec)
    guard = etcd.mod_revision("/netplan/_guard")
    # The record key does not change; the new node's address is a claim all the same.
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    etcd.allocate(spec)
    assert etcd.mod_revision("/netplan/_guard") > guard


def _entries(etcd, cluster: str) -> dict[str, dict]:
    return {node: entry for page in _pages(etcd, cluster).values() for node, entry in page.items()}


def test_kept_nodes_keep_their_entries_while_other_specs_come_and_go(etcd, tmp_path):
    groups = {g: [f"{g}-{i:03d}" for i in range(size)] for g, size in zip("abc", (60, 50, 40))}
    for offset, g in enumerate("abc"):
        spec = write_spec(tmp_path / f"{g}.yaml", "demo", groups[g], offset=offset * 100)
        etcd.allocate(spec, keep_removed=True)
        if g == "b":
            kept_a = {n: e for n, e in _entries(etcd, "demo").items() if n.startswith("a-")}
    entries = _entries(etcd, "demo")
    # a's nodes, kept since b's run, are written as they were then: c's run left them be.
    assert {n: e for n, e in entries.items() if n.startswith("a-")} == kept_a
    assert all(e["kept"] is True for e in kept_a.values())
    assert all("kept" not in entries[n] for n in groups["c"])
    record = etcd.store().snapshot().clusters["demo"].record
    assert record.kept == tuple(groups["a"] + groups["b"])
    assert [n for n, _ in record.router_ids] == groups["c"] + groups["a"] + groups["b"]
