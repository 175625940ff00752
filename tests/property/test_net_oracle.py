"""Parsing and printing of addresses and CIDRs agree with the standard library's ipaddress."""

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ipam.net import Address, parse_address, parse_cidr


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_addresses_round_trip(ip):
    parsed = parse_address(str(ip))
    assert (parsed.version, parsed.value) == (ip.version, int(ip))
    # The printed form means the same address (netaddr and ipaddress differ only in how
    # they spell IPv4-mapped IPv6 addresses).
    assert ipaddress.ip_address(str(parsed)) == ip
    if ip.version == 4:
        assert str(parsed) == str(ip)


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 128))
def test_cidrs_round_trip_or_name_the_host_bits(ip, prefixlen):
    prefixlen = min(prefixlen, ip.max_prefixlen)
    text = f"{ip}/{prefixlen}"
    network = ipaddress.ip_network(text, strict=False)
    if network.network_address != ip:
        with pytest.raises(ValueError, match=r"host bits set \(the network is (\S+)\)") as exc:
            parse_cidr(text)
        named = exc.value.args[0].rsplit(" ", 1)[1].rstrip(")")
        assert ipaddress.ip_network(named) == network
        return
    cidr = parse_cidr(text)
    assert ipaddress.ip_network(str(cidr)) == network
    assert (cidr.first, cidr.last) == (int(network.network_address),
                                       int(network.broadcast_address))


@pytest.mark.parametrize("text", ["010.0.0.1", "10.1", "10.0.0.256", "1.2.3.4.5", "١.2.3.4",
                                  "10.0.0.-1", "10.0.0. 1", "", "::g", "10.0.0.1/24"])
def test_non_canonical_addresses_are_refused(text):
    with pytest.raises(ValueError):
        parse_address(text)


@given(st.lists(st.one_of(st.integers(0, 255).map(str), st.integers(256, 999).map(str),
                          st.from_regex(r"\A0[0-9]{1,2}\Z"), st.text("0123456789x.-+")),
                min_size=3, max_size=5).map(".".join))
@example("10.0.0.1")
@example(" 10.0.0.1\n")  # spaces around an address are stripped first
@example("10.0.0.1\0")
def test_dotted_text_is_taken_exactly_when_ipaddress_takes_it(text):
    try:
        expected = int(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        with pytest.raises(ValueError):
            parse_address(text)
        return
    assert parse_address(text) == Address(4, expected)
