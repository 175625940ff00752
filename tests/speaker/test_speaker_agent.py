"""The agent against a memory store and a scripted ExaBGP (two pipes), without processes."""

from __future__ import annotations

import json
import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgp.agent import Agent, AgentConfig
from ipam.allocation import Lease
from ipam.errors import StoreUnavailable
from ipam.net import parse_cidr
from ipam.state import ClusterRecord, ClusterWrite
from ipam.store.base import LeaseWatch, Store
from ipam.store.memory import MemoryStore

WAIT = 10.0
ANNOUNCE = "announce attributes next-hop self nlri "
WITHDRAW = "withdraw attributes next-hop self nlri "
PING = "version"


def lease(node: str, cidr: str, pool: str = "pods-v4") -> Lease:
    return Lease("demo", pool, node, parse_cidr(cidr))


class FlakyStore(Store):
    """A memory store whose reads fail while it is down (writes, the test's, always work)."""

    url = "flaky:"

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.down = False
        self._watches: list[LeaseWatch] = []

    def write(self, create=(), delete=()) -> None:
        self.inner.update(lambda _: (ClusterWrite("demo", ClusterRecord("demo"),
                                                  tuple(delete), tuple(create)), None))

    def fail(self) -> None:
        self.down = True
        for watch in self._watches:
            watch.close()

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("store flaky: down")

    def snapshot(self):
        self._check()
        return self.inner.snapshot()

    def update(self, plan):
        return self.inner.update(plan)

    def watch(self, cluster, start_revision=None, known=(), node=None):
        self._check()
        watch = self.inner.watch(cluster, start_revision, known, node)
        self._watches.append(watch)
        return _FailingWatch(watch, self)


class _FailingWatch(LeaseWatch):
    def __init__(self, inner: LeaseWatch, store: FlakyStore) -> None:
        self._inner, self._store = inner, store

    def __next__(self):
        try:
            return next(self._inner)
        except StopIteration:
            self._store._check()  # closed by fail(): the store is unreachable
            raise

    def close(self) -> None:
        self._inner.close()


class ScriptedExaBGP:
    """Both pipes of the agent: read its commands, write what ExaBGP would say."""

    def __init__(self, tmp: Path, store: Store, neighbors=None, node: str = "node-a") -> None:
        self._commands, cmd_w = os.pipe()
        out_r, self._out_w = os.pipe()
        self._pending = b""  # read from the command pipe, not yet taken as lines
        self.pings = 0
        self.reports: list[dict] = []
        config = AgentConfig(
            cluster="demo", node=node, store=store.url, report="(unused)",
            prefixes_file=str(tmp / "prefixes.json"), neighbors=neighbors or {4: None},
        )
        self.agent = Agent(config, store, os.fdopen(cmd_w, "wb"), self.reports.append)
        self._thread = threading.Thread(target=self.agent.run, args=(os.fdopen(out_r, "rb"),),
                                        daemon=True)
        self._thread.start()

    def _line(self, timeout: float, pings: bool = False) -> str | None:
        """The next command line; PINGs are counted in self.pings and skipped unless asked
        for (left unanswered, they stop: the agent keeps one in flight)."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._commands], [], [], left)[0]:
                    return None
                self._pending += os.read(self._commands, 1 << 16)
            line, self._pending = self._pending.split(b"\n", 1)
            if line.decode() != PING:
                return line.decode()
            self.pings += 1
            if pings:
                return PING

    def command(self, timeout: float = WAIT, pings: bool = False) -> str:
        line = self._line(timeout, pings)
        assert line is not None, f"no command within {timeout} s; reports {self.reports}"
        return line

    def no_command(self, within: float = 0.5) -> None:
        line = self._line(within)
        assert line is None, f"unexpected command {line!r}"

    def say(self, *lines: str) -> None:
        os.write(self._out_w, "".join(line + "\n" for line in lines).encode())

    def say_json(self, kind: str, **neighbor) -> None:
        body = {"address": {"local": "127.0.0.2", "peer": "127.0.0.1"}, **neighbor}
        self.say(json.dumps({"exabgp": "5.0.0", "type": kind, "neighbor": body}))

    def report(self, kind: str, count: int = 1, timeout: float = WAIT) -> list[dict]:
        """Wait for count reports of a kind; every one of that kind so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r[kind] for r in list(self.reports) if kind in r]
            if len(found) >= count:
                return found
            time.sleep(0.01)
        pytest.fail(f"not {count} {kind} reports within {timeout} s: {self.reports}")

    def stop(self) -> None:
        os.close(self._out_w)  # end of input: ExaBGP is gone
        self._thread.join(WAIT)
        assert not self._thread.is_alive()
        os.close(self._commands)


@pytest.fixture
def store() -> FlakyStore:
    flaky = FlakyStore()
    flaky.write(create=[lease("node-a", "10.244.0.0/24"), lease("node-b", "10.244.1.0/24"),
                        lease("node-a", "10.250.0.0/24", pool="extra")])
    return flaky


@pytest.fixture
def exabgp(tmp_path: Path, store: FlakyStore) -> Iterator[ScriptedExaBGP]:
    scripted = ScriptedExaBGP(tmp_path, store)
    yield scripted
    scripted.stop()


