"""A picture of the address space: each pool as a grid of its node CIDRs, in SVG.

Pure Python and pure: the plan and the store's release history in, SVG text out. A cell
is a node CIDR, coloured by its state: allocated, reserved, free, or released-cooling (a
CIDR in the release history that no node holds again: netplan reuses it last, as routes to
it may linger). Cells run in address order, left to right then down, so that every row is
an aligned block, named at its left. A pool of more than MAX_CELLS node CIDRs is drawn
with one cell per aligned block of several, in the colour most of them have. Every cell or
run of cells carries a hover title (node, CIDR, counts).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from ipam.allocation import Released
from ipam.net import Cidr
from ipam.pool import Pool
from planner.plan import Plan

FREE, ALLOCATED, COOLING, RESERVED = range(4)
STATE_NAMES = {FREE: "free", ALLOCATED: "allocated", COOLING: "released (cooling)",
               RESERVED: "reserved"}
COLORS = {FREE: "#e4e4e4", ALLOCATED: "#3b6ea8", COOLING: "#e8862a", RESERVED: "#7f7f7f"}
# When a block of cells is mixed, the state it shows on ties: the rarer, more telling one.
TIE_ORDER = (COOLING, ALLOCATED, RESERVED, FREE)
LEGEND_ORDER = (ALLOCATED, RESERVED, FREE, COOLING)  # legend, summaries and hover titles

MAX_CELLS = 16384  # 128 x 128: past this, a cell stands for an aligned block of CIDRs
GRID_WIDTH = 1024  # pixels the widest grid aims for
CELL_MIN, CELL_MAX = 6, 28
GAP = 1  # pixels between cells
LABEL_PITCH = 14  # at least this many pixels between two row labels
CHAR_WIDTH = 7.3  # of the 12px monospace labels, for the label column's width
MARGIN = 16


@dataclass(frozen=True, slots=True)
class PoolPicture:
    pool: Pool
    states: bytes  # one state per node CIDR, in address order
    owners: dict[int, str]  # node CIDR index -> the node holding it


def pool_pictures(plan: Plan, history: Iterable[Released]) -> list[PoolPicture]:
    """The state of every node CIDR of every pool once the plan is applied.

    history: the store's release history of the cluster; the plan adds its own releases.
    """
    released = [*history, *plan.allocation.released]
    pictures = []
    for usage in plan.usage:
        pool = usage.pool
        states = bytearray(pool.slots)
        for entry in released:
            slot = pool.slot_of(entry.cidr) if entry.pool == pool.name else None
            if slot is not None:
                states[slot] = COOLING
        shift = pool.cidr.bits - pool.node_mask
        for r in plan.record.reserved:
            if r.overlaps(pool.cidr):
                a = (max(r.first, pool.cidr.first) - pool.cidr.first) >> shift
                b = ((min(r.last, pool.cidr.last) - pool.cidr.first) >> shift) + 1
                states[a:b] = bytes([RESERVED]) * (b - a)
        owners = {}
        for lease in plan.allocation.leases:
            slot = pool.slot_of(lease.cidr) if lease.pool == pool.name else None
            if slot is not None:
                states[slot] = ALLOCATED
                owners[slot] = lease.node
        pictures.append(PoolPicture(pool, bytes(states), owners))
    return pictures


# --- layout --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cell:
    state: int
    pure: bool  # every node CIDR of the cell has its state
    counts: tuple[int, int, int, int]  # by state


def _cells(picture: PoolPicture, per: int) -> list[_Cell]:
    states = picture.states
    if per == 1:
        return [_Cell(s, True, tuple(int(s == k) for k in range(4))) for s in states]
    cells = []
    for start in range(0, len(states), per):
        chunk = states[start:start + per]
        counts = tuple(chunk.count(bytes([k])) for k in range(4))
        state = max(TIE_ORDER, key=lambda k: (counts[k], -TIE_ORDER.index(k)))
        cells.append(_Cell(state, counts[state] == per, counts))
    return cells


def _grid_shape(cells: int) -> tuple[int, int]:
    """(columns, cell size in pixels): a square-ish grid whose rows are aligned blocks."""
    columns = 1 << math.ceil(math.log2(math.sqrt(cells))) if cells > 1 else 1
    size = max(CELL_MIN, min(CELL_MAX, GRID_WIDTH // columns))
    return columns, size


def _block(pool: Pool, first_slot: int, slots: int) -> Cidr:
    """The aligned block of `slots` node CIDRs (a power of two) starting at first_slot."""
    prefixlen = pool.node_mask - (slots.bit_length() - 1)
    return Cidr(pool.cidr.version, pool.cidr_at(first_slot).value, prefixlen)


def _summary(picture: PoolPicture) -> str:
    counts = [picture.states.count(bytes([k])) for k in range(4)]
    parts = [f"{counts[k]:,} {STATE_NAMES[k]}" for k in LEGEND_ORDER]
    return (f"{len(picture.states):,} node CIDRs of /{picture.pool.node_mask}: "
            + " · ".join(parts))


class _Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def text(self, x: float, y: float, content: str, size: int = 12, **attrs: str) -> None:
        extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
        self.parts.append(f'<text x="{x:g}" y="{y:g}" font-size="{size}"{extra}>'
                          f"{escape(content)}</text>")

    def rect(self, x: float, y: float, w: float, h: float, fill: str, title: str = "") -> None:
        tip = f"<title>{escape(title)}</title>" if title else ""
        self.parts.append(f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" '
                          f'fill="{fill}">{tip}</rect>')


def _title(picture: PoolPicture, first: int, count: int, per: int, state: int,
           counts: list[int]) -> str:
    """The hover title of a run of `count` cells starting at cell `first`."""
    pool = picture.pool
    if per == 1 and count == 1 and state == ALLOCATED:
        return f"{pool.cidr_at(first)} {picture.owners.get(first, '')}"
    where = str(_block(pool, first * per, per))
    if count > 1:
        where += f" … {_block(pool, (first + count - 1) * per, per)}"
    found = ", ".join(f"{counts[k]:,} {STATE_NAMES[k]}" for k in LEGEND_ORDER if counts[k])
    return f"{where}: {found}"


def _per_cell(slots: int) -> int:
    """How many node CIDRs one cell stands for: 1, or the power of two that fits MAX_CELLS."""
    per = 1
    while slots // per > MAX_CELLS:
        per *= 2
    return per


def _draw_pool(svg: _Svg, picture: PoolPicture, top: float,
               label_width: float) -> tuple[float, float]:
    """Draw one pool's header and grid from y = top; return (bottom, right) edges."""
    pool = picture.pool
    per = _per_cell(len(picture.states))
    cells = _cells(picture, per)
    columns, size = _grid_shape(len(cells))
    svg.text(MARGIN, top + 14, f"{pool.name}  {pool.cidr}", 14, font_weight="bold")
    note = _summary(picture)
    if per > 1:
        note += f" — a cell is {per:,} of them (a /{pool.node_mask - per.bit_length() + 1})"
    svg.text(MARGIN, top + 32, note)
    grid_top = top + 44
    pitch = 1 << math.ceil(math.log2(max(1, math.ceil(LABEL_PITCH / size))))
    x0 = MARGIN + label_width
    rows = math.ceil(len(cells) / columns)
    for row in range(rows):
        y = grid_top + row * size
        first = row * columns
        if row % pitch == 0:
            # the label names the block of all the rows up to the next label
            block = _block(pool, first * per, min(pitch * columns, len(cells) - first) * per)
            svg.text(x0 - 6, y + min(size, 12) - 1, str(block), 11, text_anchor="end",
                     font_family="monospace", fill="#444")
        col = 0
        while col < columns and first + col < len(cells):
            cell = cells[first + col]
            run = 1
            # Runs of whole cells of one state share a rect; allocated CIDRs stay apart
            # (each names its node).
            mergeable = cell.pure and not (per == 1 and cell.state == ALLOCATED)
            while (mergeable and col + run < columns and first + col + run < len(cells)
                   and cells[first + col + run].state == cell.state
                   and cells[first + col + run].pure):
                run += 1
            counts = [sum(cells[first + col + i].counts[k] for i in range(run)) for k in range(4)]
            svg.rect(x0 + col * size, y, run * size - GAP, size - GAP, COLORS[cell.state],
                     _title(picture, first + col, run, per, cell.state, counts))
            col += run
    right = max(x0 + columns * size, MARGIN + len(note) * 6.2) + MARGIN
    return grid_top + rows * size + 24, right


