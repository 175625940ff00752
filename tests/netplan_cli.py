"""Run the installed `netplan` console script as a real process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def netplan_path() -> str:
    beside = Path(sys.executable).parent / "netplan"
    if beside.exists():
        return str(beside)
    found = shutil.which("netplan")
    if found is None:
        raise RuntimeError("the netplan console script is not installed: pip install -e .")
    return found


def netplan(*args: str, env: dict | None = None, check: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([netplan_path(), *args], capture_output=True, text=True, env=env,
                          check=check, timeout=timeout)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([netplan_path(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
