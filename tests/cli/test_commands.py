"""What each command does (DESIGN.md sections 3, 4 and 5), run as a real process."""

from __future__ import annotations

import ipaddress
import json
import re
import sqlite3
import stat
import subprocess
import zlib
from pathlib import Path

import pytest
import yaml

from cli_support import (
    BASE_SPEC,
    EXAMPLES,
    NETPLAN,
    assert_one_error_line,
    assert_store_unchanged,
    base_env,
    derive,
    sha256,
)

net = ipaddress.ip_network
addr = ipaddress.ip_address


def node_address(name: str) -> str:
    """A stable address for a node name, the same wherever the node sits in the spec."""
    n = zlib.crc32(name.encode()) % 65000 + 256
    return f"172.30.{n >> 8}.{n & 255}"


def simple(cluster: str, names, pool: str = "10.60.0.0/16", mask: int = 24,
           services: str = "10.128.0.0/12", **extra) -> dict:
    """An IPv4 cluster with one explicit pool and one explicit services range."""
    addresses = [node_address(n) for n in names]
    assert len(set(addresses)) == len(addresses), "node_address collision: rename a node"
    return {
        "cluster": cluster,
        "pools": [{"name": "pods-v4", "cidr": pool, "nodeMaskSize": mask}],
        "services": {"cidr": services},
        "nodes": [{"name": n, "address": a} for n, a in zip(names, addresses)],
    } | extra


def v6_node_cidr(pool: str, i: int) -> str:
    """The i-th /64 of an IPv6 pool."""
    return str(ipaddress.IPv6Network((int(net(pool).network_address) + (i << 64), 64)))


def cidrs_by_node(data: dict) -> dict[str, list[str]]:
    return {n["name"]: n["podCIDRs"] for n in data["nodes"]}


def changes_of(data: dict, action: str) -> list[tuple[str, str, str]]:
    return [(c["node"], c["pool"], c["cidr"]) for c in data["changes"] if c["action"] == action]


# --- init ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "preset", "cidr", "mask"), [
    pytest.param((), "flannel", "10.244.0.0/16", 24, id="default"),
    pytest.param(("--preset", "calico"), "calico", "192.168.0.0/16", 26, id="calico"),
])
def test_init_prints_a_spec_that_plan_accepts(netplan, args, preset, cidr, mask):
    r = netplan("init", *args)
    assert r.returncode == 0, r.describe()
    spec = yaml.safe_load(r.stdout)
    assert isinstance(spec, dict) and spec["cluster"]
    assert spec.get("preset", "flannel") == preset
    assert "#" in r.stdout, "the starter spec is commented"
    path = netplan.spec(r.stdout, "netplan.yaml")
    db = netplan.cwd / "never.db"
    r = netplan("plan", "-f", path, "--store", db, "-o", "json")
    assert r.returncode == 0, r.describe()
    plan = json.loads(r.stdout)
    assert plan["pools"][0]["cidr"] == cidr and plan["pools"][0]["nodeMaskSize"] == mask
    assert {c["action"] for c in plan["changes"]} == {"allocate"}
    assert len(plan["nodes"]) == len(spec["nodes"])
    assert not db.exists(), "plan created the store"


# --- plan, show and check never create or write -------------------------------------------


def test_plan_writes_nothing_to_an_existing_store(netplan, populated_store):
    spec = derive(lambda s: (s["nodes"].pop(1), s["nodes"].append(
        {"name": "node-d", "addresses": ["10.0.0.14", "fd00:0:0:1::14"]})))
    r = netplan("plan", "-f", netplan.spec(spec), "--store", populated_store.path, "-o", "json")
    assert r.returncode == 0, r.describe()
    plan = json.loads(r.stdout)
    assert ("node-b", "pods-v4", "10.244.1.0/24") in changes_of(plan, "release")
    assert ("node-d", "pods-v4", "10.244.3.0/24") in changes_of(plan, "allocate")
    assert_store_unchanged(netplan, populated_store)


@pytest.mark.parametrize("command", ["show", "check"])
def test_reading_commands_never_create_the_store(netplan, command):
    db = netplan.cwd / "missing.db"
    r = netplan(command, "--store", db, "-o", "json")
    assert r.returncode == 0, r.describe()
    assert json.loads(r.stdout).get("clusters") in ([], 0)  # show: [], check: a count
    assert not db.exists()


# --- allocate -o json ----------------------------------------------------------------------