def render_svg(cluster: str, pictures: list[PoolPicture]) -> str:
    """The whole picture: a legend, then each pool's grid."""
    label_width = max(len(str(p.pool.cidr)) + 4 for p in pictures) * CHAR_WIDTH + 8
    svg = _Svg()
    svg.text(MARGIN, MARGIN + 14, f"cluster {cluster}: pod address space", 18,
             font_weight="bold")
    x = MARGIN
    legend_y = MARGIN + 30
    for state in LEGEND_ORDER:
        svg.rect(x, legend_y, 12, 12, COLORS[state], STATE_NAMES[state])
        svg.text(x + 16, legend_y + 10, STATE_NAMES[state])
        x += 16 + len(STATE_NAMES[state]) * CHAR_WIDTH + 18
    note = ("released (cooling): freed, and handed out again only once no never-used CIDR is "
            "left (old routes to it may linger)")
    svg.text(MARGIN, legend_y + 30, note, 11, fill="#444")
    y = legend_y + 48
    width = max(x, MARGIN + len(note) * 6.0) + MARGIN
    for picture in pictures:
        y, right = _draw_pool(svg, picture, y, label_width)
        width = max(width, right)
    height = y
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif">'
            f"<title>{escape(f'netplan map of cluster {cluster}')}</title>"
            f'<rect width="100%" height="100%" fill="#ffffff"/>')
    return head + "\n".join(svg.parts) + "\n</svg>\n"
