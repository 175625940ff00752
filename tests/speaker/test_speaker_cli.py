"""`netplan speaker`'s input errors: one line, exit 2, nothing started."""

from __future__ import annotations

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
