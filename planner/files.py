"""Files the CLI writes for the user: whole or not at all, readable by the owner only."""

from __future__ import annotations

import os
import tempfile

from ipam.errors import InvalidInput


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