def test_allocate_json_shape(netplan):
    db = netplan.cwd / "netplan.db"
    data = netplan.allocate(netplan.spec(BASE_SPEC), db)
    assert {"cluster", "pools", "services", "nodes", "changes", "chosen",
            "warnings"} <= set(data)
    assert data["cluster"] == "demo"
    pools = {p["name"]: p for p in data["pools"]}
    assert [p["name"] for p in data["pools"]] == ["pods-v4", "pods-v6"]
    for p in pools.values():
        assert {"name", "cidr", "nodeMaskSize", "capacity", "allocated"} <= set(p)
    # 256 /24s in the /16, less the reserved 10.244.255.0/24; 256 /64s in the /56.
    assert (pools["pods-v4"]["cidr"], pools["pods-v4"]["nodeMaskSize"],
            pools["pods-v4"]["capacity"], pools["pods-v4"]["allocated"]) == (
        "10.244.0.0/16", 24, 255, 3)
    assert (pools["pods-v6"]["cidr"], pools["pods-v6"]["nodeMaskSize"],
            pools["pods-v6"]["capacity"], pools["pods-v6"]["allocated"]) == (
        "fd00:10:244::/56", 64, 256, 3)
    services = data["services"]
    first = net(services["cidr"])
    assert services["cidr"] == "10.96.0.0/12"
    assert services["cidrs"] == ["10.96.0.0/12", "fd00:10:96::/108"]
    assert services["kubernetesIP"] == str(first.network_address + 1) == "10.96.0.1"
    assert services["dnsIP"] == str(first.network_address + 10) == "10.96.0.10"
    assert data["nodes"] == [
        {"name": f"node-{x}", "address": f"10.0.0.1{i + 1}",
         "addresses": [f"10.0.0.1{i + 1}", f"fd00:0:0:1::1{i + 1}"],
         "podCIDRs": [f"10.244.{i}.0/24", v6_node_cidr("fd00:10:244::/56", i)]}
        for i, x in enumerate("abc")
    ]
    assert sorted(changes_of(data, "allocate")) == sorted(
        [(f"node-{x}", "pods-v4", f"10.244.{i}.0/24") for i, x in enumerate("abc")]
        + [(f"node-{x}", "pods-v6", v6_node_cidr("fd00:10:244::/56", i))
           for i, x in enumerate("abc")])
    assert {c["action"] for c in data["changes"]} == {"allocate"}
    assert data["chosen"] == []
    assert data["warnings"] == []


@pytest.mark.parametrize(("preset", "cidr", "mask"), [
    ("flannel", "10.244.0.0/16", 24), ("calico", "192.168.0.0/16", 26)])
def test_allocate_reports_chosen_ranges_when_omitted(netplan, preset, cidr, mask):
    spec = {"cluster": "auto", "preset": preset,
            "nodes": [{"name": "n1", "address": "10.1.0.1"}, {"name": "n2", "address": "10.1.0.2"}]}
    data = netplan.allocate(netplan.spec(spec), netplan.cwd / "auto.db")
    chosen = {c["field"]: c for c in data["chosen"]}
    assert set(chosen) == {"pools[0].cidr", "services.cidr"}
    assert chosen["pools[0].cidr"]["cidr"] == cidr and chosen["pools[0].cidr"]["reason"]
    assert chosen["services.cidr"]["cidr"] == "10.96.0.0/12"
    assert chosen["services.cidr"]["reason"]
    assert len(data["pools"]) == 1
    assert (data["pools"][0]["name"], data["pools"][0]["cidr"],
            data["pools"][0]["nodeMaskSize"]) == ("pods-v4", cidr, mask)
    assert data["services"]["kubernetesIP"] == "10.96.0.1"
    assert data["services"]["dnsIP"] == "10.96.0.10"
    lowest = net(cidr).subnets(new_prefix=mask)
    assert cidrs_by_node(data) == {"n1": [str(next(lowest))], "n2": [str(next(lowest))]}


# --- stickiness, release on removal, reuse order ------------------------------------------


