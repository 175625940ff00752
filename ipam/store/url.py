"""What a --store value names, read at the boundary (pure: no I/O).

- `memory:` and file paths are not URLs: open_store takes them as they are.
- An etcd cluster: `etcd://` or `http://` (plaintext unless TLS flags are given: etcdctl's,
  flannel's and Calico's spelling), `etcd+https://` or `https://` (TLS), then a list of
  endpoints `HOST[:PORT]` or `[IPv6][:PORT]`, the port 2379 by default.
- Anything else that looks like a URL is malformed input (exit 2), not a file path: a typo
  such as `etcd:/host:2379` must not quietly become an empty SQLite store.

Credentials in a URL are refused: they would be seen in `ps` and shell history, and a URL
is printed in error lines. Where a refused value is shown, its user and password are masked.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ipam.errors import InvalidInput

DEFAULT_PORT = "2379"
PLAINTEXT_SCHEMES = ("etcd", "http")
TLS_SCHEMES = ("etcd+https", "https")
FORMS = ("a file path, memory:, etcd://HOST:PORT[,HOST:PORT...], http://... "
         "or https://... (TLS)")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True, slots=True)
class EtcdLocation:
    """An etcd cluster: its endpoints (hosts as names or bare addresses, IPv6 without
    brackets) and whether the scheme asks for TLS."""

    endpoints: tuple[tuple[str, int], ...]
    tls: bool

    @property
    def url(self) -> str:
        """The `etcd://h:p,[v6]:p` spelling that EtcdStore takes."""
        return "etcd://" + ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
                                    for h, p in self.endpoints)


def parse_store_url(value: str) -> EtcdLocation | None:
    """The etcd cluster a --store value names; None for `memory:` and file paths.

    InvalidInput (exit 2) for a value that looks like a URL but is not one of the etcd
    forms, or that holds credentials.
    """
    m = _SCHEME.match(value)
    scheme = m.group(1).lower() if m else None
    if scheme not in PLAINTEXT_SCHEMES + TLS_SCHEMES:
        if "://" in value:
            raise InvalidInput("--store", masked(value), f"is not {FORMS}")
        return None
    rest = value[m.end():]
    if not rest.startswith("//"):
        raise InvalidInput("--store", masked(value), f"is not a URL: write {scheme}://HOST:PORT")
    body = rest[2:]
    if "@" in body:
        raise InvalidInput("--store", masked(value), "holds credentials, which netplan does not "
                           "take in a URL: give --etcd-user and $NETPLAN_ETCD_PASSWORD")
    body = body.removesuffix("/")
    cut = re.search(r"[/?#]", body)
    if cut:
        # Shown only up to the cut: a query may carry a token.
        part = {"/": "path", "?": "query", "#": "fragment"}[cut.group()]
        raise InvalidInput("--store", value[: m.end() + 2 + cut.start()] + "...",
                           f"has a {part}: an etcd store is endpoints only (HOST:PORT,...)")
    if not body:
        raise InvalidInput("--store", value, f"names no etcd endpoint ({scheme}://HOST:PORT)")
    endpoints = tuple(_endpoint(value, item) for item in body.split(","))
    return EtcdLocation(endpoints, scheme in TLS_SCHEMES)


def masked(value: str) -> str:
    """value with what precedes its last `@` after the scheme shown as `***`."""
    at = value.rfind("@")
    if at < 0:
        return value
    slashes = value.find("//", 0, at)
    m = _SCHEME.match(value)
    start = slashes + 2 if slashes >= 0 else m.end() if m else 0
    while value.startswith("/", start, at):  # etcd:/user@host: keep the slash
        start += 1
    return value[:start] + "***" + value[at:]


def _endpoint(value: str, item: str) -> tuple[str, int]:
    if not item:
        raise InvalidInput("--store", value, "has an empty endpoint (HOST:PORT,HOST:PORT)")
    if item.startswith("["):
        close = item.find("]")
        host, after = (item[1:close], item[close + 1:]) if close > 0 else ("", "")
        port = after[1:] if after.startswith(":") else "" if after else DEFAULT_PORT
        good = _ipv6(host)
    elif item.count(":") > 1:
        raise InvalidInput("--store", value, f"has an IPv6 endpoint {item!r} without brackets "
                           "([IPv6]:PORT)")
    else:
        host, colon, port = item.partition(":")
        port = port if colon else DEFAULT_PORT
        good = _hostname(host)
    if not good or not _PORT.fullmatch(port):
        raise InvalidInput("--store", value, f"has a malformed endpoint {item!r} "
                           "(HOST:PORT or [IPv6]:PORT)")
    if not 0 < int(port) < 65536:
        raise InvalidInput("--store", value, f"has an endpoint {item!r} whose port is not "
                           "1-65535")
    return host, int(port)


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _hostname(text: str) -> bool:
    """A DNS name or a dotted IPv4 address (all-digit labels are read as an address)."""
    labels = text.split(".")
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return False
    return True
