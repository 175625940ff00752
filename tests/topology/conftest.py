"""Fixtures of the bgp tests: input builders, and the real BIRD and ExaBGP parsers.

BIRD (Debian's bird2) and ExaBGP are installed by the project (CI installs them): a missing
one fails the tests that need it with the command to install it, it never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path

import pytest

from bgp.model import BgpSettings, ExternalPeer, Node
from bgp.topology import Topology, plan_topology


def build_node(
    name: str,
    *addresses: str,
    labels: dict[str, str] | None = None,
    port: int = 179,
    pod_cidrs: Sequence[str] = (),
    router_id: str | None = None,
) -> Node:
    parsed = tuple(sorted((ip_address(a) for a in addresses), key=lambda a: a.version))
    rid = IPv4Address(router_id) if router_id else next(a for a in parsed if a.version == 4)
    return Node(
        name=name,
        addresses=parsed,
        router_id=rid,
        labels=tuple(sorted((labels or {}).items())),
        port=port,
        pod_cidrs=tuple(ip_network(c) for c in pod_cidrs),
    )


def build_settings(
    topology: str = "full-mesh",
    *,
    names: Sequence[str] = (),
    selector: dict[str, str] | None = None,
    cluster_id: str | None = None,
    peers: Sequence[ExternalPeer] = (),
    as_number: int = 64512,
) -> BgpSettings:
    return BgpSettings(
        as_number=as_number,
        port=179,
        topology=topology,
        reflector_names=tuple(names),
        reflector_selector=tuple(sorted((selector or {}).items())),
        cluster_id=IPv4Address(cluster_id) if cluster_id else None,
        peers=tuple(peers),
    )


def build_peer(
    address: str,
    *,
    as_number: int = 65001,
    port: int = 179,
    selector: dict[str, str] | None = None,
    password_env: str | None = None,
    password: str | None = None,
) -> ExternalPeer:
    return ExternalPeer(
        address=ip_address(address),
        as_number=as_number,
        port=port,
        node_selector=tuple(sorted((selector or {}).items())),
        password_env=password_env,
        password=password,
    )


def build_cluster(n: int, *, v6: bool = True, v4: bool = True, racks: int = 0) -> list[Node]:
    """n nodes node-0000.. with 10.0.x.y and/or fd00::x addresses, a /24 of 10.128.0.0/9 each."""
    nodes = []
    for i in range(n):
        addresses = ([f"10.0.{i // 250}.{i % 250 + 1}"] if v4 else []) + (
            [f"fd00::{i + 1:x}"] if v6 else []
        )
        nodes.append(
            build_node(
                f"node-{i:04d}",
                *addresses,
                labels={"rack": f"r{i % racks}"} if racks else None,
                pod_cidrs=[f"10.{128 + i // 256}.{i % 256}.0/24"],
                router_id=f"10.0.{i // 250}.{i % 250 + 1}",
            )
        )
    return nodes


POOLS = (ip_network("10.244.0.0/16"), ip_network("10.128.0.0/9"), ip_network("fd00:10:244::/56"))


@pytest.fixture(scope="session")
def make_node() -> Callable[..., Node]:
    return build_node


@pytest.fixture(scope="session")
def make_settings() -> Callable[..., BgpSettings]:
    return build_settings


@pytest.fixture(scope="session")
def make_peer() -> Callable[..., ExternalPeer]:
    return build_peer


@pytest.fixture(scope="session")
def make_cluster() -> Callable[..., list[Node]]:
    return build_cluster


@pytest.fixture(scope="session")
def plan() -> Callable[..., Topology]:
    """plan_topology of cluster demo over POOLS; full mesh unless told otherwise."""

    def planned(nodes: Sequence[Node], bgp: BgpSettings | None = None) -> Topology:
        return plan_topology("demo", nodes, bgp or build_settings(), POOLS)

    return planned


def _require(program: str, package: str) -> str:
    path = shutil.which(
        program, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    )
    if path is None:
        pytest.fail(
            f"{program} is not installed; the bgp tests need it: apt-get install {package}",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def bird_bin() -> str:
    return _require("bird", "bird2")


@pytest.fixture(scope="session")
def birdc_bin() -> str:
    return _require("birdc", "bird2")


@pytest.fixture(scope="session")
def exabgp_bin() -> str:
    # the exabgp of this interpreter's environment first: it is the project's dependency
    beside = Path(sys.executable).parent / "exabgp"
    if beside.exists():
        return str(beside)
    path = shutil.which("exabgp")
    if path is None:
        pytest.fail(
            "exabgp is not installed; it is a dependency of the project: pip install exabgp",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def exabgp_env() -> dict[str, str]:
    """What ExaBGP needs to run here (DESIGN section 8): no CLI pipes, no privilege drop."""
    return {
        **os.environ,
        "exabgp.api.cli": "false",
        "exabgp.daemon.user": "root",
        "exabgp.daemon.drop": "false",
    }


def _parser_check(
    tmp_path: Path, name: str, argv: list[str], env: dict[str, str] | None, timeout: float
) -> Callable[[str], None]:
    """A check that writes each configuration to a new file and runs argv + [file] on it."""
    count = 0

    def check(config: str) -> None:
        nonlocal count
        count += 1
        path = tmp_path / f"{name}-{count}.conf"
        path.write_text(config)
        result = subprocess.run(
            [*argv, str(path)], capture_output=True, text=True, env=env, timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, (
            f"{' '.join(argv[:2])} rejects {path}: {result.stdout}{result.stderr}\n{config}"
        )

    return check


@pytest.fixture
def bird_accepts(bird_bin: str, tmp_path: Path) -> Callable[[str], None]:
    """Assert that BIRD's own parser (`bird -p`) accepts a configuration."""
    return _parser_check(tmp_path, "bird", [bird_bin, "-p", "-c"], None, 30)


@pytest.fixture
def exabgp_accepts(
    exabgp_bin: str, exabgp_env: dict[str, str], tmp_path: Path
) -> Callable[[str], None]:
    """Assert that `exabgp validate` accepts a configuration, neighbors and routes included."""
    return _parser_check(
        tmp_path, "exabgp", [exabgp_bin, "validate", "--neighbor", "--route"], exabgp_env, 60
    )