def test_rerun_keeps_everything_and_reordering_is_sticky(netplan):
    db = netplan.cwd / "netplan.db"
    names = ["node-3", "node-10", "node-1", "node-2", "node-9"]
    first = netplan.allocate(netplan.spec(simple("sticky", names)), db)
    # New nodes are served in code-point name order: node-1, node-10, node-2, node-3, node-9.
    assert cidrs_by_node(first) == {
        n: [f"10.60.{i}.0/24"] for i, n in enumerate(sorted(names))}
    again = netplan.allocate(netplan.spec(simple("sticky", names)), db)
    assert {c["action"] for c in again["changes"]} == {"keep"}
    assert len(again["changes"]) == len(names)
    assert cidrs_by_node(again) == cidrs_by_node(first)
    # Reversed order plus a node whose name sorts first: nobody moves, node-0 gets the next.
    reordered = simple("sticky", ["node-0", *reversed(names)])
    third = netplan.allocate(netplan.spec(reordered), db)
    got = cidrs_by_node(third)
    assert {n: got[n] for n in names} == cidrs_by_node(first)
    assert got["node-0"] == ["10.60.5.0/24"]
    assert changes_of(third, "allocate") == [("node-0", "pods-v4", "10.60.5.0/24")]
    assert {c["action"] for c in third["changes"]} == {"keep", "allocate"}


def test_removed_node_is_released_unless_keep_removed(netplan):
    db = netplan.cwd / "netplan.db"
    netplan.allocate(netplan.spec(simple("rm", ["a", "b", "c"])), db)
    kept = netplan.allocate(netplan.spec(simple("rm", ["a", "c"])), db, "--keep-removed")
    assert ("b", "pods-v4", "10.60.1.0/24") in changes_of(kept, "keep")
    assert not changes_of(kept, "release")
    assert any("b" in w for w in kept["warnings"]), kept["warnings"]
    held = {n["name"]: n["podCIDRs"] for n in netplan.show(db, "--cluster", "rm")["nodes"]}
    assert held.get("b") == ["10.60.1.0/24"]
    gone = netplan.allocate(netplan.spec(simple("rm", ["a", "c"])), db)
    assert changes_of(gone, "release") == [("b", "pods-v4", "10.60.1.0/24")]
    shown = netplan.show(db, "--cluster", "rm")
    assert "10.60.1.0/24" not in json.dumps(shown)
    assert shown["pools"][0]["allocated"] == 2


def test_a_kept_nodes_address_stays_claimed_until_its_lease_goes(netplan):
    db = netplan.cwd / "netplan.db"
    b = node_address("b")
    netplan.allocate(netplan.spec(simple("keep", ["a", "b"])), db)
    kept = netplan.allocate(netplan.spec(simple("keep", ["a"])), db, "--keep-removed")
    assert "1 lease of removed nodes kept: b (pods-v4 10.60.1.0/24)" in kept["warnings"]
    shown = netplan.show(db, "--cluster", "keep")
    assert {n["name"]: n["addresses"] for n in shown["nodes"]}["b"] == [b]
    check = netplan("check", "--store", db, "-o", "json")
    assert check.returncode == 0, check.describe()
    assert any("node b" in w and "kept" in w for w in json.loads(check.stdout)["warnings"])

    # Another cluster's pool over b's address is a conflict while b holds its lease ...
    b_24 = str(ipaddress.ip_network(b + "/24", strict=False))  # a's address lies elsewhere
    assert ipaddress.ip_address(node_address("a")) not in ipaddress.ip_network(b_24)
    over_b = simple("other", ["x"], pool=b_24, mask=26, services="10.144.0.0/12")
    r = netplan("allocate", "-f", netplan.spec(over_b, "other.yaml"), "--store", db)
    assert r.returncode == 1 and f"node b address {b}" in r.stderr, r.describe()
    # ... and so is a services range of its own cluster, kept again.
    shifted = simple("keep", ["a"], services=b_24)
    r = netplan("allocate", "-f", netplan.spec(shifted, "shifted.yaml"), "--store", db,
                "--keep-removed")
    assert r.returncode == 1 and f"node b (kept) address {b}" in r.stderr, r.describe()

    # Released for good, b's address is free.
    assert netplan("release", "--cluster", "keep", "b", "--store", db).returncode == 0
    assert "b" not in {n["name"] for n in netplan.show(db, "--cluster", "keep")["nodes"]}
    netplan.allocate(netplan.spec(over_b, "other.yaml"), db)


def test_a_kept_node_whose_lease_no_longer_fits_is_released_and_forgotten(netplan):
    db = netplan.cwd / "netplan.db"
    netplan.allocate(netplan.spec(simple("gone", ["a", "b"])), db)
    # The pool moves: b's lease no longer fits and is released, kept or not.
    moved = netplan.allocate(netplan.spec(simple("gone", ["a"], pool="10.61.0.0/16")), db,
                             "--keep-removed")
    assert ("b", "pods-v4", "10.60.1.0/24") in changes_of(moved, "release")
    shown = netplan.show(db, "--cluster", "gone")
    assert [n["name"] for n in shown["nodes"]] == ["a"]


