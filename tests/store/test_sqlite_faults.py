"""The SQLite store's faults of issue 14, met as the user meets them, through the CLI: store
paths that SQLite would read as URIs (fault 5)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_support import BASE_SPEC, Netplan


@pytest.mark.parametrize("name", ["h#frag.db", "a?b.db", "c%41.db", ":memory:"])
def test_a_store_path_names_the_file_literally(tmp_path, name):
    netplan = Netplan(tmp_path)
    spec = netplan.spec(BASE_SPEC)
    allocated = netplan.allocate(spec, Path(name))
    assert set(os.listdir(tmp_path)) == {"spec.yaml", name}
    db = tmp_path / name
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert db.read_bytes().startswith(b"SQLite format 3\0")
    (shown,) = netplan.show(Path(name))["clusters"]
    assert shown["nodes"] == allocated["nodes"]
