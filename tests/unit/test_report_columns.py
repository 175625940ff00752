"""The report tables: plain aligned columns, written as text whatever the cells hold."""

import io

from rich.console import Console

from planner.report import columns


def test_columns_align_every_row_under_its_header_and_take_cells_literally():
    out = io.StringIO()
    columns(Console(file=out, width=40), ("node", "pod CIDRs", "why"),
            [("node-a", "10.244.0.0/24", "[bold]x[/bold]"), ("b", "fd00::/64", "")])
    assert out.getvalue().splitlines() == [
        " node    pod CIDRs      why",
        " node-a  10.244.0.0/24  [bold]x[/bold]",  # no markup, no wrap at 40 columns
        " b       fd00::/64",
    ]
