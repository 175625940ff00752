"""`netplan speaker`: the command that runs a node's BGP speaker (bgp/speaker.py).

register(app) is called by planner/cli.py once its shared options are defined; it reads
them from planner.cli then, never at import, so either module can be imported first.
(No `from __future__ import annotations`: typer reads the options' annotations, which
name the local `cli`.)
"""

import ipaddress
import logging
import os
from typing import Annotated

import typer

from ipam.errors import InvalidInput
from planner.routing import topology_of
from planner.spec import load_spec_file


def register(app: typer.Typer) -> None:
    from planner import cli

    @app.command()
    def speaker(
        file: cli.SpecOpt,
        node: Annotated[str, typer.Option("--node", help="The node this speaker runs on.")],
        store: cli.StoreOpt = cli.DEFAULT_STORE,
        status_port: Annotated[int, typer.Option(
            "--status-port", min=0, max=65535,
            help="Port of /healthz, /metrics and /status (0: any free port).")] = 9179,
        status_address: Annotated[str, typer.Option(
            "--status-address", help="Address of the status endpoints.")] = "127.0.0.1",
        install_routes: Annotated[bool, typer.Option(
            "--install-routes",
            help="Install learned routes into this network namespace's routing table.")]
        = False,
        lease_ttl: Annotated[int | None, typer.Option(
            "--lease-ttl", min=1,
            help="etcd: tie the node's leases to a lease of this many seconds and keep it "
                 "alive; they are freed when the speaker stops renewing it.")] = None,
    ) -> None:
        """The sidecar BGP speaker: runs ExaBGP, announces the node's pod CIDRs from the
        store and withdraws them when their leases go; serves /healthz, /metrics, /status.

        Route reflectors run BIRD instead (`netplan render bird`). Stops on SIGTERM.

        Example: `netplan speaker -f netplan.yaml --node node-a --store ./netplan.db`
        """
        # Here, not at the top: ExaBGP's supervisor, the agent, prometheus_client and
        # http.server are some 60 ms of imports that every other command would pay.
        from bgp.speaker import SpeakerConfig, run_speaker

        spec = load_spec_file(file)
        if node not in {n.name for n in spec.nodes}:
            raise InvalidInput("--node", node, "is not a node of the spec")
        _check_address(status_address)
        logging.basicConfig(
            level=logging.DEBUG if os.environ.get("NETPLAN_DEBUG") == "1" else logging.INFO,
            format="%(asctime)s netplan-speaker[%(process)d] %(levelname)s %(message)s",
        )
        config = SpeakerConfig(
            topology=topology_of(spec, secrets=True),
            node=node,
            store=store,
            store_options=cli._store_options,
            status_address=status_address,
            status_port=status_port,
            install_routes=install_routes,
            lease_ttl=lease_ttl,
        )
        raise typer.Exit(run_speaker(config))


def _check_address(address: str) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise InvalidInput("--status-address", address, "is not an IP address") from None
