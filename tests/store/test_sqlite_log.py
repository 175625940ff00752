"""The SQLite store's change log: trimmed on every write, and a watcher that fell behind the
trim is resynced from a snapshot, as an etcd watch is after a compaction."""

from __future__ import annotations

import sqlite3

import pytest
from store_support import allocate, release, summary, take

import ipam.store.sqlite as sqlite_store
from ipam.store import open_store


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "KEEP_CHANGES", 5)
    with open_store(str(tmp_path / "netplan.db")) as s:
        yield s


def log_revisions(store) -> list[int]:
    with sqlite3.connect(store.path) as conn:
        return [rev for (rev,) in conn.execute("SELECT rev FROM changes ORDER BY rev")]


def test_every_write_trims_the_log_to_its_last_changes(store):
    for i in range(12):
        store.update(allocate("demo", [f"n{j:02d}" for j in range(i + 1)]))
    assert log_revisions(store) == list(range(8, 13))
    assert store.snapshot().revision == 12  # revisions go on: the log's key never repeats


def test_a_watch_resumed_behind_the_trim_gets_the_difference_then_the_changes(store, caplog):
    store.update(allocate("demo", ["a", "b", "c"]))
    with store.watch("demo") as watch:
        held = {e.lease for e in take(watch, 3)}
    start = store.snapshot().revision + 1
    store.update(release("demo", {"a"}))
    for i in range(8):  # more changes than the log keeps
        store.update(allocate("demo", ["b", "c", *[f"n{j}" for j in range(i + 1)]]))
    assert log_revisions(store)[0] > start
    with store.watch("demo", start, known=held) as watch:
        events = take(watch, 9)
        assert all(e.resync for e in events)
        assert summary(events) == [("delete", "a", "10.244.0.0/24")] + [
            ("put", f"n{j}", f"10.244.{3 + j}.0/24") for j in range(8)]
        store.update(release("demo", {"b"}))
        (after,) = take(watch, 1)
    assert summary([after]) == [("delete", "b", "10.244.1.0/24")] and not after.resync
    assert "trimmed from the log; resynced from a snapshot" in caplog.text


def test_a_live_watch_that_falls_behind_is_resynced(store):
    store.update(allocate("demo", ["a"]))
    with store.watch("demo") as watch:
        take(watch, 1)
        for i in range(10):  # all before the watch polls again
            store.update(allocate("demo", ["a", *[f"n{j}" for j in range(i + 1)]]))
        events = take(watch, 10)
    assert all(e.resync for e in events)
    assert {e.lease.node for e in events} == {f"n{j}" for j in range(10)}