def test_announces_the_nodes_leases_then_follows_the_store(exabgp, store):
    assert exabgp.report("hello")
    assert exabgp.command() == ANNOUNCE + "10.244.0.0/24 10.250.0.0/24"
    store.write(delete=[lease("node-a", "10.250.0.0/24", pool="extra")])
    assert exabgp.command() == WITHDRAW + "10.250.0.0/24"
    store.write(create=[lease("node-a", "10.251.0.0/24", pool="more"),
                        lease("node-c", "10.244.2.0/24")])  # another node's: not ours
    assert exabgp.command() == ANNOUNCE + "10.251.0.0/24"
    exabgp.no_command()
    announced = exabgp.report("announced", count=3)
    assert announced[0] == {"add": ["10.244.0.0/24", "10.250.0.0/24"], "del": []}
    assert announced[1:] == [{"add": [], "del": ["10.250.0.0/24"]},
                             {"add": ["10.251.0.0/24"], "del": []}]


def test_acknowledgements_report_latency_per_prefix(exabgp):
    exabgp.command()
    exabgp.say("done")
    (acked,) = exabgp.report("acked")
    assert acked["errors"] == 0
    assert len(acked["latencies"]) == 2 and all(0 <= s < WAIT for s in acked["latencies"])
    exabgp.say("error", "done")  # an acknowledgement of nothing sent is ignored
    time.sleep(0.2)
    assert len(exabgp.report("acked")) == 1


def test_one_ping_stays_in_flight_while_a_line_is_unacknowledged(exabgp):
    """ExaBGP pauses between the passes of its loop unless a pass read a command: while a
    line is unacknowledged the agent keeps one PING in flight. ExaBGP answers a PING at once,
    ahead of the lines it is still working through; the reply line before its `done` tells
    the two apart."""
    assert exabgp.command(pings=True) == ANNOUNCE + "10.244.0.0/24 10.250.0.0/24"
    assert exabgp.command(pings=True) == PING
    exabgp.no_command()  # one at a time
    exabgp.say("exabgp 5.0.15", "done")  # the PING's answer, ahead of the line's
    assert exabgp.command(pings=True) == PING  # the line is still unacknowledged
    exabgp.say("done")  # the line's
    (acked,) = exabgp.report("acked")
    assert acked["errors"] == 0 and len(acked["latencies"]) == 2
    exabgp.say("exabgp 5.0.15", "done")  # the second PING's: nothing is left to wait for
    exabgp.no_command()
    time.sleep(0.2)
    assert len(exabgp.report("acked")) == 1 and exabgp.pings == 2


def test_store_down_keeps_routes_and_catches_up_as_one_diff(exabgp, store):
    assert exabgp.command() == ANNOUNCE + "10.244.0.0/24 10.250.0.0/24"
    store.fail()
    assert exabgp.report("store", count=2)[-1]["up"] is False
    exabgp.no_command()  # nothing withdrawn
    store.write(delete=[lease("node-a", "10.250.0.0/24", pool="extra")],
                create=[lease("node-a", "10.251.0.0/24", pool="more")])
    exabgp.no_command()
    store.down = False
    assert exabgp.command() == WITHDRAW + "10.250.0.0/24"
    assert exabgp.command() == ANNOUNCE + "10.251.0.0/24"
    assert [r["up"] for r in exabgp.report("store", count=3)] == [True, False, True]


def test_an_agent_started_while_the_store_is_down_announces_the_last_known(tmp_path, store):
    first = ScriptedExaBGP(tmp_path, store)
    first.command()
    first.stop()  # its ExaBGP went away; the prefixes file stays in the run directory
    store.fail()
    second = ScriptedExaBGP(tmp_path, store)
    try:
        assert second.command() == ANNOUNCE + "10.244.0.0/24 10.250.0.0/24"
        store.write(delete=[lease("node-a", "10.244.0.0/24")])
        store.down = False
        assert second.command() == WITHDRAW + "10.244.0.0/24"
    finally:
        second.stop()


def test_learned_routes_follow_updates_and_sessions(exabgp):
    exabgp.command()
    exabgp.say_json("state", state="up")
    assert exabgp.report("peer") == [{"address": "127.0.0.1", "state": "established"}]
    update = {"announce": {"ipv4 unicast": {"127.0.0.3": [{"nlri": "10.244.1.0/24"}]}}}
    exabgp.say_json("update", direction="receive", message={"update": update})
    assert exabgp.report("learned") == [
        {"add": [["10.244.1.0/24", "127.0.0.3", "127.0.0.1"]], "del": []}]
    exabgp.say_json("state", state="down", reason="peer reset")
    learned = exabgp.report("learned", count=2)
    assert learned[-1] == {"add": [], "del": [["10.244.1.0/24", "127.0.0.3", "127.0.0.1"]]}


def test_shutdown_notification_is_an_orderly_stop(exabgp):
    exabgp.command()
    exabgp.say(json.dumps({"type": "notification", "notification": "shutdown"}))
    assert exabgp.agent.stopped.wait(WAIT)
    assert exabgp.agent.orderly


def test_prefixes_of_a_family_without_sessions_are_not_sent(tmp_path, store):
    store.write(create=[lease("node-a", "fd00:10:244::/64", pool="pods-v6")])
    scripted = ScriptedExaBGP(tmp_path, store, neighbors={6: ("fd00::1",)})
    try:
        assert scripted.command() == (
            "neighbor fd00::1 announce attributes next-hop self nlri fd00:10:244::/64")
        scripted.no_command()
    finally:
        scripted.stop()
