"""The command line: parse, call the core, print, map errors to exit codes.

0 done; 1 unsatisfiable (or `check` found problems); 2 malformed input; 3 store failure.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.console import Console
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer's own click

from ipam.errors import InvalidInput, NetplanError
from ipam.store import ClusterWrite, Store, StoreOptions, open_store
from ipam.store.base import Snapshot
from planner.release import release_write
from planner.routing import topology_of
from bgp import render_bird, render_exabgp
from planner.files import write_private
from planner import report
from planner.audit import audit
from planner.plan import Plan, build_plan
from planner.spec import load_spec_file
from planner.starter import starter_spec

app = typer.Typer(
    name="netplan",
    help="Declarative IPAM and BGP topology planner for Kubernetes-style clusters.\n\n"
    "Write one YAML spec (`netplan init`), see what would change (`netplan plan`), "
    "then make the store match it (`netplan allocate`).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

# Piped output is not cut to 80 columns: tables of addresses stay whole for grep and less.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Output(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


class PresetName(str, Enum):
    flannel = "flannel"
    calico = "calico"


SpecOpt = Annotated[str, typer.Option("--file", "-f", help="The spec (YAML).", metavar="SPEC")]
StoreOpt = Annotated[
    str,
    typer.Option("--store", envvar="NETPLAN_STORE",
                 help="A SQLite file path, `memory:` or `etcd://HOST:PORT[,...]`.",
                 metavar="S"),
]
OutOpt = Annotated[Output, typer.Option("--output", "-o", help="Output format.")]
DEFAULT_STORE = "./netplan.db"


def _store(url: str) -> Store:
    return open_store(url, _store_options)


# Set by the app callback from the global etcd flags, read when a command opens its store.
_store_options = StoreOptions()


@app.callback()
def _global(
    etcd_prefix: Annotated[str, typer.Option(
        "--etcd-prefix", envvar="NETPLAN_ETCD_PREFIX", help="Key prefix in etcd.")] = "/netplan",
    etcd_ca: Annotated[Optional[str], typer.Option(
        "--etcd-ca", help="CA certificate (PEM) that signed etcd's server certificate.")] = None,
    etcd_cert: Annotated[Optional[str], typer.Option(
        "--etcd-cert", help="Client certificate (PEM) for etcd.")] = None,
    etcd_key: Annotated[Optional[str], typer.Option(
        "--etcd-key", help="Client key (PEM) for etcd.")] = None,
    etcd_user: Annotated[Optional[str], typer.Option(
        "--etcd-user", help="etcd user; the password comes from $NETPLAN_ETCD_PASSWORD.")] = None,
    store_timeout: Annotated[float, typer.Option(
        "--store-timeout", min=0.1, help="Seconds before an unanswered store counts as down.")]
    = 5.0,
) -> None:
    """Global options (before the command): how to reach an etcd store."""
    global _store_options
    _store_options = StoreOptions(
        etcd_prefix=etcd_prefix, etcd_ca=etcd_ca, etcd_cert=etcd_cert, etcd_key=etcd_key,
        etcd_user=etcd_user, etcd_password=os.environ.get("NETPLAN_ETCD_PASSWORD"),
        timeout=store_timeout,
    )


def _warn(messages) -> None:
    for m in messages:
        err.print(f"warning: {m}", markup=False)


@app.command()
def init(
    preset: Annotated[PresetName, typer.Option(help="Starting point: flannel or calico.")] =
    PresetName.flannel,
) -> None:
    """Print a commented starter spec.

    Example: `netplan init --preset calico > netplan.yaml`
    """
    sys.stdout.write(starter_spec(preset.value))


def _plan_command(spec_path: str, store_url: str, output: Output, keep_removed: bool,
                  apply: bool) -> None:
    spec = load_spec_file(spec_path)
    with _store(store_url) as store:
        if apply:
            def step(snapshot: Snapshot) -> tuple[ClusterWrite | None, Plan]:
                plan = build_plan(spec, snapshot, keep_removed)
                return plan.write(), plan

            plan = store.update(step)
        else:
            plan = build_plan(spec, store.snapshot(), keep_removed)
    data = report.plan_dict(plan)
    topo = topology_of(spec, plan)
    data["bgp"] = {"topology": topo.topology, "sessions": topo.sessions,
                   "explanation": topo.explanation}
    data["warnings"] += list(topo.warnings)
    if output is Output.table:
        _warn(data.pop("warnings"))
        data["warnings"] = []
        title = " — allocated" if apply else " — plan (nothing written)"
        report.plan_table(data, out, title)
    else:
        report.emit(data, output.value, out, report.plan_table)


@app.command()
def plan(
    file: SpecOpt,
    store: StoreOpt = DEFAULT_STORE,
    output: OutOpt = Output.table,
    keep_removed: Annotated[bool, typer.Option(
        "--keep-removed", help="Plan as if allocate --keep-removed.")] = False,
) -> None:
    """Show what `allocate` would do. Writes nothing, never creates the store.

    Example: `netplan plan -f netplan.yaml -o json`
    """
    _plan_command(file, store, output, keep_removed, apply=False)


@app.command()
def allocate(
    file: SpecOpt,
    store: StoreOpt = DEFAULT_STORE,
    output: OutOpt = Output.table,
    keep_removed: Annotated[bool, typer.Option(
        "--keep-removed", help="Keep the leases of nodes that left the spec.")] = False,
) -> None:
    """Make the store match the spec: allocate every node its CIDRs, release the rest.

    One atomic run: on any error nothing is written.

    Example: `netplan allocate -f netplan.yaml --store ./netplan.db`
    """
    _plan_command(file, store, output, keep_removed, apply=True)


@app.command()
def show(
    cluster: Annotated[Optional[str], typer.Option(help="Only this cluster.")] = None,
    store: StoreOpt = DEFAULT_STORE,
    output: OutOpt = Output.table,
) -> None:
    """Show what the store holds: pools, services, nodes and their CIDRs.

    Example: `netplan show --cluster demo -o json`
    """
    with _store(store) as s:
        snapshot = s.snapshot()
    if cluster is not None:
        if cluster not in snapshot.clusters:
            raise InvalidInput("--cluster", cluster, "is not a cluster of the store")
        data = report.cluster_dict(cluster, snapshot.clusters[cluster])
        report.emit(data, output.value, out, report.plan_table)
        return
    data = {"clusters": [report.cluster_dict(n, st) for n, st in snapshot.clusters.items()]}
    report.emit(data, output.value, out, report.clusters_table)


@app.command()
def release(
    cluster: Annotated[str, typer.Option(help="The cluster whose leases to release.")],
    nodes: Annotated[Optional[list[str]], typer.Argument(
        help="Nodes whose leases to release.", metavar="NODE...")] = None,
    all_: Annotated[bool, typer.Option(
        "--all", help="Release every lease of the cluster and forget it.")] = False,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Release the leases of nodes (their CIDRs are reused last, oldest first).

    Example: `netplan release --cluster demo node-c`
    """
    nodes = nodes or []
    if all_ and nodes:
        raise InvalidInput("NODE", nodes[0], "cannot be given with --all")
    if not all_ and not nodes:
        raise InvalidInput("NODE", "", "is missing: name the nodes to release, or --all")
    with _store(store) as s:
        # Checked on a snapshot first: an unknown cluster must not create the store.
        if cluster not in s.snapshot().clusters:
            raise InvalidInput("--cluster", cluster, "is not a cluster of the store")
        freed, missing = s.update(lambda snap: release_write(snap, cluster, nodes, all_))
    _warn(f"node {n} holds no lease in cluster {cluster}" for n in missing)
    for lease in freed:
        out.print(f"released {lease.node} {lease.pool} {lease.cidr}", markup=False)
    if all_:
        out.print(f"forgot cluster {cluster}", markup=False)


