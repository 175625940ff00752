"""What the speaker asks of its store goes through the capabilities the back ends declare
(ipam/store/base.py: SharedStore, TtlStore), never through the --store spelling (issue 14)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from bgp.speaker import Speaker, SpeakerConfig
from bgp.topology import Topology
from ipam.errors import InvalidInput
from ipam.store import StoreOptions, open_store
from ipam.store.base import SharedStore, TtlStore
from planner.routing import topology_of
from planner.spec import load_spec_text

BGP = Path(__file__).resolve().parents[2] / "bgp"
SPEC = """
cluster: demo
nodes: [{name: node-a, address: 127.0.0.2}]
bgp: {topology: none, peers: [{address: 127.0.0.1, asNumber: 64512}]}
"""


def test_each_back_end_declares_what_it_can_do(tmp_path):
    memory = open_store("memory:")
    assert not isinstance(memory, SharedStore) and not isinstance(memory, TtlStore)
    sqlite = open_store(str(tmp_path / "netplan.db"))
    assert isinstance(sqlite, SharedStore) and not isinstance(sqlite, TtlStore)
    etcd = open_store("etcd://127.0.0.1:1", StoreOptions())  # not contacted
    assert isinstance(etcd, SharedStore) and isinstance(etcd, TtlStore)
    assert etcd.location() == "etcd://127.0.0.1:1" and etcd.exists()


def test_a_file_store_is_found_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("netplan.db")
    assert not store.exists()
    assert store.location() == str(tmp_path / "netplan.db")
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    from planner.cli import main

    assert main(["allocate", "-f", str(spec), "--store", "netplan.db"]) == 0
    assert store.exists()
    location = store.location()
    monkeypatch.chdir("/")
    assert "demo" in open_store(location).snapshot().clusters


def _topology() -> Topology:
    return topology_of(load_spec_text(SPEC), secrets=True)


def test_the_speaker_asks_the_store_not_its_url(tmp_path, caplog):
    with pytest.raises(InvalidInput, match="lives in one process"):
        Speaker(SpeakerConfig(_topology(), "node-a", "memory:", StoreOptions()))
    with pytest.raises(InvalidInput, match="--lease-ttl"):
        Speaker(SpeakerConfig(_topology(), "node-a", str(tmp_path / "n.db"), StoreOptions(),
                              lease_ttl=10))
    with caplog.at_level(logging.WARNING):
        Speaker(SpeakerConfig(_topology(), "node-a", str(tmp_path / "n.db"), StoreOptions()))
    assert "does not exist" in caplog.text


def test_bgp_never_reads_a_store_url_nor_guesses_a_capability():
    """No string compared with a store spelling, no hasattr: capabilities are declared."""
    for path in sorted(BGP.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ("://", "memory:"):
                pytest.fail(f"{path.name}:{node.lineno} reads a store spelling {node.value!r}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr":
                pytest.fail(f"{path.name}:{node.lineno} guesses a capability with hasattr")
