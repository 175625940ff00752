"""The etcd TLS files checked where they come in (--etcd-ca, --etcd-cert, --etcd-key).

The gRPC client reads them only when it first connects, and turns a missing, garbage or
mismatched file into a connection that never comes up: a store failure (exit 3) after the
whole store timeout, for what is a mistake in the input (exit 2). The standard library's
`ssl` (OpenSSL) parses them here first: the same PEM files that gRPC reads.
"""

from __future__ import annotations

import os
import ssl
import stat

from ipam.errors import InvalidInput


class _Encrypted(Exception):
    """Raised by the password callback: the key is encrypted."""


def check_tls_files(ca: str | None, cert: str | None, key: str | None) -> None:
    """InvalidInput (exit 2) naming the flag and the path of a file that cannot be used.

    A certificate without its key (or a key alone) is refused by EtcdStore itself.
    """
    if ca and _regular("--etcd-ca", ca):
        _certificates("--etcd-ca", ca)
    if cert and key:
        regular = _regular("--etcd-cert", cert), _regular("--etcd-key", key)
        if all(regular):
            _certificates("--etcd-cert", cert)
            _key_of(cert, key)


def _key_of(cert: str, key: str) -> None:
    """key is an unencrypted private key, the one of the certificate in cert."""

    def encrypted() -> bytes:
        raise _Encrypted  # instead of OpenSSL's prompt for the passphrase on the terminal

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=encrypted)
    except _Encrypted:
        raise InvalidInput("--etcd-key", key, "is encrypted: the etcd client takes an "
                           "unencrypted key") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise InvalidInput("--etcd-key", key,
                               f"does not match --etcd-cert {cert!r}") from None
        raise InvalidInput("--etcd-key", key, "holds no PEM private key") from None


def _regular(flag: str, path: str) -> bool:
    """Whether path is a regular file to parse; InvalidInput if it cannot be read at all.

    A pipe (`--etcd-ca <(vault read ...)`) can be read once only, so it is left to the
    client: reading it here would leave nothing for the connection.
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise InvalidInput(flag, path, "is a directory, not a PEM file")
        if not stat.S_ISREG(mode):
            return False
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InvalidInput(flag, path, f"cannot be read: {exc.strerror or exc}") from None
    return True


def _certificates(flag: str, path: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise InvalidInput(flag, path, "holds no PEM certificate") from None