class TopologyFormat(str, Enum):
    table = "table"
    json = "json"
    dot = "dot"
    mermaid = "mermaid"


class Daemon(str, Enum):
    bird = "bird"
    exabgp = "exabgp"


@app.command()
def topology(
    file: SpecOpt,
    output: Annotated[TopologyFormat, typer.Option("--output", "-o", help="Output format.")] =
    TopologyFormat.table,
) -> None:
    """Show every node's BGP sessions: full mesh, route reflectors, external peers.

    Example: `netplan topology -f netplan.yaml -o dot | dot -Tsvg > bgp.svg`
    """
    spec = load_spec_file(file)
    topo = topology_of(spec)
    if output is TopologyFormat.json:
        out.file.write(topo.to_json() + "\n")
    elif output is TopologyFormat.dot:
        out.file.write(topo.to_dot())
    elif output is TopologyFormat.mermaid:
        out.file.write(topo.to_mermaid())
    else:
        report.topology_table(topo.to_dict(), out)
        _warn(topo.warnings)


@app.command()
def render(
    daemon: Annotated[Daemon, typer.Argument(help="bird or exabgp.")],
    file: SpecOpt,
    node: Annotated[str, typer.Option("--node", help="The node to render for.")],
    store: StoreOpt = DEFAULT_STORE,
    out_file: Annotated[Optional[str], typer.Option(
        "--out", help="Write to this file (mode 0600) instead of stdout.")] = None,
    show_secrets: Annotated[bool, typer.Option(
        "--show-secrets", help="Write MD5 passwords from their passwordEnv variables.")] = False,
    export_kernel: Annotated[bool, typer.Option(
        "--export-kernel", help="bird: install learned pod routes into the kernel.")] = False,
) -> None:
    """Configuration of one node for BIRD 2 or ExaBGP; it announces the node's CIDRs as
    `plan` computes them from the store.

    Example: `netplan render bird -f netplan.yaml --node node-a --out /etc/bird/bird.conf`
    """
    spec = load_spec_file(file)
    if node not in {n.name for n in spec.nodes}:
        raise InvalidInput("--node", node, "is not a node of the spec")
    with _store(store) as s:
        planned = build_plan(spec, s.snapshot())
    topo = topology_of(spec, planned, secrets=show_secrets)
    if daemon is Daemon.bird:
        text = render_bird(topo, node, show_secrets=show_secrets, export_kernel=export_kernel)
    else:
        text = render_exabgp(topo, node, show_secrets=show_secrets)
    if out_file is None:
        out.file.write(text)
        return
    write_private(out_file, text)


