"""The command line: parse, call the core, print, map errors to exit codes.

0 done; 1 unsatisfiable (or `check` found problems); 2 malformed input; 3 store failure.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from enum import Enum
from typing import Annotated

from functools import cache
from typing import TYPE_CHECKING

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer's own click

from ipam.errors import InvalidInput, NetplanError
from ipam.state import ClusterWrite, Snapshot
from ipam.store import Store, StoreOptions, open_store
from planner.routing import topology_of, topology_summary
from bgp import render_bird, render_exabgp
from planner.files import write_private
from planner import speaker_cli
from planner.capacity import DEFAULT_HORIZON_MONTHS, KUBELET_MAX_PODS
from planner.spec import load_spec_file

# What only some commands use is imported by them: rich, the planner, the reports and
# pictures cost a `netplan speaker` (a node's restart) about 40 ms, and it needs none of it.
if TYPE_CHECKING:
    from rich.console import Console

    from planner.plan import Plan

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

@cache
def _out() -> Console:
    from rich.console import Console

    class Output(Console):
        def on_broken_pipe(self) -> None:
            # The reader went away (`netplan show | head`): main() ends quietly. rich's own
            # handler exits 1, which here would mean "the spec cannot be satisfied".
            raise BrokenPipeError

    # Piped output is not cut to 80 columns: tables of addresses stay whole for grep and less.
    return Output(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


@cache
def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class Output(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


class PresetName(str, Enum):
    flannel = "flannel"
    calico = "calico"


SpecOpt = Annotated[str, typer.Option(
    "--file", "-f", help="The spec (YAML); `-` reads it from standard input.", metavar="SPEC")]
StoreOpt = Annotated[
    str,
    typer.Option("--store", envvar="NETPLAN_STORE",
                 help="A SQLite file path, `memory:`, or an etcd cluster: "
                      "`etcd://HOST:PORT[,...]` or `http://...`; `https://...` for TLS.",
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
    etcd_ca: Annotated[str | None, typer.Option(
        "--etcd-ca", help="CA certificate (PEM) that signed etcd's server certificate.")] = None,
    etcd_cert: Annotated[str | None, typer.Option(
        "--etcd-cert", help="Client certificate (PEM) for etcd.")] = None,
    etcd_key: Annotated[str | None, typer.Option(
        "--etcd-key", help="Client key (PEM) for etcd.")] = None,
    etcd_user: Annotated[str | None, typer.Option(
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
        _err().print(f"warning: {m}", markup=False)


@app.command()
def init(
    preset: Annotated[PresetName, typer.Option(help="Starting point: flannel or calico.")] =
    PresetName.flannel,
) -> None:
    """Print a commented starter spec.

    Example: `netplan init --preset calico > netplan.yaml`
    """
    from planner.starter import starter_spec

    sys.stdout.write(starter_spec(preset.value))


def _plan_command(spec_path: str, store_url: str, output: Output, keep_removed: bool,
                  apply: bool) -> None:
    from planner import report
    from planner.plan import build_plan
    from planner.progress import working

    with working(_err(), "reading the spec", quiet=output is not Output.table) as phase:
        spec = load_spec_file(spec_path)
        phase(f"planning {len(spec.nodes):,} nodes")
        with _store(store_url) as store:
            if apply:
                def step(snapshot: Snapshot) -> tuple[ClusterWrite | None, Plan]:
                    plan = build_plan(spec, snapshot, keep_removed)
                    return plan.write(), plan

                plan = store.update(step, cluster=spec.cluster)
            else:
                plan = build_plan(spec, store.snapshot(), keep_removed)
        phase("planning BGP sessions")
        topo = topology_summary(spec, plan)
    data = report.plan_dict(plan)
    data["bgp"] = {"topology": topo.topology, "sessions": topo.sessions,
                   "explanation": topo.explanation}
    data["warnings"] += list(topo.warnings)
    if output is Output.table:
        _warn(data.pop("warnings"))
        data["warnings"] = []
        title = " — allocated" if apply else " — plan (nothing written)"
        report.plan_table(data, _out(), title)
    else:
        report.emit(data, output.value, _out(), report.plan_table)


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
    cluster: Annotated[str | None, typer.Option(help="Only this cluster.")] = None,
    store: StoreOpt = DEFAULT_STORE,
    output: OutOpt = Output.table,
) -> None:
    """Show what the store holds: pools, services, nodes and their CIDRs.

    Example: `netplan show --cluster demo -o json`
    """
    from planner import report

    with _store(store) as s:
        snapshot = s.snapshot()
    if cluster is not None:
        if cluster not in snapshot.clusters:
            raise InvalidInput("--cluster", cluster, "is not a cluster of the store")
        data = report.cluster_dict(cluster, snapshot.clusters[cluster])
        report.emit(data, output.value, _out(), report.plan_table)
        return
    data = {"clusters": [report.cluster_dict(n, st) for n, st in snapshot.clusters.items()]}
    report.emit(data, output.value, _out(), report.clusters_table)


@app.command()
def release(
    cluster: Annotated[str, typer.Option(help="The cluster whose leases to release.")],
    nodes: Annotated[list[str] | None, typer.Argument(
        help="Nodes whose leases to release.", metavar="NODE...")] = None,
    all_: Annotated[bool, typer.Option(
        "--all", help="Release every lease of the cluster and forget it.")] = False,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Release the leases of nodes (their CIDRs are reused last, oldest first).

    Example: `netplan release --cluster demo node-c`
    """
    from planner.release import release_write

    nodes = nodes or []
    if all_ and nodes:
        raise InvalidInput("NODE", nodes[0], "cannot be given with --all")
    if not all_ and not nodes:
        raise InvalidInput("NODE", "", "is missing: name the nodes to release, or --all")
    with _store(store) as s:
        # Checked on a snapshot first: an unknown cluster must not create the store.
        if cluster not in s.snapshot().clusters:
            raise InvalidInput("--cluster", cluster, "is not a cluster of the store")
        freed, missing = s.update(lambda snap: release_write(snap, cluster, nodes, all_),
                                  cluster=cluster)
    _warn(f"node {n} holds no lease in cluster {cluster}" for n in missing)
    for lease in freed:
        _out().print(f"released {lease.node} {lease.pool} {lease.cidr}", markup=False)
    if all_:
        _out().print(f"forgot cluster {cluster}", markup=False)


