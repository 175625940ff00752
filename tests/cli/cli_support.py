"""Helpers for the CLI tests: run `netplan` as a real process, write specs, digest stores.

Every test works in its own tmp_path (the process runs there, so the default store
`./netplan.db` never lands in the repository). The environment is scrubbed of
NETPLAN_STORE / NETPLAN_DEBUG so that the developer's shell cannot change the outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def _find_netplan() -> str | None:
    beside = Path(sys.executable).parent / "netplan"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("netplan")


NETPLAN = _find_netplan()
PYCACHE = os.path.join(tempfile.gettempdir(), f"netplan-cli-tests-pycache-{os.getuid()}")


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def json(self):
        assert self.returncode == 0, self.describe()
        return json.loads(self.stdout)

    def describe(self) -> str:
        return (f"netplan {' '.join(self.args)}\n-> exit {self.returncode}\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}")


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETPLAN_")}
    env["COLUMNS"] = "120"  # rich wraps help and tables to this width
    # ~200 short processes: let them share compiled bytecode, kept out of the source tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    env["NO_COLOR"] = "1"
    env["TERM"] = "dumb"
    return env


def run_netplan(*args: str | os.PathLike, cwd: Path, env: dict[str, str] | None = None,
                umask: int = -1, stdin: bytes | None = None) -> Result:
    if NETPLAN is None:
        pytest.fail("the `netplan` console script is neither next to sys.executable "
                    f"({Path(sys.executable).parent}) nor on PATH: install the project "
                    "(pip install -e .) into this interpreter's environment")
    argv = [str(a) for a in args]
    full_env = base_env()
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [NETPLAN, *argv], cwd=cwd, env=full_env, capture_output=True, timeout=60,
        umask=umask, input=stdin,
    )
    return Result(argv, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                  proc.stderr.decode("utf-8", "replace"))


def sha256(path: Path) -> str | None:
    """The digest of a store file, or None when it does not exist."""
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_spec(directory: Path, content: str | bytes | dict, name: str = "spec.yaml") -> Path:
    path = directory / name
    if isinstance(content, dict):
        content = yaml.safe_dump(content, sort_keys=False)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def assert_one_error_line(r: Result, code: int) -> str:
    """The process exited with `code` and printed exactly one `error:` line, no traceback."""
    assert r.returncode == code, r.describe()
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.describe()
    lines = r.err_lines
    assert len(lines) == 1, f"expected exactly one stderr line\n{r.describe()}"
    assert lines[0].startswith("error:"), r.describe()
    return lines[0]


class Netplan:
    """`netplan` bound to one working directory."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args, env=None, umask: int = -1, stdin: bytes | None = None) -> Result:
        return run_netplan(*args, cwd=self.cwd, env=env, umask=umask, stdin=stdin)

    def spec(self, content, name: str = "spec.yaml") -> Path:
        return write_spec(self.cwd, content, name)

    def allocate(self, spec: Path, store: Path, *extra) -> dict:
        """allocate -o json, which must succeed; the plan it printed."""
        r = self("allocate", "-f", spec, "--store", store, "-o", "json", *extra)
        assert r.returncode == 0, r.describe()
        return json.loads(r.stdout)

    def show(self, store: Path, *extra) -> dict:
        r = self("show", "--store", store, "-o", "json", *extra)
        assert r.returncode == 0, r.describe()
        return json.loads(r.stdout)


# A valid cluster, the state every "nothing is written" test starts from.
BASE_SPEC = {
    "cluster": "demo",
    "pools": [
        {"name": "pods-v4", "cidr": "10.244.0.0/16", "nodeMaskSize": 24},
        {"name": "pods-v6", "cidr": "fd00:10:244::/56", "nodeMaskSize": 64},
    ],
    "services": {"cidrs": ["10.96.0.0/12", "fd00:10:96::/108"]},
    "reserved": ["10.244.255.0/24"],
    "avoid": ["10.0.0.0/24"],
    "nodes": [
        {"name": "node-a", "addresses": ["10.0.0.11", "fd00:0:0:1::11"],
         "labels": {"rack": "r1", "role": "rr"}},
        {"name": "node-b", "addresses": ["10.0.0.12", "fd00:0:0:1::12"],
         "labels": {"rack": "r1"}},
        {"name": "node-c", "addresses": ["10.0.0.13", "fd00:0:0:1::13"],
         "labels": {"rack": "r2"}},
    ],
    "bgp": {"asNumber": 64512, "topology": "full-mesh"},
}


@dataclass
class StoreState:
    path: Path
    digest: str
    show: dict


def assert_store_unchanged(netplan: Netplan, state: StoreState) -> None:
    assert sha256(state.path) == state.digest, "the store file changed"
    assert netplan.show(state.path) == state.show, "`show -o json` changed"


def derive(change=None, spec: dict | None = None) -> dict:
    """A deep copy of BASE_SPEC (or spec), changed in place by change(copy)."""
    import copy

    out = copy.deepcopy(BASE_SPEC if spec is None else spec)
    if change is not None:
        change(out)
    return out