@app.command()
def check(
    store: StoreOpt = DEFAULT_STORE,
    output: OutOpt = Output.table,
) -> None:
    """Audit the store: overlapping leases, leases outside their pool, orphans.

    Exit 1 when it finds a problem.

    Example: `netplan check --store ./netplan.db`
    """
    with _store(store) as s:
        data = audit(s.snapshot())
    report.emit(data, output.value, out, report.check_table)
    if data["problems"]:
        raise typer.Exit(1)


GLOBAL_OPTIONS = ("--etcd-prefix", "--etcd-ca", "--etcd-cert", "--etcd-key", "--etcd-user",
                  "--store-timeout")


def _hoist_global_options(args: list[str]) -> list[str]:
    """Move the store's connection flags in front of the command, so that they work
    wherever they stand (`netplan allocate -f x --store etcd://... --etcd-ca ca.pem`)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            takes_next = "=" not in arg and i + 1 < len(args)
            front += args[i : i + (2 if takes_next else 1)]
            i += 2 if takes_next else 1
            continue
        rest.append(arg)
        i += 1
    return front + rest


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("NETPLAN_DEBUG") == "1"
    args = _hoist_global_options([a for a in args if a != "--debug"])
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="netplan", standalone_mode=False)
    except NetplanError as exc:
        if debug:
            raise
        err.print(f"error: {exc}", markup=False)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:
        if debug:
            raise
        if isinstance(exc, NoArgsIsHelpError):
            return 2  # the help is printed already
        err.print(f"error: {exc.format_message()}", markup=False)
        return exc.exit_code
    except typer.Abort:
        err.print("error: aborted", markup=False)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so in one line; --debug shows where
        if debug:
            raise
        err.print(f"error: internal error ({type(exc).__name__}: {exc}); rerun with --debug "
                  "for the traceback", markup=False)
        return 1
    return code if isinstance(code, int) else 0
