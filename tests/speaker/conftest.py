"""Fixtures of the speaker tests.

BIRD (Debian's bird2) and ExaBGP are installed by the project (CI installs them): a missing
one fails the tests that need it with what to install, it never skips them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from speaker_harness import Bird, Processes, require  # noqa: E402


@pytest.fixture(scope="session")
def bird_bin() -> str:
    return require("bird", "apt-get install bird2")


@pytest.fixture(scope="session")
def birdc_bin() -> str:
    return require("birdc", "apt-get install bird2")


@pytest.fixture(scope="session")
def exabgp_bin() -> str:
    from bgp.speaker import SpeakerError, find_exabgp

    try:
        return find_exabgp()
    except SpeakerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def processes(tmp_path: Path, exabgp_bin: str) -> Iterator[Processes]:
    """The test's processes, all ended by PID at teardown (ExaBGP is needed by every
    speaker: exabgp_bin fails the test early when it is missing)."""
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def bird(processes: Processes, bird_bin: str, birdc_bin: str) -> Bird:
    return Bird(processes, "bird", bird_bin, birdc_bin)
