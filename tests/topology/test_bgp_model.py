"""The input types: label helpers, addresses by family, and how errors show values."""

from __future__ import annotations

from ipaddress import ip_address

from bgp.errors import TopologyError


def test_labels_and_selectors(make_node):
    node = make_node("node-a", "10.0.0.1", labels={"rack": "r1", "role": "rr"})
    assert node.labels == (("rack", "r1"), ("role", "rr"))
    assert node.label("rack") == "r1"
    assert node.label("zone") is None
    assert node.matches(())
    assert node.matches((("role", "rr"),))
    assert node.matches((("rack", "r1"), ("role", "rr")))
    assert not node.matches((("rack", "r1"), ("role", "client")))


def test_addresses_by_family(make_node):
    dual = make_node("node-a", "fd00::1", "10.0.0.1")
    assert dual.address == ip_address("10.0.0.1")
    assert dual.address_of(6) == ip_address("fd00::1")
    only_v6 = make_node("node-b", "fd00::2", router_id="10.9.9.2")
    assert only_v6.address == ip_address("fd00::2")
    assert only_v6.address_of(4) is None


def test_error_values_are_shown_as_the_spec_writes_them():
    assert str(TopologyError("f", "x", "is bad")) == "f: 'x' is bad"
    assert str(TopologyError("f", (("a", "1"), ("b", "2")), "is bad")) == "f: {a: 1, b: 2} is bad"
    assert str(TopologyError("f", 7, "is bad")) == "f: 7 is bad"
    error = TopologyError("bgp.topology", "star", "is unknown")
    assert (error.field, error.value, error.reason) == ("bgp.topology", "star", "is unknown")
