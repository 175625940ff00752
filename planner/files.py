"""Files of the CLI: specs it reads (bounded), files it writes for the user (whole or not at
all, readable by the owner only)."""

from __future__ import annotations

import os
import sys
import tempfile

from ipam.errors import InvalidInput

# The largest spec read: the biggest in the tests, 65,536 nodes (the bench's 10.0.0.0/8 of
# /24s), is 3.9 MiB as YAML. Without a bound, `-f /dev/zero` (or any wrong file) is read
# until memory runs out.
SPEC_LIMIT = 16 << 20


def read_spec(path: str, limit: int = SPEC_LIMIT) -> bytes:
    """The bytes of a spec file; `-`: standard input. InvalidInput past limit bytes."""
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                raw = f.read(limit + 1)
    except OSError as exc:
        raise InvalidInput("spec", path, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise InvalidInput("spec", path, f"is larger than {limit >> 20} MiB")
    return raw


def write_private(path: str, text: str) -> None:
    """Write text to path atomically with mode 0600 (configurations may hold passwords)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".netplan-")  # mode 0600
    except OSError as exc:
        raise InvalidInput("--out", path, f"cannot be written: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise InvalidInput("--out", path, f"cannot be written: {exc.strerror}") from None