def test_many_kept_leases_make_one_warning(netplan):
    db = netplan.cwd / "netplan.db"
    names = [f"n{i:02d}" for i in range(13)]
    netplan.allocate(netplan.spec(simple("many", names)), db)
    kept = netplan.allocate(netplan.spec(simple("many", names[:1])), db, "--keep-removed")
    (warning,) = [w for w in kept["warnings"] if "kept" in w]
    assert warning.startswith("12 leases of removed nodes kept: n01 (pods-v4 10.60.1.0/24), ")
    assert warning.endswith("n10 (pods-v4 10.60.10.0/24) and 2 more")


def test_new_node_gets_a_never_used_cidr_before_a_released_one(netplan):
    db = netplan.cwd / "netplan.db"
    netplan.allocate(netplan.spec(simple("reuse", ["a", "b", "c"])), db)
    netplan.allocate(netplan.spec(simple("reuse", ["a", "c"])), db)  # frees 10.60.1.0/24
    data = netplan.allocate(netplan.spec(simple("reuse", ["a", "c", "d"])), db)
    assert cidrs_by_node(data)["d"] == ["10.60.3.0/24"]


def test_released_cidrs_are_reused_oldest_release_first(netplan):
    """A /22 of /24s: once the never-used CIDRs are gone, the oldest release comes first."""
    db = netplan.cwd / "netplan.db"
    small = dict(pool="10.60.0.0/22")
    netplan.allocate(netplan.spec(simple("old", ["a", "b", "c", "d"], **small)), db)
    netplan.allocate(netplan.spec(simple("old", ["a", "c", "d"], **small)), db)  # b: .1 first
    netplan.allocate(netplan.spec(simple("old", ["c", "d"], **small)), db)  # a: .0 later
    data = netplan.allocate(netplan.spec(simple("old", ["c", "d", "x", "y"], **small)), db)
    got = cidrs_by_node(data)
    assert got["x"] == ["10.60.1.0/24"], "x (served first) gets the oldest release"
    assert got["y"] == ["10.60.0.0/24"]


def test_lease_that_no_longer_fits_is_released_and_reallocated(netplan):
    db = netplan.cwd / "netplan.db"
    two_pools = simple("fit", ["a", "b"])
    two_pools["pools"].append({"name": "extra", "cidr": "10.61.0.0/16", "nodeMaskSize": 24})
    netplan.allocate(netplan.spec(two_pools), db)
    # pods-v4 goes from /24 to /25 per node; `extra` leaves the spec.
    changed = derive(lambda s: (s["pools"].pop(1), s["pools"][0].update(nodeMaskSize=25)),
                     two_pools)
    data = netplan.allocate(netplan.spec(changed), db)
    assert sorted(changes_of(data, "release")) == [
        ("a", "extra", "10.61.0.0/24"), ("a", "pods-v4", "10.60.0.0/24"),
        ("b", "extra", "10.61.1.0/24"), ("b", "pods-v4", "10.60.1.0/24")]
    fresh = changes_of(data, "allocate")
    assert sorted(n for n, _, _ in fresh) == ["a", "b"]
    assert all(net(c).prefixlen == 25 and net(c).subnet_of(net("10.60.0.0/16"))
               for _, _, c in fresh)
    assert [p["name"] for p in data["pools"]] == ["pods-v4"]
    assert cidrs_by_node(data) == {n: [c] for n, _, c in fresh}


