"""Fixtures of the CLI tests; the helpers live in cli_support.py (imported by the tests)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cli_support import BASE_SPEC, Netplan, StoreState, run_netplan, sha256, write_spec


@pytest.fixture
def netplan(tmp_path: Path) -> Netplan:
    return Netplan(tmp_path)


@pytest.fixture(scope="session")
def _base_store_template(tmp_path_factory) -> tuple[Path, dict]:
    """One store holding BASE_SPEC's cluster, built once and copied into each test."""
    d = tmp_path_factory.mktemp("base-store")
    spec = write_spec(d, BASE_SPEC)
    db = d / "netplan.db"
    r = run_netplan("allocate", "-f", spec, "--store", db, "-o", "json", cwd=d)
    assert r.returncode == 0, r.describe()
    r = run_netplan("show", "--store", db, "-o", "json", cwd=d)
    assert r.returncode == 0, r.describe()
    show = json.loads(r.stdout)
    assert [c["cluster"] for c in show["clusters"]] == ["demo"]
    return db, show


@pytest.fixture
def populated_store(tmp_path: Path, _base_store_template) -> StoreState:
    """A private copy of a store that already holds the valid cluster `demo`."""
    template, show = _base_store_template
    db = tmp_path / "netplan.db"
    shutil.copyfile(template, db)
    os.chmod(db, 0o600)
    return StoreState(db, sha256(db), show)
