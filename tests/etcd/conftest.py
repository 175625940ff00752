"""Fixtures of the etcd integration tests: real etcd members started per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The store-driving plans live with the Store contract suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from etcd_server import EtcdCluster


@pytest.fixture
def etcd(tmp_path):
    """One fresh etcd member."""
    cluster = EtcdCluster(tmp_path / "etcd").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd3(tmp_path):
    """A fresh three-member etcd cluster."""
    cluster = EtcdCluster(tmp_path / "etcd3", size=3).start()
    yield cluster
    cluster.stop()
