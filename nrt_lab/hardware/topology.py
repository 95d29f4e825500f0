"""Device interconnect topologies: neighbour lists in ``neuron-ls`` order and grid coordinates.

Three shapes occur on Neuron instances (docs/behaviour.md §6):

* **4×4 torus** (trn1/trn1n/trn2 ``.32xlarge``/``.48xlarge``): devices laid out row-major on a 4×4 grid,
  neighbours listed ``[up, left, down, right]`` with wrap-around, e.g. ``0 → [12, 3, 4, 1]`` and
  ``5 → [1, 4, 9, 6]`` (the CONNECTED DEVICES column of every public trn1/trn2 ``neuron-ls`` output).
* **ring** (inf1.24xlarge, inf2.48xlarge): a closed cycle. Public inf2.48xlarge output lists
  ``[previous, next]`` (``0 → [11, 1]``, ``11 → [10, 0]``); inf1 lists ``[next, previous]`` (the documentation's
  inf1.6xlarge chain ``1 → [2, 0]``), so both orders are supported.
* **chain** (inf1.6xlarge, inf2.24xlarge): an open line; the end devices have one neighbour.

``classify`` recovers the shape from a neighbour table, so renderers need no extra catalogue field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = [
    "TopologyKind",
    "NeighbourOrder",
    "TORUS_ROWS",
    "TORUS_COLS",
    "grid_position",
    "torus_neighbours",
    "ring_neighbours",
    "chain_neighbours",
    "torus_table",
    "ring_table",
    "chain_table",
    "classify",
]

TopologyKind = Literal["single", "chain", "ring", "torus"]
NeighbourOrder = Literal["prev_next", "next_prev"]

TORUS_ROWS = 4
TORUS_COLS = 4


def grid_position(index: int, cols: int = TORUS_COLS) -> tuple[int, int]:
    """(row, column) of device ``index`` on a row-major grid ``cols`` wide."""
    if index < 0 or cols <= 0:
        raise ValueError(f"grid_position: index must be >= 0 and cols > 0, got index={index} cols={cols}")
    return divmod(index, cols)


def torus_neighbours(index: int, rows: int = TORUS_ROWS, cols: int = TORUS_COLS) -> tuple[int, int, int, int]:
    """Neighbours of ``index`` on a wrapped ``rows``×``cols`` torus, as ``(up, left, down, right)``."""
    if not 0 <= index < rows * cols:
        raise ValueError(f"torus_neighbours: index {index} outside a {rows}x{cols} torus")
    row, col = grid_position(index, cols)
    up = ((row - 1) % rows) * cols + col
    down = ((row + 1) % rows) * cols + col
    left = row * cols + (col - 1) % cols
    right = row * cols + (col + 1) % cols
    return (up, left, down, right)


def _ordered(prev: int | None, nxt: int | None, order: NeighbourOrder) -> tuple[int, ...]:
    pair = (prev, nxt) if order == "prev_next" else (nxt, prev)
    return tuple(n for n in pair if n is not None)


def ring_neighbours(index: int, count: int, order: NeighbourOrder = "prev_next") -> tuple[int, ...]:
    """Neighbours of ``index`` on a closed ring of ``count`` devices (one neighbour when count == 2)."""
    if not 0 <= index < count:
        raise ValueError(f"ring_neighbours: index {index} outside a ring of {count}")
    if count == 1:
        return ()
    if count == 2:
        return (1 - index,)
    return _ordered((index - 1) % count, (index + 1) % count, order)


def chain_neighbours(index: int, count: int, order: NeighbourOrder = "prev_next") -> tuple[int, ...]:
    """Neighbours of ``index`` on an open chain of ``count`` devices (ends have one neighbour)."""
    if not 0 <= index < count:
        raise ValueError(f"chain_neighbours: index {index} outside a chain of {count}")
    prev = index - 1 if index > 0 else None
    nxt = index + 1 if index < count - 1 else None
    return _ordered(prev, nxt, order)


def torus_table(rows: int = TORUS_ROWS, cols: int = TORUS_COLS) -> tuple[tuple[int, ...], ...]:
    """Neighbour lists of every device of a ``rows``×``cols`` torus."""
    return tuple(torus_neighbours(i, rows, cols) for i in range(rows * cols))


def ring_table(count: int, order: NeighbourOrder = "prev_next") -> tuple[tuple[int, ...], ...]:
    """Neighbour lists of every device of a ring of ``count`` devices."""
    return tuple(ring_neighbours(i, count, order) for i in range(count))


def chain_table(count: int, order: NeighbourOrder = "prev_next") -> tuple[tuple[int, ...], ...]:
    """Neighbour lists of every device of a chain of ``count`` devices."""
    return tuple(chain_neighbours(i, count, order) for i in range(count))


def _same_sets(table: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> bool:
    return len(table) == len(reference) and all(
        sorted(a) == sorted(b) for a, b in zip(table, reference, strict=True)
    )


def classify(table: Sequence[Sequence[int]]) -> TopologyKind:
    """Shape of a neighbour table: ``single``, ``chain``, ``ring`` or ``torus`` (ValueError otherwise)."""
    count = len(table)
    if count == 0:
        raise ValueError("classify: an instance has at least one device")
    if count == 1:
        if table[0]:
            raise ValueError("classify: a single device cannot have neighbours")
        return "single"
    if count == TORUS_ROWS * TORUS_COLS and _same_sets(table, torus_table()):
        return "torus"
    if count > 2 and _same_sets(table, ring_table(count)):
        return "ring"
    if _same_sets(table, chain_table(count)):
        return "chain"
    raise ValueError(
        f"classify: neighbour table of {count} devices is neither a chain, a ring nor a 4x4 torus"
    )
