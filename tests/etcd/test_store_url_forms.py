"""The URL forms of --store against a real etcd: etcdctl's http:// names the same cluster
as etcd:// (ipam/store/url.py holds the table of spellings)."""

from __future__ import annotations

import json

from etcd_support import write_spec
from netplan_cli import netplan


def test_http_and_etcd_urls_name_the_same_cluster(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    http = etcd.url.replace("etcd://", "http://", 1) + "/"
    r = netplan("allocate", "-f", spec, "--store", http)
    assert r.returncode == 0, r.stderr
    r = netplan("show", "--store", etcd.url, "-o", "json")
    assert r.returncode == 0, r.stderr
    nodes = json.loads(r.stdout)["clusters"][0]["nodes"]
    assert [(n["name"], n["podCIDRs"]) for n in nodes] == [("a", ["10.0.0.0/24"]),
                                                           ("b", ["10.0.1.0/24"])]