def test_boundary_values_are_accepted(netplan):
    """The largest legal values of section 2 are well formed (exit 0, not 2)."""
    spec = {
        "cluster": "c" * 63,
        "pools": [{"name": "pods-v4", "cidr": "10.60.0.0/24", "nodeMaskSize": 25},
                  {"name": "pods-v6", "cidr": "fd00:60::/48", "nodeMaskSize": 64}],
        "services": {"cidrs": ["10.128.0.0/12", "fd00:96::/108"]},
        "nodes": [
            {"name": "dual", "addresses": ["172.30.0.1", "fd00:1::1"],
             "labels": {"ready": True, "count": 1}},
            {"name": "v6-only", "addresses": ["fd00:1::2"], "routerId": "172.30.0.2"},
        ],
        "bgp": {"asNumber": 4294967295,
                "peers": [{"address": "172.30.0.254", "asNumber": 1, "port": 65535}]},
    }
    data = netplan.allocate(netplan.spec(spec), netplan.cwd / "edge.db")
    assert data["cluster"] == "c" * 63
    assert cidrs_by_node(data) == {"dual": ["10.60.0.0/25", "fd00:60::/64"],
                                   "v6-only": ["10.60.0.128/25", "fd00:60:0:1::/64"]}
    assert data["pools"][1]["capacity"] == 65536
    # `address` is the router id address (section 5), here the explicit routerId.
    v6_only = next(n for n in data["nodes"] if n["name"] == "v6-only")
    assert v6_only["addresses"] == ["fd00:1::2"]
    assert v6_only["address"] == "172.30.0.2"


# --- show --------------------------------------------------------------------------------


def test_show_all_clusters_and_one(netplan, populated_store):
    db = populated_store.path
    other = simple("other", ["o1", "o2"])
    allocated = netplan.allocate(netplan.spec(other), db)
    everything = netplan.show(db)
    assert set(everything) == {"clusters"}
    assert sorted(c["cluster"] for c in everything["clusters"]) == ["demo", "other"]
    assert [c for c in everything["clusters"] if c["cluster"] == "demo"] == \
        populated_store.show["clusters"]
    one = netplan.show(db, "--cluster", "other")
    assert one in everything["clusters"]
    assert one["cluster"] == "other"
    for key in ("pools", "services", "nodes"):
        assert one[key] == allocated[key], key
    assert one["changes"] == []
    r = netplan("show", "--store", db)
    assert r.returncode == 0 and "demo" in r.stdout and "other" in r.stdout, r.describe()


def test_show_unknown_cluster_is_exit_2(netplan, populated_store):
    r = netplan("show", "--cluster", "nope", "--store", populated_store.path)
    assert "nope" in assert_one_error_line(r, 2)


# --- release -----------------------------------------------------------------------------


def test_release_frees_a_node_and_it_comes_back_on_a_fresh_cidr(netplan, populated_store):
    db = populated_store.path
    r = netplan("release", "--cluster", "demo", "node-b", "--store", db)
    assert r.returncode == 0, r.describe()
    assert "node-b" in r.stdout and "10.244.1.0/24" in r.stdout
    shown = netplan.show(db, "--cluster", "demo")
    assert "10.244.1.0/24" not in json.dumps(shown)
    assert shown["pools"][0]["allocated"] == 2
    again = netplan.allocate(netplan.spec(BASE_SPEC), db)
    assert cidrs_by_node(again)["node-b"][0] == "10.244.3.0/24"
    assert cidrs_by_node(again)["node-a"][0] == "10.244.0.0/24"


def test_release_of_a_node_without_lease_is_a_warning(netplan, populated_store):
    r = netplan("release", "--cluster", "demo", "node-z", "--store", populated_store.path)
    assert r.returncode == 0, r.describe()
    assert "error:" not in r.stderr and "Traceback" not in r.stderr
    warnings = [line for line in r.err_lines if line.startswith("warning:")]
    assert warnings and "node-z" in warnings[0], r.describe()
    assert_store_unchanged(netplan, populated_store)


def test_release_unknown_cluster_is_exit_2(netplan, populated_store):
    r = netplan("release", "--cluster", "nope", "node-a", "--store", populated_store.path)
    assert "nope" in assert_one_error_line(r, 2)
    assert sha256(populated_store.path) == populated_store.digest


def test_release_all_forgets_the_cluster_and_its_ranges(netplan, populated_store):
    db = populated_store.path
    r = netplan("release", "--cluster", "demo", "--all", "--store", db)
    assert r.returncode == 0, r.describe()
    assert netplan.show(db) == {"clusters": []}
    assert_one_error_line(netplan("show", "--cluster", "demo", "--store", db), 2)
    # demo's pool, services range and node addresses are free for another cluster now.
    reuse = derive(lambda s: s.update(cluster="successor"))
    data = netplan.allocate(netplan.spec(reuse), db)
    assert cidrs_by_node(data)["node-a"] == ["10.244.0.0/24", "fd00:10:244::/64"]


# --- check -------------------------------------------------------------------------------


def test_check_clean_store(netplan, populated_store):
    r = netplan("check", "--store", populated_store.path, "-o", "json")
    assert r.returncode == 0, r.describe()
    data = json.loads(r.stdout)
    assert data["problems"] == []
    r = netplan("check", "--store", populated_store.path)
    assert r.returncode == 0, r.describe()


