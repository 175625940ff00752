"""Immutable, normalised IP values the core computes with: an integer and a family.

netaddr parses (plain IPv4 goes through the C library's inet_pton) and prints; everything in
between is integer arithmetic, which keeps the allocator fast and keeps the test oracle (the
standard library's `ipaddress`) independent. The values are named tuples: immutable, ordered
field by field, and several times cheaper to create than frozen dataclasses, which matters at
65,536 node CIDRs a plan.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

import netaddr

BITS = {4: 32, 6: 128}


def _dotted(value: int) -> str:
    # IPv4 formatted by hand: netaddr's general path costs microseconds a call, and a store
    # of 65,536 leases prints as many.
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


class Address(NamedTuple):
    version: int
    value: int

    def __str__(self) -> str:
        if self.version == 4:
            return _dotted(self.value)
        return str(netaddr.IPAddress(self.value, self.version))

    @property
    def is_loopback(self) -> bool:
        if self.version == 4:
            return self.value >> 24 == 127
        return self.value == 1

    def as_cidr(self) -> Cidr:
        return Cidr(self.version, self.value, BITS[self.version])


class Cidr(NamedTuple):
    # Field order gives the sort order the allocation rules use: IPv4 first, then lowest.
    version: int
    value: int
    prefixlen: int

    def __str__(self) -> str:
        if self.version == 4:
            return f"{_dotted(self.value)}/{self.prefixlen}"
        return f"{netaddr.IPAddress(self.value, self.version)}/{self.prefixlen}"

    @property
    def bits(self) -> int:
        return BITS[self.version]

    @property
    def size(self) -> int:
        return 1 << ((32 if self.version == 4 else 128) - self.prefixlen)

    @property
    def first(self) -> int:
        return self.value

    @property
    def last(self) -> int:
        return self.value + (1 << ((32 if self.version == 4 else 128) - self.prefixlen)) - 1

    def address(self, offset: int) -> Address:
        return Address(self.version, self.value + offset)

    def overlaps(self, other: Cidr) -> bool:
        return (
            self.version == other.version
            and self.first <= other.last
            and other.first <= self.last
        )

    def contains(self, other: Cidr | Address) -> bool:
        if self.version != other.version:
            return False
        if isinstance(other, Address):
            return self.first <= other.value <= self.last
        return self.first <= other.first and other.last <= self.last

    def subnet(self, prefixlen: int, index: int) -> Cidr:
        """The index-th subnet of this size inside this network."""
        return Cidr(self.version, self.value + (index << (self.bits - prefixlen)), prefixlen)


def _parse_ip(text: str) -> tuple[int, int]:
    """(version, value) of an address in its one canonical spelling."""
    # The common case, plain dotted IPv4, through the C library's inet_pton: as strict as
    # netaddr's INET_PTON below (four decimal parts, no leading zeros), ten times faster.
    if ":" not in text:
        try:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        except (OSError, UnicodeError, ValueError):
            pass  # netaddr says what is wrong
    # INET_PTON: no "10.1" or "010.0.0.1" shorthands, which would silently mean something else.
    ip = netaddr.IPAddress(text, flags=netaddr.INET_PTON)
    return ip.version, int(ip)


def parse_address(text: str) -> Address:
    """An address; ValueError with a short reason when it is none."""
    if not isinstance(text, str) or "/" in text:
        raise ValueError("is not an IP address")
    try:
        version, value = _parse_ip(text.strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError("is not an IP address") from None
    return Address(version, value)


def parse_cidr(text: str) -> Cidr:
    """A network in CIDR notation with no host bits set; ValueError with a short reason."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise ValueError("is not a CIDR (address/prefix-length)")
    addr_text, _, len_text = text.strip().partition("/")
    try:
        version, value = _parse_ip(addr_text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError("is not a CIDR (address/prefix-length)") from None
    # isdecimal() alone would take any Unicode digit ("/١٦") for a prefix length.
    if not (len_text.isascii() and len_text.isdecimal()) or len(len_text) > 3:
        raise ValueError("has an invalid prefix length")
    prefixlen = int(len_text)
    bits = BITS[version]
    if prefixlen > bits:
        raise ValueError(f"has a prefix length above {bits}")
    host_mask = (1 << (bits - prefixlen)) - 1
    if value & host_mask:
        network = Cidr(version, value & ~host_mask, prefixlen)
        raise ValueError(f"has host bits set (the network is {network})")
    return Cidr(version, value, prefixlen)
