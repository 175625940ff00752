"""Faults of the etcd store found by black-box use, each against a real etcd: the writers'
lock left by a run that wrote nothing, auth over plaintext, prefixes that are not
netplan's own, and the lease layout of earlier versions."""

from __future__ import annotations

import json
import os

from etcd_support import enable_auth, stored_leases, write_spec
from netplan_cli import netplan

PASSWORD = "plain-Pa55"


def test_an_allocate_that_writes_nothing_leaves_no_lock_behind(etcd, tmp_path):
    """Its lock key would hold the next writer of the cluster for the key's 10 s lease."""
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    r = netplan("allocate", "-f", spec, "--store", etcd.url)
    assert r.returncode == 0, r.stderr
    with etcd.client() as client:
        assert list(client.get_prefix("/netplan/demo/lock/")) == []


def test_user_and_password_auth_works_without_tls(etcd, tmp_path):
    """gRPC sends call credentials over TLS only: the token goes as plain metadata."""
    enable_auth(etcd, PASSWORD)
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NETPLAN_")},
           "NETPLAN_ETCD_PASSWORD": PASSWORD}
    r = netplan("allocate", "-f", spec, "--store", etcd.url, "--etcd-user", "netplan",
                "--store-timeout", "3", env=env)
    assert r.returncode == 0, r.stderr
    r = netplan("show", "--store", etcd.url, "--etcd-user", "netplan", "-o", "json", env=env)
    assert r.returncode == 0, r.stderr
    assert [c["cluster"] for c in json.loads(r.stdout)["clusters"]] == ["demo"]
    env["NETPLAN_ETCD_PASSWORD"] = "wrong"
    r = netplan("show", "--store", etcd.url, "--etcd-user", "netplan", "--store-timeout", "3",
                env=env)
    assert r.returncode == 3 and PASSWORD not in r.stderr, r.stderr


def test_prefixes_that_are_not_absolute_paths_are_input_errors(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a"])
    for prefix in ("", "/", "netplan", "/a//b", "/a/../b", "/with space"):
        r = netplan("allocate", "-f", spec, "--store", etcd.url, "--etcd-prefix", prefix)
        assert r.returncode == 2, (prefix, r.stderr)
        assert r.stderr.startswith("error: --etcd-prefix: ") and len(r.stderr.splitlines()) == 1
    with etcd.client() as client:
        assert list(client.get_prefix("/")) == []  # nothing written


def test_a_prefix_holding_keys_netplan_did_not_write_is_refused(etcd, tmp_path):
    """Kubernetes' own keys under /registry: release --all deleted /registry/pods/... once."""
    with etcd.client() as client:
        client.put("/registry/pods/default/web-1", "{}")
        spec = write_spec(tmp_path / "s.yaml", "pods", ["a"])
        for args in (["allocate", "-f", spec], ["release", "--cluster", "pods", "--all"],
                     ["show"], ["check"]):
            r = netplan(*args, "--store", etcd.url, "--etcd-prefix", "/registry")
            assert r.returncode == 2, (args, r.stderr)
            assert "/registry/pods/default/web-1" in r.stderr, r.stderr
        assert [m.key for _, m in client.get_prefix("/registry/")] == [
            b"/registry/pods/default/web-1"]


def test_release_all_deletes_only_what_netplan_wrote_under_the_cluster(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    with etcd.client() as client:
        assert client.get("/netplan/_netplan")[0] is not None  # marked as netplan's own
        client.put("/netplan/demo/notes/owner", "team-a")  # someone else's, under the mark
        r = netplan("release", "--cluster", "demo", "--all", "--store", etcd.url)
        assert r.returncode == 0, r.stderr
        left = sorted(m.key.decode() for _, m in client.get_prefix("/netplan/"))
    assert left == ["/netplan/_guard", "/netplan/_netplan", "/netplan/demo/notes/owner"]


def test_leases_of_the_old_layout_are_read_and_moved_by_the_next_write(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    before = sorted((x["node"], x["cidr"]) for x in stored_leases(etcd, "demo"))
    with etcd.client() as client:
        # As netplan before the layout change wrote them: <cluster>/leases/<pool>/<node>.
        for value, meta in list(client.get_prefix("/netplan/demo/leases/")):
            lease = json.loads(value)
            client.put(f"/netplan/demo/leases/{lease['pool']}/{lease['node']}", value)
            client.delete(meta.key)
    r = netplan("show", "--store", etcd.url, "--cluster", "demo", "-o", "json")
    assert sorted((n["name"], n["podCIDRs"][0]) for n in json.loads(r.stdout)["nodes"]) == before
    assert netplan("check", "--store", etcd.url).returncode == 0
    # A no-op allocate moves them: stored_leases checks every key is of today's layout.
    r = netplan("allocate", "-f", spec, "--store", etcd.url, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert {c["action"] for c in json.loads(r.stdout)["changes"]} == {"keep"}
    assert sorted((x["node"], x["cidr"]) for x in stored_leases(etcd, "demo")) == before