def _insert_lease(db: Path, cidr: str, node: str = "ghost", pool: str = "pods-v4") -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO leases (cluster, pool, node, cidr) VALUES (?, ?, ?, ?)",
                     ("demo", pool, node, cidr))
    conn.close()


@pytest.mark.parametrize(("cidr", "kind", "named"), [
    pytest.param("10.244.0.0/25", "overlap", ("10.244.0.0/25", "10.244.0.0/24"),
                 id="overlapping-lease"),
    pytest.param("10.99.0.0/24", "out-of-pool", ("10.99.0.0/24",), id="lease-outside-pool"),
    pytest.param("10.244.255.0/24", "reserved", ("10.244.255.0/24",), id="lease-in-reserved"),
])
def test_check_finds_a_corrupted_store(netplan, populated_store, cidr, kind, named):
    _insert_lease(populated_store.path, cidr)
    r = netplan("check", "--store", populated_store.path, "-o", "json")
    assert r.returncode == 1, r.describe()
    problems = json.loads(r.stdout)["problems"]
    hits = [p for p in problems if p["kind"] == kind]
    assert hits, problems
    assert all(s in hits[0]["message"] for s in named), hits[0]
    if kind == "overlap":  # the table for people says the same, and exits 1 too
        table = netplan("check", "--store", populated_store.path)
        assert table.returncode == 1, table.describe()
        assert cidr in table.stdout and "overlap" in table.stdout, table.describe()


# --- the store ---------------------------------------------------------------------------


def test_store_file_mode_is_0600(netplan):
    db = netplan.cwd / "netplan.db"
    r = netplan("allocate", "-f", netplan.spec(BASE_SPEC), "--store", db, umask=0)
    assert r.returncode == 0, r.describe()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_store_from_environment_and_default_path(netplan, tmp_path):
    spec = netplan.spec(BASE_SPEC)
    env_db = tmp_path / "from-env.db"
    r = netplan("allocate", "-f", spec, env={"NETPLAN_STORE": str(env_db)})
    assert r.returncode == 0, r.describe()
    assert env_db.exists() and not (tmp_path / "netplan.db").exists()
    shown = json.loads(netplan("show", "-o", "json", env={"NETPLAN_STORE": str(env_db)}).stdout)
    assert [c["cluster"] for c in shown["clusters"]] == ["demo"]
    # Neither flag nor variable: ./netplan.db in the working directory.
    r = netplan("allocate", "-f", spec)
    assert r.returncode == 0, r.describe()
    assert (tmp_path / "netplan.db").exists()


@pytest.mark.parametrize(("kind", "command"), [
    ("directory", "allocate"), ("directory", "check"),
    ("not-sqlite", "allocate"), ("not-sqlite", "plan"), ("not-sqlite", "show"),
    ("not-sqlite", "release"),
])
def test_broken_store_is_exit_3(netplan, kind, command):
    store = netplan.cwd / "store.db"
    if kind == "directory":
        store.mkdir()
    else:
        store.write_bytes(b"this is not an SQLite database\n" * 100)
    before = sha256(store) if kind == "not-sqlite" else None
    spec = netplan.spec(BASE_SPEC)
    args = {
        "allocate": ["allocate", "-f", spec],
        "plan": ["plan", "-f", spec],
        "show": ["show"],
        "check": ["check"],
        "release": ["release", "--cluster", "demo", "node-a"],
    }[command]
    r = netplan(*args, "--store", store)
    line = assert_one_error_line(r, 3)
    assert "store.db" in line
    if before:
        assert sha256(store) == before


# --- output formats and help -------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["plan", "-f", "SPEC"], ["show", "--cluster", "demo"]], ids=["plan", "show-cluster"])
def test_yaml_output_is_the_json_output(netplan, populated_store, command):
    spec = str(netplan.spec(BASE_SPEC))
    args = [spec if a == "SPEC" else a for a in command] + ["--store", populated_store.path]
    as_json = netplan(*args, "-o", "json")
    as_yaml = netplan(*args, "-o", "yaml")
    assert as_json.returncode == 0 and as_yaml.returncode == 0, as_yaml.describe()
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)


