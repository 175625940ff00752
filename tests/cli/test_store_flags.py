"""--store spellings, the etcd TLS files, --debug and the spec size limit, through the CLI.

Every store here is refused before it is reached, or is an etcd endpoint on a loopback port
that nothing listens on (exit 3: the spelling was taken and the store tried): no test needs a
running etcd, and nothing leaves the machine.
"""

from __future__ import annotations

import os

import pytest
from cli_support import BASE_SPEC, assert_one_error_line, derive
from pki import self_signed_ca
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PASSWORD = "s3cret-Pa55"
# Loopback ports that refuse connections, so an accepted etcd URL fails fast with exit 3.
DOWN = {"v4": "127.0.0.1:1", "v6": "[::1]:1"}
FAST = ("--store-timeout", "0.5")
SPEC_LIMIT = 16 << 20  # bytes: the largest spec file netplan reads


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


# --- the TLS files ------------------------------------------------------------------------


def _pair(d, name: str) -> tuple[str, str]:
    """A self-signed certificate and its key, PEM, as name.pem and name-key.pem in d;
    their paths relative to the test's directory (error lines cut values at 80 characters)."""
    key, cert = self_signed_ca(name)
    cert_path, key_path = d / f"{name}.pem", d / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path.relative_to(d.parent)), str(key_path.relative_to(d.parent))


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca, ca_key = _pair(d, "ca")
    cert, key = _pair(d, "client")
    _, other_key = _pair(d, "other")
    garbage = d / "garbage.pem"
    garbage.write_bytes(os.urandom(300))
    encrypted = d / "encrypted-key.pem"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw")))
    return {"ca": ca, "ca-key": ca_key, "cert": cert, "key": key, "other-key": other_key,
            "garbage": "pki/garbage.pem", "encrypted": "pki/encrypted-key.pem",
            "missing": "pki/nope.pem", "dir": "pki"}


# (case, flags as keys of pki, the flag and the file the error names, what it says)
TLS_CASES = [
    ("ca-missing", {"--etcd-ca": "missing"}, "--etcd-ca", "missing", "No such file"),
    ("ca-a-directory", {"--etcd-ca": "dir"}, "--etcd-ca", "dir", "directory"),
    ("ca-garbage", {"--etcd-ca": "garbage"}, "--etcd-ca", "garbage", "PEM certificate"),
    ("ca-is-a-key", {"--etcd-ca": "ca-key"}, "--etcd-ca", "ca-key", "PEM certificate"),
    ("cert-missing", {"--etcd-cert": "missing", "--etcd-key": "key"}, "--etcd-cert", "missing",
     "No such file"),
    ("cert-garbage", {"--etcd-cert": "garbage", "--etcd-key": "key"}, "--etcd-cert", "garbage",
     "PEM certificate"),
    ("key-missing", {"--etcd-cert": "cert", "--etcd-key": "missing"}, "--etcd-key", "missing",
     "No such file"),
    ("key-garbage", {"--etcd-cert": "cert", "--etcd-key": "garbage"}, "--etcd-key", "garbage",
     "PEM private key"),
    ("key-is-a-cert", {"--etcd-cert": "cert", "--etcd-key": "ca"}, "--etcd-key", "ca",
     "PEM private key"),
    ("key-of-another-cert", {"--etcd-cert": "cert", "--etcd-key": "other-key"}, "--etcd-key",
     "other-key", "does not match --etcd-cert"),
    ("key-encrypted", {"--etcd-cert": "cert", "--etcd-key": "encrypted"}, "--etcd-key",
     "encrypted", "encrypted"),
    ("ca-good-key-bad", {"--etcd-ca": "ca", "--etcd-cert": "cert", "--etcd-key": "garbage"},
     "--etcd-key", "garbage", "PEM private key"),
]


@pytest.mark.parametrize("case,flags,flag,file,says", TLS_CASES, ids=[c[0] for c in TLS_CASES])
def test_unusable_tls_files_are_input_errors(netplan, pki, case, flags, flag, file, says):
    args = [a for f, k in flags.items() for a in (f, pki[k])]
    r = netplan("show", "--store", "https://127.0.0.1:1", *args, *FAST)
    line = assert_one_error_line(r, 2)
    assert line.startswith(f"error: {flag}: {pki[file]!r} "), line
    assert says in line, line


def test_usable_tls_files_pass_the_check(netplan, pki):
    r = netplan("show", "--store", "https://[::1]:1", "--etcd-ca", pki["ca"],
                "--etcd-cert", pki["cert"], "--etcd-key", pki["key"], *FAST)
    line = assert_one_error_line(r, 3)
    assert line.startswith("error: etcd [::1]:1:"), line


# --- --debug ------------------------------------------------------------------------------


@pytest.mark.parametrize("case,args,code", [
    ("malformed spec", ("plan", "--store", "memory:"), 2),
    ("conflict", ("plan", "--store", "memory:"), 1),
    ("store down", ("plan", "--store", "etcd://127.0.0.1:1", *FAST), 3),
    ("bad flag", ("plan", "--store", "memory:", "-o", "xml"), 2),
])
def test_debug_shows_the_traceback_and_keeps_the_exit_code(netplan, case, args, code):
    spec = {
        "malformed spec": derive(lambda s: s["pools"][0].update(cidr="10.244.1.0/16")),
        "conflict": derive(lambda s: s.update(avoid=["10.244.0.0/16"])),
    }.get(case, BASE_SPEC)
    r = netplan(*args, "-f", netplan.spec(spec), "--debug")
    assert r.returncode == code, r.describe()
    assert "Traceback" in r.stderr, r.describe()
    assert r.err_lines[-1].startswith("error: "), r.describe()


# --- the size of a spec -------------------------------------------------------------------


def test_a_spec_larger_than_the_limit_is_refused(netplan):
    r = netplan("plan", "-f", "/dev/zero", "--store", "memory:")
    line = assert_one_error_line(r, 2)
    assert line == "error: spec: '/dev/zero' is larger than 16 MiB", line


def test_the_speaker_refuses_a_spec_larger_than_the_limit_too(netplan):
    r = netplan("speaker", "-f", "/dev/zero", "--node", "node-a", "--store", "memory:")
    line = assert_one_error_line(r, 2)
    assert line == "error: spec: '/dev/zero' is larger than 16 MiB", line


def test_a_spec_on_standard_input_larger_than_the_limit_is_refused(netplan):
    r = netplan("plan", "-f", "-", "--store", "memory:", stdin=b"\0" * (SPEC_LIMIT + 1))
    line = assert_one_error_line(r, 2)
    assert line == "error: spec: '-' is larger than 16 MiB", line
