"""Owner colours: one fixed qualitative palette, assigned in order of arrival, the same in every widget of a kernel.

A hash of pid and start time (what the widgets used before) gives colours that collide (three owners all green):
here the first owner seen gets the palette's first colour, the next one the first colour no live owner holds, and
so on, so up to ``len(OWNER_PALETTE)`` owners alive at once always get distinct colours. Every widget of a kernel
asks the same :data:`PALETTE`, so an owner has one colour in the grid, the legend, the tabs and the charts. Each
colour carries black or white text, whichever has the higher WCAG contrast (≥ 4.5:1 for every colour here), and
every colour was checked on JupyterLab's Light and Dark backgrounds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = [
    "HEAT_HIGH",
    "HEAT_IDLE",
    "HEAT_LOW",
    "OWNER_PALETTE",
    "OwnerPalette",
    "PALETTE",
    "contrast_ratio",
    "heat_color",
    "heat_colorscale",
    "relative_luminance",
    "text_color",
]

# Tableau 10 (grey left out: grey means "free") and six darker/lighter hues; CIE76 ΔE ≥ 20 between any two.
OWNER_PALETTE: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
    "#1b5e20", "#0d47a1", "#880e4f", "#6a3d9a", "#a6cee3", "#b2df8a",
)


# Utilization fill, light to dark green: the live widgets (HEAT_LOW/HEAT_HIGH in static/common.js, checked equal
# by tests/test_widgets.py) and the static figures of nrt_lab.plot use the same scale. Idle (< 0.5 %) is neutral.
HEAT_LOW: tuple[int, int, int] = (200, 230, 201)
HEAT_HIGH: tuple[int, int, int] = (27, 94, 32)
HEAT_IDLE = "#eeeeee"  # the live widgets take their theme's neutral cell colour instead


def heat_color(utilization: float) -> str:
    """``#rrggbb`` of ``utilization`` percent on the light-to-dark green scale (clamped to 0-100)."""
    level = max(0.0, min(1.0, (float(utilization) if utilization == utilization else 0.0) / 100.0))
    return "#" + "".join(f"{round(low + level * (high - low)):02x}" for low, high in zip(HEAT_LOW, HEAT_HIGH, strict=True))


def heat_colorscale(idle: str = HEAT_IDLE) -> list[list[float | str]]:
    """A plotly colorscale for 0-100 %: ``idle`` below 0.5 %, then the green scale (what the live grid shows)."""
    return [[0.0, idle], [0.004, idle], [0.005, heat_color(0.5)], [1.0, heat_color(100.0)]]


def relative_luminance(color: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb`` (0 black … 1 white)."""
    try:
        channels = [int(color[i : i + 2], 16) / 255.0 for i in (1, 3, 5)]
    except (ValueError, IndexError, TypeError):
        raise ValueError(f"colour {color!r} is invalid; accepted: '#rrggbb'") from None
    if len(color) != 7 or color[0] != "#":
        raise ValueError(f"colour {color!r} is invalid; accepted: '#rrggbb'")
    red, green, blue = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(first: str, second: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 … 21)."""
    a, b = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def text_color(background: str) -> str:
    """``#000000`` or ``#ffffff``, whichever contrasts more with ``background`` (the same rule as common.js)."""
    try:
        luminance = relative_luminance(background)
    except ValueError:
        return "#000000"
    return "#000000" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#ffffff"


class OwnerPalette:
    """Colours of owner processes, keyed by (pid, start time), given in order of arrival and reused when freed."""

    def __init__(self, colors: tuple[str, ...] = OWNER_PALETTE) -> None:
        if not colors:
            raise ValueError("an owner palette needs at least one colour")
        self.colors = colors
        self._index: dict[tuple[int, float], int] = {}
        self._lock = threading.Lock()

    def color(self, pid: int, start_time: float) -> str:
        """The colour of one owner (assigned now if it is new)."""
        with self._lock:
            return self.colors[self._assign((int(pid), round(float(start_time), 6)))]

    def assign(self, owners: Iterable[tuple[int, float]]) -> dict[int, str]:
        """Colours of every live owner (pid, start time), oldest first; owners not listed free their colour."""
        keys = sorted({(int(pid), round(float(start), 6)) for pid, start in owners}, key=lambda k: (k[1], k[0]))
        with self._lock:
            live = set(keys)
            for key in [k for k in self._index if k not in live]:
                del self._index[key]
            return {key[0]: self.colors[self._assign(key)] for key in keys}

    def reset(self) -> None:
        """Forget every assignment (the next owner gets the first colour again)."""
        with self._lock:
            self._index.clear()

    def _assign(self, key: tuple[int, float]) -> int:
        index = self._index.get(key)
        if index is None:
            held = set(self._index.values())
            free = [i for i in range(len(self.colors)) if i not in held]
            # More live owners than colours: cycle in order of arrival (documented limit).
            index = free[0] if free else len(self._index) % len(self.colors)
            self._index[key] = index
        return index


PALETTE = OwnerPalette()
