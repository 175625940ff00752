"""TLS with client certificates and user/password auth, against a real etcd set up so."""

from __future__ import annotations

import datetime
import ipaddress
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from etcd_server import EtcdCluster, Tls
from etcd_support import enable_auth, lock_holder, stored_leases, write_spec
from netplan_cli import netplan
from pki import self_signed_ca

from ipam.store import StoreOptions, open_store
from planner.plan import build_plan
from planner.spec import load_spec_file

PASSWORD = "s3cret-Pa55"


def _write_key(path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _issue(path, name: str, ca_key, ca_name, key, usage, san=None) -> None:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    path.write_bytes(builder.sign(ca_key, hashes.SHA256())
                     .public_bytes(serialization.Encoding.PEM))


def make_pki(d) -> Tls:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all PEM."""
    d.mkdir()
    ca_key, ca = self_signed_ca("netplan test CA")
    ca_name = ca.subject
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    _write_key(d / "server-key.pem", server_key)
    _write_key(d / "client-key.pem", client_key)
    _issue(d / "server.pem", "etcd", ca_key, ca_name, server_key, ExtendedKeyUsageOID.SERVER_AUTH,
           [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    _issue(d / "client.pem", "netplan", ca_key, ca_name, client_key,
           ExtendedKeyUsageOID.CLIENT_AUTH)
    return Tls(d / "ca.pem", d / "server.pem", d / "server-key.pem", d / "client.pem",
               d / "client-key.pem")


@pytest.fixture
def secure_etcd(tmp_path):
    """etcd with TLS, client certificates required, and auth: user netplan may read and
    write /netplan/ only."""
    etcd = EtcdCluster(tmp_path / "etcd", tls=make_pki(tmp_path / "pki")).start()
    enable_auth(etcd, PASSWORD)
    yield etcd
    etcd.stop()


def tls_flags(tls: Tls) -> list[str]:
    return ["--etcd-ca", str(tls.ca), "--etcd-cert", str(tls.client_cert),
            "--etcd-key", str(tls.client_key)]


def env(password: str | None) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("NETPLAN_")}
    if password is not None:
        e["NETPLAN_ETCD_PASSWORD"] = password
    return e


def test_tls_client_certificates_and_auth(secure_etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    flags = [*tls_flags(secure_etcd.tls), "--etcd-user", "netplan"]
    r = netplan("allocate", "-f", spec, "--store", secure_etcd.url, *flags, env=env(PASSWORD))
    assert r.returncode == 0, r.stderr
    r = netplan("check", "--store", secure_etcd.url, *flags, env=env(PASSWORD))
    assert r.returncode == 0, r.stderr
    leases = stored_leases(secure_etcd, "demo", user="root", password="root-pw")
    assert sorted((x["node"], x["cidr"]) for x in leases) == [("a", "10.0.0.0/24"),
                                                              ("b", "10.0.1.0/24")]


@pytest.mark.parametrize("case", ["wrong password", "no client certificate", "no password",
                                  "outside its prefix"])
def test_refused_credentials_are_one_error_line(secure_etcd, tmp_path, case):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a"])
    tls = tls_flags(secure_etcd.tls)
    args, password, code = {
        "wrong password": ([*tls, "--etcd-user", "netplan"], "not-" + PASSWORD, 3),
        "no client certificate": (["--etcd-ca", str(secure_etcd.tls.ca), "--etcd-user",
                                   "netplan", "--store-timeout", "1"], PASSWORD, 3),
        "no password": ([*tls, "--etcd-user", "netplan"], None, 2),
        "outside its prefix": ([*tls, "--etcd-user", "netplan", "--etcd-prefix", "/other"],
                               PASSWORD, 3),
    }[case]
    r = netplan("allocate", "-f", spec, "--store", secure_etcd.url, *args, env=env(password))
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert PASSWORD not in r.stderr + r.stdout
    assert stored_leases(secure_etcd, "demo", user="root", password="root-pw") == []


def test_racing_writers_queue_on_the_lock_with_only_their_prefix_granted(secure_etcd, tmp_path):
    """The writers' lock is a key under the prefix tied to an etcd lease: user netplan, who
    may only read and write /netplan/, takes and releases it."""
    tls = secure_etcd.tls
    options = StoreOptions(etcd_ca=str(tls.ca), etcd_cert=str(tls.client_cert),
                           etcd_key=str(tls.client_key), etcd_user="netplan",
                           etcd_password=PASSWORD)
    mine = load_spec_file(write_spec(tmp_path / "m.yaml", "demo", ["a", "b"]))
    theirs = load_spec_file(write_spec(tmp_path / "t.yaml", "demo", ["x"], offset=10))
    root = {"user": "root", "password": "root-pw"}
    held = []
    with open_store(secure_etcd.url, options) as store, \
            open_store(secure_etcd.url, options) as other, secure_etcd.client(**root) as client:
        def plan(snapshot):
            held.append(lock_holder(client, "/netplan/demo/lock"))
            if len(held) == 1:  # another writer lands between our read and our write
                other.update(lambda s: ((p := build_plan(theirs, s, True)).write(), p))
            p = build_plan(mine, snapshot, True)
            return p.write(), p

        store.update(plan)
        assert store.lost_races == 1 and held[0] is None and held[1] is not None
        assert lock_holder(client, "/netplan/demo/lock") is None
