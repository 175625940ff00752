"""The README's fresh-machine run command works, in a fresh virtual environment."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## On a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", section)


def test_readme_gives_a_run_command_and_the_ci_test_command():
    run, test = readme_commands()
    assert "netplan allocate" in run
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci


def test_the_run_command_works_in_a_fresh_venv(tmp_path):
    run, _ = readme_commands()
    work = tmp_path / "netplan"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.db", "*.egg-info", ".hypothesis", "build"))
    done = subprocess.run(["bash", "-c", run], cwd=work, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "10.244.0.0/24" in done.stdout
    rows = sqlite3.connect(work / "netplan.db").execute(
        "SELECT node, cidr FROM leases ORDER BY node").fetchall()
    assert rows == [("node-a", "10.244.0.0/24"), ("node-b", "10.244.1.0/24"),
                    ("node-c", "10.244.2.0/24")]
