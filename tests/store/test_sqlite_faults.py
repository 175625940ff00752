"""The SQLite store's faults of issue 14, met as the user meets them, through the CLI: a hot
journal left by a writer killed mid-transaction (fault 4), store paths that SQLite would read
as URIs (fault 5) and corrupt records (fault 7)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_support import (
    BASE_SPEC,
    NETPLAN,
    Netplan,
    Result,
    assert_one_error_line,
    base_env,
    sha256,
)

# Takes the write lock, changes every table, and writes more than its page cache holds, so
# that SQLite spills uncommitted pages into the file itself; then waits to be killed.
KILLED_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size = 10")
conn.execute("BEGIN IMMEDIATE")
conn.execute("DELETE FROM leases")
conn.execute("UPDATE clusters SET record = '{}'")
conn.executemany("INSERT INTO released (cluster, pool, cidr, seq) VALUES ('x', 'p', ?, ?)",
                 [(f"10.{i >> 8}.{i & 255}.0/24", i) for i in range(5000)])
print("ready", flush=True)
sys.stdin.read()
"""


def build_store(netplan: Netplan, db: Path) -> dict:
    """A store holding BASE_SPEC's cluster; what `show -o json` says of it."""
    netplan.allocate(netplan.spec(BASE_SPEC), db)
    return netplan.show(db)


def kill_a_writer_mid_transaction(db: Path) -> None:
    """Leave `db` as a writer killed with -9 leaves it: a hot journal beside a file that holds
    pages of a transaction that never committed."""
    before = sha256(db)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline() == b"ready\n"
    finally:
        writer.kill()
        writer.wait(timeout=10)
    assert Path(f"{db}-journal").stat().st_size > 0
    assert sha256(db) != before, "the writer spilled nothing: the test would prove nothing"


def assert_reads_the_committed_state(run, db: Path, spec: Path, shown: dict) -> None:
    r = run("show", "--store", db, "-o", "json")
    assert r.returncode == 0, r.describe()
    assert json.loads(r.stdout) == shown
    r = run("check", "--store", db, "-o", "json")
    assert r.returncode == 0, r.describe()
    assert json.loads(r.stdout)["problems"] == []
    r = run("plan", "-f", spec, "--store", db, "-o", "json")
    assert r.returncode == 0, r.describe()
    assert {c["action"] for c in json.loads(r.stdout)["changes"]} == {"keep"}


def test_reading_commands_read_the_committed_state_behind_a_hot_journal(tmp_path):
    netplan = Netplan(tmp_path)
    db = tmp_path / "netplan.db"
    shown = build_store(netplan, db)
    kill_a_writer_mid_transaction(db)
    assert_reads_the_committed_state(netplan, db, netplan.spec(BASE_SPEC), shown)
    # This reader could write the directory: it rolled the journal back, as a writer would.
    assert not Path(f"{db}-journal").exists()
    assert {x for x in os.listdir(tmp_path)} == {"netplan.db", "spec.yaml"}


def test_a_reader_that_cannot_write_the_directory_reads_the_committed_state(tmp_path):
    # A directory of its own that another user can reach (pytest's tmp_path is the owner's
    # alone): root ignores permissions, so as root the commands run as nobody.
    as_root = os.geteuid() == 0
    # setpriv is util-linux's, essential on Debian: its absence is a broken machine, not a
    # reason to leave this untested.
    assert not as_root or shutil.which("setpriv"), "setpriv is needed to drop to nobody"
    home = Path(tempfile.mkdtemp(prefix="netplan-ro-"))
    try:
        netplan = Netplan(home)
        db = home / "netplan.db"
        shown = build_store(netplan, db)
        spec = netplan.spec(BASE_SPEC)
        kill_a_writer_mid_transaction(db)
        for path in (db, Path(f"{db}-journal")):
            path.chmod(0o644)
        home.chmod(0o555)
        before = {name: sha256(home / name) for name in os.listdir(home)}

        def run(*args) -> Result:
            drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            argv = [str(a) for a in args]
            proc = subprocess.run([*(drop if as_root else []), NETPLAN, *argv], cwd=home,
                                  env=base_env(), capture_output=True, text=True, timeout=60)
            return Result(argv, proc.returncode, proc.stdout, proc.stderr)

        assert_reads_the_committed_state(run, db, spec, shown)
        assert {name: sha256(home / name) for name in os.listdir(home)} == before
    finally:
        home.chmod(0o755)
        shutil.rmtree(home)


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


@pytest.fixture(scope="module")
def history_store(tmp_path_factory) -> Path:
    """A store holding BASE_SPEC's cluster and a released CIDR, built once for the module."""
    home = tmp_path_factory.mktemp("history-store")
    netplan = Netplan(home)
    db = home / "netplan.db"
    build_store(netplan, db)
    r = netplan("release", "--cluster", "demo", "node-c", "--store", db)
    assert r.returncode == 0, r.describe()
    return db


CORRUPTIONS = {
    "record-without-pools": ("UPDATE clusters SET record = json_remove(record, '$.pools')",
                             ("clusters", "demo", "pools")),
    "record-not-json": ("UPDATE clusters SET record = '{\"cluster\": \"demo\", \"pools\": 7'",
                        ("clusters", "demo", "JSON")),
    "lease-cidr": ("UPDATE leases SET cidr = '10.244.0.7' WHERE node = 'node-a'",
                   ("leases", "demo", "node-a", "10.244.0.7")),
    "released-cidr": ("UPDATE released SET cidr = 'x'", ("released", "demo", "'x'")),
}


@pytest.mark.parametrize(("corruption", "command"), [
    *((name, "show") for name in CORRUPTIONS),
    ("record-without-pools", "check"), ("record-without-pools", "plan"),
    ("record-without-pools", "allocate"),
])
def test_a_corrupt_record_is_a_store_error_that_names_it(tmp_path, history_store, corruption,
                                                         command):
    netplan = Netplan(tmp_path)
    db = tmp_path / "netplan.db"
    shutil.copyfile(history_store, db)
    sql, named = CORRUPTIONS[corruption]
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql)
    conn.close()
    before = sha256(db)
    spec = ["-f", netplan.spec(BASE_SPEC)] if command in ("plan", "allocate") else []
    line = assert_one_error_line(netplan(command, *spec, "--store", db), 3)
    assert all(s in line for s in named), line
    assert sha256(db) == before
