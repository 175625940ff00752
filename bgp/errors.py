"""Errors raised by BGP topology planning and rendering."""

from __future__ import annotations


def show_value(value: object) -> str:
    """A value as an error message shows it: strings quoted, label selectors as YAML maps."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, tuple) and all(
        isinstance(pair, tuple) and len(pair) == 2 for pair in value
    ):
        return "{" + ", ".join(f"{key}: {val}" for key, val in value) + "}"
    return str(value)


class TopologyError(ValueError):
    """Input that only topology planning can judge (a reflector name that is no node, ...).

    The planner maps it to exit 2 (malformed input). The message is one line naming the
    field and the value, e.g. `bgp.routeReflectors.names: 'node-x' is not a node of the spec`.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}: {show_value(value)} {reason}")