class TopologyFormat(str, Enum):
    table = "table"
    json = "json"
    dot = "dot"
    mermaid = "mermaid"
    svg = "svg"


class RenderTarget(str, Enum):
    bird = "bird"
    exabgp = "exabgp"
    kubeadm = "kubeadm"
    calico = "calico"
    flannel = "flannel"
    nodes = "nodes"


class RenderFormat(str, Enum):
    yaml = "yaml"
    json = "json"
    kubectl = "kubectl"


# The daemons render one node's configuration; the other targets cover the whole cluster.
DAEMONS = (RenderTarget.bird, RenderTarget.exabgp)


@app.command()
def topology(
    file: SpecOpt,
    output: Annotated[TopologyFormat, typer.Option("--output", "-o", help="Output format.")] =
    TopologyFormat.table,
) -> None:
    """Show every node's BGP sessions: full mesh, route reflectors, external peers.

    `-o svg` draws the graph with Graphviz's `dot` (apt-get install graphviz).

    Example: `netplan topology -f netplan.yaml -o svg > bgp.svg`
    """
    from planner import pictures, report
    from planner.progress import working

    with working(_err(), "reading the spec", quiet=output is not TopologyFormat.table) as phase:
        spec = load_spec_file(file)
        phase(f"planning the BGP sessions of {len(spec.nodes):,} nodes")
        topo = topology_of(spec)
    if output is TopologyFormat.json:
        _out().file.write(topo.to_json() + "\n")
    elif output is TopologyFormat.dot:
        _out().file.write(topo.to_dot())
    elif output is TopologyFormat.svg:
        _out().file.write(pictures.dot_to_svg(topo.to_dot()))
    elif output is TopologyFormat.mermaid:
        _out().file.write(topo.to_mermaid())
    else:
        report.topology_table(topo.to_dict(), _out())
        _warn(topo.warnings)