def test_allocate_yaml_output_parses(netplan):
    r = netplan("allocate", "-f", netplan.spec(BASE_SPEC), "--store", netplan.cwd / "y.db",
                "-o", "yaml")
    assert r.returncode == 0, r.describe()
    data = yaml.safe_load(r.stdout)
    assert data["cluster"] == "demo" and len(data["nodes"]) == 3


IPAM_COMMANDS = ["init", "plan", "allocate", "show", "release", "check"]


@pytest.mark.parametrize("command", IPAM_COMMANDS)
def test_help_has_an_example(netplan, command):
    r = netplan(command, "--help")
    assert r.returncode == 0, r.describe()
    assert "Example" in r.stdout, r.stdout
    assert f"netplan {command}" in r.stdout, r.stdout


def test_top_level_help_and_every_other_command_help(netplan):
    """Every command the app lists (topology, render, speaker, ...) has a help with an example."""
    r = netplan("--help")
    assert r.returncode == 0, r.describe()
    section = r.stdout[r.stdout.index("Commands"):]
    # "│ init      Print a ..." (continuation lines start with more spaces)
    listed = re.findall(r"^\W ([a-z][a-z-]*) {2,}\S", section, flags=re.M)
    assert set(IPAM_COMMANDS) <= set(listed), listed
    for command in sorted(set(listed) - set(IPAM_COMMANDS)):
        h = netplan(command, "--help")
        assert h.returncode == 0, h.describe()
        assert "Example" in h.stdout and f"netplan {command}" in h.stdout, h.stdout


# --- every example allocates, and the store is independently sound ----------------------


def _verify_store(shown: dict, specs: list[dict]) -> None:
    """Check what the store holds with the standard library only (not netplan's code)."""
    spec_of = {s["cluster"]: s for s in specs}
    assert sorted(c["cluster"] for c in shown["clusters"]) == sorted(spec_of)
    pools, services, avoid, hosts, leases = [], [], [], [], []
    for c in shown["clusters"]:
        spec = spec_of[c["cluster"]]
        reserved = [net(r) for r in spec.get("reserved", [])]
        avoid += [(c["cluster"], net(a)) for a in spec.get("avoid", [])]
        services += [(c["cluster"], net(s)) for s in c["services"]["cidrs"]]
        cluster_pools = [(p["name"], net(p["cidr"]), p["nodeMaskSize"]) for p in c["pools"]]
        pools += [(c["cluster"], cidr) for _, cidr, _ in cluster_pools]
        assert [n["name"] for n in c["nodes"]] == [n["name"] for n in spec["nodes"]]
        for spec_node, node in zip(spec["nodes"], c["nodes"]):
            given = spec_node.get("addresses") or [spec_node["address"]]
            assert sorted(node["addresses"]) == sorted(given)
            hosts += [(c["cluster"], node["name"], addr(a)) for a in node["addresses"]]
            for p in spec_node.get("podCIDRs", []):
                assert p in node["podCIDRs"], f"pin {p} of {node['name']} not honoured"
            homes = []
            for cidr_text in node["podCIDRs"]:
                cidr = net(cidr_text)
                home = [(name, mask) for name, pool, mask in cluster_pools
                        if cidr.version == pool.version and cidr.subnet_of(pool)]
                assert len(home) == 1, f"{cidr} is not inside exactly one pool"
                assert cidr.prefixlen == home[0][1], f"{cidr} is not a /{home[0][1]}"
                assert not any(cidr.overlaps(r) for r in reserved if r.version == cidr.version)
                homes.append(home[0][0])
                leases.append((c["cluster"], node["name"], cidr))
            assert sorted(homes) == sorted(name for name, _, _ in cluster_pools), \
                f"{node['name']} must hold one CIDR from every pool"
        assert sum(p["allocated"] for p in c["pools"]) == sum(
            len(n["podCIDRs"]) for n in c["nodes"])

    def overlapping(a, b):
        return a.version == b.version and a.overlaps(b)

    for i, (c1, n1, x) in enumerate(leases):
        for c2, n2, y in leases[i + 1:]:
            assert not overlapping(x, y), f"{c1}/{n1} {x} overlaps {c2}/{n2} {y}"
    for cluster, node, cidr in leases:
        for _, other_node, host in hosts:
            assert not (host.version == cidr.version and host in cidr), \
                f"{cluster}/{node} {cidr} contains the address of {other_node}"
        for label, ranges in (("services", services), ("avoid", avoid)):
            for owner, r in ranges:
                assert not overlapping(cidr, r), f"{node} {cidr} overlaps {owner}'s {label} {r}"
    ranges = [("pool", c, r) for c, r in pools] + [("services", c, r) for c, r in services]
    for i, (k1, c1, x) in enumerate(ranges):
        for k2, c2, y in ranges[i + 1:]:
            assert not overlapping(x, y), f"{c1} {k1} {x} overlaps {c2} {k2} {y}"
        for owner, a in avoid:
            assert not overlapping(x, a), f"{c1} {k1} {x} overlaps {owner}'s avoid {a}"
        for _, node, host in hosts:
            assert not (host.version == x.version and host in x), f"{k1} {x} holds {node}"


