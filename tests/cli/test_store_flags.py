"""--store spellings through the CLI.

Every store here is refused before it is reached, or is an etcd endpoint on a loopback port
that nothing listens on (exit 3: the spelling was taken and the store tried): no test needs a
running etcd, and nothing leaves the machine.
"""

from __future__ import annotations

import pytest
from cli_support import BASE_SPEC, assert_one_error_line

PASSWORD = "s3cret-Pa55"
# Loopback ports that refuse connections, so an accepted etcd URL fails fast with exit 3.
DOWN = {"v4": "127.0.0.1:1", "v6": "[::1]:1"}
FAST = ("--store-timeout", "0.5")


def _both(r) -> str:
    return r.stdout + r.stderr


@pytest.mark.parametrize("family", DOWN)
@pytest.mark.parametrize("scheme", ["etcd", "https", "etcd+https"])
def test_credentials_in_the_url_are_refused_and_never_printed(netplan, family, scheme):
    spec = netplan.spec(BASE_SPEC)
    r = netplan("plan", "-f", spec, "--store", f"{scheme}://admin:{PASSWORD}@{DOWN[family]}")
    line = assert_one_error_line(r, 2)
    assert PASSWORD not in _both(r)
    assert "--etcd-user" in line and "$NETPLAN_ETCD_PASSWORD" in line, line


@pytest.mark.parametrize("store", ["etcd://127.0.0.1 :2379", "etcd://[::1] :2379",
                                   "etcd://127.0.0.1:2379, 127.0.0.2:2379",
                                   "etcd://[::1]:2379,[::2]:2379 "])
def test_whitespace_in_an_endpoint_is_an_input_error(netplan, store):
    r = netplan("plan", "-f", netplan.spec(BASE_SPEC), "--store", store, *FAST)
    line = assert_one_error_line(r, 2)
    assert "--store" in line and "endpoint" in line, line


@pytest.mark.parametrize("store", ["etcd:/127.0.0.1:2379", "etcd:/[::1]:2379",
                                   "etcd:127.0.0.1:2379", "https:/[::1]:2379"])
def test_a_scheme_without_its_slashes_is_not_a_file_path(netplan, store):
    r = netplan("plan", "-f", netplan.spec(BASE_SPEC), "--store", store)
    line = assert_one_error_line(r, 2)
    assert repr(store) in line, line
    assert sorted(p.name for p in netplan.cwd.iterdir()) == ["spec.yaml"]


@pytest.mark.parametrize("family", DOWN)
def test_an_unknown_scheme_is_named_with_its_credentials_masked(netplan, family):
    r = netplan("plan", "-f", netplan.spec(BASE_SPEC),
                "--store", f"grpc://admin:{PASSWORD}@{DOWN[family]}")
    line = assert_one_error_line(r, 2)
    assert f"'grpc://***@{DOWN[family]}'" in line, line
    assert PASSWORD not in _both(r)


@pytest.mark.parametrize("family", DOWN)
@pytest.mark.parametrize("scheme", ["etcd", "http", "https", "etcd+https"])
def test_etcd_url_forms_are_taken(netplan, family, scheme):
    """etcdctl's, flannel's and Calico's http:// and https:// name an etcd cluster."""
    r = netplan("show", "--store", f"{scheme}://{DOWN[family]}", *FAST)
    line = assert_one_error_line(r, 3)
    assert line.startswith(f"error: etcd {DOWN[family]}:"), line