@app.command()
def render(
    target: Annotated[RenderTarget, typer.Argument(
        help="bird or exabgp (one node, needs --node); kubeadm, calico, flannel or nodes "
             "(the whole cluster).")],
    file: SpecOpt,
    node: Annotated[str | None, typer.Option(
        "--node", help="bird, exabgp: the node to render for.")] = None,
    store: StoreOpt = DEFAULT_STORE,
    output: Annotated[RenderFormat | None, typer.Option(
        "--output", "-o",
        help="kubeadm, calico: yaml (default) or json; flannel: json (net-conf.json, "
             "default) or yaml (its ConfigMap); nodes: kubectl (patch commands, default), "
             "yaml or json (a List of Nodes).")] = None,
    out_file: Annotated[str | None, typer.Option(
        "--out", help="Write to this file (mode 0600) instead of stdout.",
        metavar="FILE")] = None,
    show_secrets: Annotated[bool, typer.Option(
        "--show-secrets", help="Write MD5 passwords from their passwordEnv variables.")] = False,
    export_kernel: Annotated[bool, typer.Option(
        "--export-kernel", help="bird: install learned pod routes into the kernel.")] = False,
) -> None:
    """Configuration for BGP daemons, kubeadm, Calico, flannel and Kubernetes Nodes.

    Every target renders the node CIDRs `plan` computes from the store.

    - bird, exabgp: one node's BGP daemon configuration; it announces the node's CIDRs.
    - kubeadm: a ClusterConfiguration's networking and kube-controller-manager's flags.
    - calico: IPPools, BGPConfiguration, BGPPeers and reflector Nodes (projectcalico.org/v3).
    - flannel: net-conf.json.
    - nodes: every Node's spec.podCIDRs, as `kubectl patch` commands.

    Example: `netplan render bird -f netplan.yaml --node node-a --out /etc/bird/bird.conf`

    Example: `netplan render calico -f netplan.yaml | calicoctl apply -f -`
    """
    from planner import interop
    from planner.plan import build_plan
    from planner.progress import working

    spec = load_spec_file(file)
    if target in DAEMONS:
        if output is not None:
            raise InvalidInput("--output", output.value, f"is not an option of render "
                               f"{target.value}")
        if node is None:
            raise InvalidInput("--node", None, f"is required: render {target.value} "
                               "configures one node")
        if node not in {n.name for n in spec.nodes}:
            raise InvalidInput("--node", node, "is not a node of the spec")
    elif node is not None:
        raise InvalidInput("--node", node, f"is not an option of render {target.value}, "
                           "which covers every node")
    with working(_err(), f"planning {len(spec.nodes):,} nodes",
                 quiet=output is RenderFormat.json) as phase:
        with _store(store) as s:
            planned = build_plan(spec, s.snapshot())
        phase("planning BGP sessions")
        if target in DAEMONS:
            topo = topology_of(spec, planned, secrets=show_secrets)
        elif target is RenderTarget.calico:
            topo = topology_of(spec, planned)  # Calico reads passwords from a Secret
        else:
            topo = None
    if target is RenderTarget.bird:
        text = render_bird(topo, node, show_secrets=show_secrets, export_kernel=export_kernel)
    elif target is RenderTarget.exabgp:
        text = render_exabgp(topo, node, show_secrets=show_secrets)
    else:
        facts = interop.cluster_facts(spec, planned, topo)
        text = interop.render(target.value, facts, output.value if output else None)
    if out_file is None:
        _out().file.write(text)
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
    from planner import report
    from planner.audit import audit

    with _store(store) as s:
        data = audit(s.snapshot())
    report.emit(data, output.value, _out(), report.check_table)
    if data["problems"]:
        raise typer.Exit(1)


class MapFormat(str, Enum):
    svg = "svg"
    png = "png"


