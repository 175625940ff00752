"""Fixtures of the interop tests: netplan as a real process (tests/cli's helpers), and the
outside tools some tests need.

Graphviz (`dot`, Debian's graphviz), CairoSVG (PyPI, the test extra) with the cairo library
(Debian's libcairo2) and kubernetes-validate (PyPI, the test extra) are installed by the
project: a missing one fails the tests that need it with the command to install it, it
never skips them.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from cli_support import Netplan  # noqa: E402 - needs the path above


@pytest.fixture
def netplan(tmp_path: Path) -> Netplan:
    return Netplan(tmp_path)


@pytest.fixture(scope="session")
def dot() -> str:
    found = shutil.which("dot")
    if found is None:
        pytest.fail("Graphviz's dot is not installed: apt-get install graphviz")
    return found


@pytest.fixture(scope="session")
def cairosvg():
    try:
        import cairosvg
    except (ImportError, OSError) as exc:
        pytest.fail(f"CairoSVG cannot be imported ({exc}): pip install cairosvg, and "
                    "apt-get install libcairo2")
    return cairosvg


@pytest.fixture(scope="session")
def kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: pip install -e '.[test]'")
    return kubernetes_validate