EXAMPLE_SETS = [
    pytest.param(["flannel.yaml"], id="flannel"),
    pytest.param(["calico.yaml"], id="calico"),
    pytest.param(["dual-stack.yaml"], id="dual-stack"),
    pytest.param(["multi-cluster/prod.yaml", "multi-cluster/staging.yaml"], id="multi-cluster"),
]


def test_every_example_is_covered():
    covered = {f for p in EXAMPLE_SETS for f in p.values[0]}
    present = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.yaml")}
    assert present == covered


@pytest.mark.parametrize("files", EXAMPLE_SETS)
def test_example_allocates_into_one_sound_store(netplan, files):
    db = netplan.cwd / "examples.db"
    specs, plans = [], {}
    for f in files:
        path = EXAMPLES / f
        specs.append(yaml.safe_load(path.read_text()))
        plans[specs[-1]["cluster"]] = netplan.allocate(path, db)
    r = netplan("check", "--store", db, "-o", "json")
    assert r.returncode == 0, r.describe()
    assert json.loads(r.stdout)["problems"] == []
    shown = netplan.show(db)
    _verify_store(shown, specs)
    for c in shown["clusters"]:
        assert c["nodes"] == plans[c["cluster"]]["nodes"]
    if "staging" in plans:
        # As the example says: prod holds the flannel default and 10.96.0.0/12, so the
        # staging cluster gets the calico default and the next /12.
        chosen = {c["field"]: c["cidr"] for c in plans["staging"]["chosen"]}
        assert chosen == {"pools[0].cidr": "192.168.0.0/16", "services.cidr": "10.112.0.0/12"}
        assert plans["staging"]["services"]["kubernetesIP"] == "10.112.0.1"
        assert plans["staging"]["services"]["dnsIP"] == "10.112.0.10"


@pytest.mark.parametrize("output", ["table", "json"])
def test_a_reader_that_stops_early_ends_the_command_quietly(netplan, output):
    """`netplan allocate | head`: the allocation stands, exit 0 (rich alone would exit 1,
    the code of a spec that cannot be satisfied), no error said (warnings may be)."""
    spec = {
        "cluster": "demo",
        "pools": [{"name": "pods-v4", "cidr": "10.128.0.0/9", "nodeMaskSize": 24}],
        "nodes": [{"name": f"node-{i:04d}", "address": f"172.16.{i // 250}.{i % 250 + 1}"}
                  for i in range(2000)],
        "bgp": {"topology": "none"},
    }
    path = netplan.spec(spec)
    store = netplan.cwd / "netplan.db"
    for command in (["allocate", "-f", str(path)], ["show"]):
        proc = subprocess.Popen(
            [NETPLAN, *command, "--store", str(store), "-o", output], cwd=netplan.cwd,
            env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.read(100)  # then closed: the output, more than a pipe holds, has no reader
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, err
        assert not re.search("error|Traceback|Exception", err), err
    assert len(netplan.show(store, "--cluster", "demo")["nodes"]) == 2000


def test_the_spec_can_come_on_standard_input(netplan):
    """`-f -`: `netplan init | netplan plan -f -`, as kubectl and friends read `-`."""
    path = netplan.spec(BASE_SPEC)
    from_file = netplan("plan", "-f", path, "-o", "json")
    piped = netplan("plan", "-f", "-", "-o", "json", stdin=path.read_bytes())
    assert from_file.returncode == piped.returncode == 0, piped.describe()
    assert json.loads(piped.stdout) == json.loads(from_file.stdout)
    store = netplan.cwd / "netplan.db"
    allocated = netplan("allocate", "-f", "-", "--store", store, "-o", "json",
                        stdin=path.read_bytes())
    assert allocated.returncode == 0, allocated.describe()
    assert [n["name"] for n in netplan.show(store, "--cluster", "demo")["nodes"]] == [
        "node-a", "node-b", "node-c"]