@app.command(name="map")
def map_command(
    file: SpecOpt,
    out_file: Annotated[str, typer.Option(
        "--out", help="The picture file to write.", metavar="FILE")],
    store: StoreOpt = DEFAULT_STORE,
    output: Annotated[MapFormat, typer.Option(
        "--output", "-o", help="svg, or png (needs CairoSVG: pip install cairosvg).")] =
    MapFormat.svg,
) -> None:
    """Draw each pool's address space, as an SVG or PNG picture.

    Every node CIDR as the plan leaves it: allocated, reserved, free or released-cooling
    (freed, reused last). Hover a cell for its CIDR and node.

    Example: `netplan map -f netplan.yaml -o svg --out pools.svg`
    """
    from planner import pictures, svgmap
    from planner.plan import build_plan
    from planner.progress import working

    with working(_err(), "reading the spec") as phase:
        spec = load_spec_file(file)
        phase(f"planning {len(spec.nodes):,} nodes")
        with _store(store) as s:
            snapshot = s.snapshot()
        planned = build_plan(spec, snapshot)
        phase("drawing")
        stored = snapshot.clusters.get(spec.cluster)
        svg = svgmap.render_svg(
            spec.cluster, svgmap.pool_pictures(planned, stored.history if stored else ()))
        picture = pictures.svg_to_png(svg) if output is MapFormat.png else svg
    pictures.write_picture(out_file, picture)


class CapacityFormat(str, Enum):
    table = "table"
    json = "json"


@app.command()
def capacity(
    file: SpecOpt,
    store: StoreOpt = DEFAULT_STORE,
    growth: Annotated[str, typer.Option(
        "--growth", help="Nodes added: N/month (or N/week, N/year).", metavar="N/month")] =
    "0/month",
    horizon: Annotated[int, typer.Option(
        "--horizon", min=1, help="Months ahead the suggested changes must last.")] =
    DEFAULT_HORIZON_MONTHS,
    max_pods: Annotated[int, typer.Option(
        "--max-pods", min=1, help="The kubelet's --max-pods.")] = KUBELET_MAX_PODS,
    output: Annotated[CapacityFormat, typer.Option("--output", "-o", help="Output format.")] =
    CapacityFormat.table,
) -> None:
    """Forecast each pool's capacity, and what to change before it runs out.

    Per pool: nodes that still fit, months until it is full at the given growth, pods per
    node, and three changes (bigger pool, smaller node CIDRs, new pool) with the
    consequences of each.

    Pods per node: a node CIDR's addresses less the network address, the gateway and (IPv4)
    the broadcast address, as CNI host-local hands them out; at most --max-pods.

    Example: `netplan capacity -f netplan.yaml --growth 20/month`
    """
    from planner import report
    from planner.capacity import capacity_table, forecast, parse_growth
    from planner.plan import build_plan
    from planner.progress import working

    per_month = parse_growth(growth)
    with working(_err(), "reading the spec", quiet=output is CapacityFormat.json) as phase:
        spec = load_spec_file(file)
        phase(f"planning {len(spec.nodes):,} nodes")
        with _store(store) as s:
            snapshot = s.snapshot()
        data = forecast(spec, build_plan(spec, snapshot), snapshot, per_month, horizon,
                        max_pods)
    report.emit(data, output.value, _out(), capacity_table)


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema, for editors to validate and complete specs.

    Draft 2020-12; e.g. for the YAML language server, start a spec with
    `# yaml-language-server: $schema=netplan.schema.json`.

    Example: `netplan schema > netplan.schema.json`
    """
    from planner.schema import spec_schema

    _out().file.write(json.dumps(spec_schema(), indent=2) + "\n")


speaker_cli.register(app)

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

    def traceback_if_debug() -> None:
        # Shown before the error line; the exit code stays the one scripts act on.
        if debug:
            traceback.print_exc()

    try:
        code = command.main(args=args, prog_name="netplan", standalone_mode=False)
    except NetplanError as exc:
        traceback_if_debug()
        _err().print(f"error: {exc}", markup=False)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:
        if isinstance(exc, NoArgsIsHelpError):
            return 2  # the help is printed already
        traceback_if_debug()
        _err().print(f"error: {exc.format_message()}", markup=False)
        return exc.exit_code
    except typer.Abort:
        _err().print("error: aborted", markup=False)
        return 130
    except BrokenPipeError:
        # The command's work is done; what is left unprinted has no reader. Python would
        # fail again flushing stdout on the way out: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: say so in one line; --debug shows where
        traceback_if_debug()
        hint = "" if debug else "; rerun with --debug for the traceback"
        _err().print(f"error: internal error ({type(exc).__name__}: {exc}){hint}", markup=False)
        return 1
    return code if isinstance(code, int) else 0
