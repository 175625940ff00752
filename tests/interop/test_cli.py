"""The command line around the interop commands: help with examples, shell completion, and
the progress bar that shows on slow runs at a terminal only."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import time

import pytest
from rich.console import Console

from cli_support import NETPLAN, base_env, write_spec
from planner.progress import working


@pytest.mark.parametrize("command", ["render", "map", "capacity", "schema", "topology"])
def test_help_has_an_example(netplan, command):
    r = netplan(command, "--help")
    assert r.returncode == 0, r.describe()
    assert "Example" in r.stdout and f"netplan {command}" in r.stdout, r.stdout


def test_shell_completion_is_on(netplan):
    r = netplan("--show-completion", "bash")
    assert r.returncode == 0 and "complete" in r.stdout, r.describe()


def _terminal() -> tuple[Console, io.StringIO]:
    sink = io.StringIO()
    return Console(file=sink, force_terminal=True, width=80), sink


def test_progress_shows_once_the_work_lasts():
    console, sink = _terminal()
    with working(console, "planning 5,000 nodes", delay=0.05) as phase:
        time.sleep(0.3)
        phase("drawing")
        time.sleep(0.3)
    shown = sink.getvalue()
    assert "planning 5,000 nodes" in shown and "drawing" in shown


@pytest.mark.parametrize("case", ["quick", "quiet", "not-a-terminal"])
def test_progress_stays_silent(case):
    console, sink = _terminal()
    if case == "not-a-terminal":
        console = Console(file=sink, force_terminal=False)
    with working(console, "planning", quiet=case == "quiet",
                 delay=0.05 if case != "quick" else 5.0):
        time.sleep(0.2 if case != "quick" else 0.0)
    assert sink.getvalue() == ""


@pytest.fixture(scope="module")
def slow_spec(tmp_path_factory):
    """12,000 nodes: reading and planning them takes a good part of a second."""
    nodes = [{"name": f"n{i:05d}", "address": f"192.168.{i // 250}.{i % 250 + 1}"}
             for i in range(12000)]
    spec = {"cluster": "big", "pools": [{"name": "pods-v4", "cidr": "10.0.0.0/8"}],
            "services": {"cidr": "172.16.0.0/12"}, "nodes": nodes, "bgp": {"topology": "none"}}
    return write_spec(tmp_path_factory.mktemp("slow"), spec)


def _at_a_terminal(args: list[str], cwd, env: dict | None = None) -> tuple[str, str]:
    """Run netplan with stderr on a pty; (stdout, what reached the terminal)."""
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run([NETPLAN, *args], stdout=subprocess.PIPE, stderr=secondary,
                              stdin=subprocess.DEVNULL, cwd=cwd,
                              env={**base_env(), "TERM": "xterm", **(env or {})},
                              timeout=60)
    finally:
        os.close(secondary)
    assert done.returncode == 0
    os.set_blocking(primary, False)
    seen = b""
    try:
        while chunk := os.read(primary, 65536):
            seen += chunk
    except OSError:  # drained (EAGAIN), or EIO once the terminal has no other end
        pass
    finally:
        os.close(primary)
    return done.stdout.decode(), seen.decode(errors="replace")


def test_slow_runs_show_a_bar_at_a_terminal_but_never_with_json(slow_spec):
    # The bar waits for the work to outlast a delay (1 s by default); a short one here keeps
    # the test independent of how fast this machine plans 12,000 nodes.
    fast_bar = {"NETPLAN_PROGRESS_DELAY": "0.05"}
    args = ["capacity", "-f", str(slow_spec), "--store", "memory:"]
    stdout, terminal = _at_a_terminal(args, slow_spec.parent, fast_bar)
    assert "room for 53,536 more" in stdout
    assert "12,000 nodes" in terminal or "reading the spec" in terminal, terminal
    stdout, terminal = _at_a_terminal([*args, "-o", "json"], slow_spec.parent, fast_bar)
    assert stdout.startswith("{") and terminal == ""


def test_quick_runs_show_no_bar_at_a_terminal(tmp_path):
    spec = write_spec(tmp_path, {"cluster": "small",
                                 "nodes": [{"name": "a", "address": "10.0.0.1"}]})
    stdout, terminal = _at_a_terminal(["plan", "-f", str(spec), "--store", "memory:"],
                                      tmp_path, {"NETPLAN_PROGRESS_DELAY": "30"})
    assert "cluster small" in stdout and terminal == ""
