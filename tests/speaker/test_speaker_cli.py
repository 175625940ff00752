"""`netplan speaker`'s input errors (exit 2) and a host it cannot speak BGP on (exit 1):
one line, nothing started."""

from __future__ import annotations

import socket
import subprocess

import pytest
from speaker_harness import NETPLAN, Node, write_spec


@pytest.fixture
def spec(tmp_path):
    nodes = [Node("node-r", "127.0.0.1"), Node("node-a", "127.0.0.2")]
    return write_spec(tmp_path / "rr.yaml", nodes, topology="route-reflector",
                      reflectors=["node-r"])


def speaker(tmp_path, spec, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*NETPLAN, "speaker", "-f", str(spec), "--status-port", "0", *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )


@pytest.mark.parametrize(("args", "message"), [
    (["--node", "node-r"],
     "error: --node: 'node-r' is a route reflector: ExaBGP does not reflect routes; "
     "run BIRD on it (netplan render bird -f SPEC --node node-r)"),
    (["--node", "node-x"], "error: --node: 'node-x' is not a node of the spec"),
    (["--node", "node-a", "--store", "memory:"],
     "error: --store: 'memory:' lives in one process: the speaker needs a file or etcd"),
    (["--node", "node-a", "--lease-ttl", "10"],
     "error: --lease-ttl: 10 needs an etcd store (--store etcd://...)"),
    (["--node", "node-a", "--status-address", "localhost"],
     "error: --status-address: 'localhost' is not an IP address"),
], ids=["reflector", "unknown-node", "memory-store", "ttl-without-etcd", "status-address"])
def test_input_errors(tmp_path, spec, args, message):
    result = speaker(tmp_path, spec, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.splitlines(), result.stderr
    assert "ExaBGP started" not in result.stderr
    assert not (tmp_path / "netplan.db").exists()


# 192.0.2.0/24 is TEST-NET-1: never an address of this host. Only bound, never sent to.
@pytest.mark.parametrize(("address", "reason"), [
    ("192.0.2.1", "the address is not one of this host's: run the speaker on the node the "
                  "spec gives it to, or correct the node's address in the spec"),
    ("127.0.0.2", "the port is taken (another BGP daemon: BIRD, a second speaker?); stop it, "
                  "or give the node another bgpPort"),
], ids=["address-elsewhere", "port-taken"])
def test_a_node_address_it_cannot_listen_on_is_an_error(tmp_path, address, reason):
    """ExaBGP would log the failed bind, exit and be restarted for ever, no session up."""
    with socket.socket() as holder:  # holds 127.0.0.2's port as another daemon would
        holder.bind(("127.0.0.2", 0))
        holder.listen()
        port = holder.getsockname()[1]
        spec = write_spec(tmp_path / "spec.yaml", [Node("node-a", address, port),
                                                   Node("node-b", "127.0.0.3")],
                          topology="full-mesh")
        result = speaker(tmp_path, spec, "--node", "node-a")
    assert result.returncode == 1, result.stderr
    assert (f"error: node node-a: cannot listen on {address}:{port}: {reason}"
            in result.stderr.splitlines()), result.stderr
    assert "ExaBGP started" not in result.stderr
