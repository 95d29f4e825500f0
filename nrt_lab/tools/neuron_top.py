"""``neuron-top``: a terminal UI over the live runtimes of the emulated machine (SPEC §7.2).

The screen (it fits 80×24) holds a title bar (version, instance id, instance type), four sections for the
selected tab -- ``NeuronCore <vers> Utilization``, ``VCPU Utilization``, ``Memory Usage Summary`` and
``Memory Usage Details`` (a tree: runtime → NeuronCore → model) -- and, at the bottom, the tab bar: ``all``
(every runtime aggregated) then one tab per runtime, labelled with its process tag; the active tab is green
and marked ``>…<``. Keys: ``1``-``9`` select a tab, ``a``/``d`` the previous/next one, ``F`` toggles % and
TFLOPS, the arrow keys move in (and fold) the tree, ``x`` expands/collapses the whole tree, ``q`` quits.

Sampling is decoupled from drawing: a timer starts a background thread that takes one :class:`Monitor` sample
every ``--period`` seconds and posts it to the app; widgets only re-render from that cached snapshot (on a new
sample, a key or a resize). ``--once`` prints the same sections as plain text (at most 80 columns, no escape
codes) from two samples ``--period`` apart, so that utilization is a real rate. Values that could not be
measured print as ``N/A``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from nrt_lab.driver import StateError, open_machine
from nrt_lab.driver.locks import open_devices
from nrt_lab.driver.owners import process_command_line
from nrt_lab.monitor import NA, MachineSnapshot, Monitor, NotApplicable, RuntimeSnapshot, get_view
from nrt_lab.runtime import RUNTIME_VERSION

__all__ = [
    "ALL_TAB",
    "WIDTH",
    "CoreCell",
    "MemoryNode",
    "NeuronTopApp",
    "SnapshotReady",
    "Tab",
    "build_parser",
    "core_cells",
    "format_bytes",
    "main",
    "memory_nodes",
    "once_output",
    "render_once",
    "tabs_of",
]

ALL_TAB = "all"
WIDTH = 80  # columns of the --once output and of the layout the TUI is designed for

HOST_ROWS = (("Tensors", "tensors"), ("Constants", "constants"), ("DMA Buffers", "dma_buffers"),
             ("App. Memory", "application_memory"))
DEVICE_ROWS = (("Tensors", "tensors"), ("Constants", "constants"), ("Model Code", "model_code"),
               ("Runtime Memory", "runtime_memory"), ("Model Scratchpad", "model_shared_scratchpad"))

# Memory Usage Details columns: the name column, then Host Memory and Device Memory, right-aligned.
_NAME_W, _HOST_W, _DEVICE_W = 49, 14, 15

# Rows of the TUI that are not the NeuronCore grid nor the tree: title, grid header, VCPU (3), memory
# summary (8), details header (2), tab bar.
_FIXED_ROWS = 16
_MIN_TREE_ROWS = 3

_BLOCKS = " ▁▂▃▄▅▆▇█"


# ---------------------------------------------------------------------------------------------- view model


@dataclass(frozen=True)
class Tab:
    """One entry of the tab bar: ``all`` (``runtime`` None) or one runtime."""

    key: str
    label: str
    runtime: RuntimeSnapshot | None


@dataclass(frozen=True)
class CoreCell:
    """One NeuronCore of the selected tab: its id in the tab's view, utilization (percent) and FLOPS."""

    core: int
    utilization: float | NotApplicable
    flops_per_s: float | NotApplicable


@dataclass
class MemoryNode:
    """A row of the Memory Usage Details tree; ``None`` means the column does not apply to this row."""

    key: str
    label: str
    host: int | NotApplicable | None
    device: int | NotApplicable | None
    children: list[MemoryNode] = field(default_factory=list)


def _runtime_key(runtime: RuntimeSnapshot) -> str:
    return f"{runtime.pid}@{runtime.start_time:.6f}"


def tabs_of(snapshot: MachineSnapshot | None) -> list[Tab]:
    """``all`` then one tab per live runtime (oldest first), labelled with the runtime's process tag."""
    tabs = [Tab(ALL_TAB, ALL_TAB, None)]
    if snapshot is not None:
        for rt in sorted(snapshot.runtimes, key=lambda r: (r.start_time, r.pid)):
            tabs.append(Tab(_runtime_key(rt), rt.tag or str(rt.pid), rt))
    return tabs


def _selected(snapshot: MachineSnapshot, tab: Tab) -> tuple[RuntimeSnapshot, ...]:
    return snapshot.runtimes if tab.runtime is None else (tab.runtime,)


def core_cells(snapshot: MachineSnapshot, runtime: RuntimeSnapshot | None = None) -> tuple[str, list[CoreCell]]:
    """NeuronCore version and one cell per core: a runtime's own cores, or (``all``) every core of the machine.

    In ``all``, a runtime running with another logical-core size is mapped onto the machine's cores through
    their physical cores (utilization averaged, FLOPS summed); cores nobody owns are idle (0 %).
    """
    instance = snapshot.instance
    if runtime is not None:
        version = get_view(instance, runtime.lnc).neuroncore_version
        return version, [CoreCell(c.core, c.utilization, c.flops_per_s) for c in runtime.cores]
    lnc = instance.lnc
    busy = [0.0] * instance.total_cores
    flops = [0.0] * instance.total_cores
    for rt in snapshot.runtimes:
        for c in rt.cores:
            for physical in range(c.core * rt.lnc, (c.core + 1) * rt.lnc):
                core = physical // lnc
                if 0 <= core < instance.total_cores:
                    busy[core] += c.utilization / lnc
                    flops[core] += c.flops_per_s / rt.lnc
    cells = [CoreCell(i, min(100.0, busy[i]), flops[i]) for i in range(instance.total_cores)]
    return instance.neuroncore_version, cells


def _sum_or_na(values: Iterable[float | NotApplicable]) -> float | NotApplicable:
    numbers = [v for v in values if not isinstance(v, NotApplicable)]
    return sum(numbers) if numbers else NA


def _host_totals(runtimes: Sequence[RuntimeSnapshot]) -> dict[str, int]:
    totals = {key: 0 for _, key in HOST_ROWS}
    for rt in runtimes:
        for key, value in rt.host_memory.items():
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def _device_totals(runtimes: Sequence[RuntimeSnapshot]) -> dict[str, int]:
    totals = {key: 0 for _, key in DEVICE_ROWS}
    for rt in runtimes:
        for core in rt.cores:
            for key, value in core.memory.items():
                totals[key] = totals.get(key, 0) + int(value)
    return totals



def _kinds(*memories: Mapping[str, int]) -> list[tuple[str, str]]:
    """(display name, key) of the device categories in ``memories``: SPEC order first, then unknown keys."""
    known = [(name, key) for name, key in DEVICE_ROWS if any(key in m for m in memories)]
    extra = sorted({k for m in memories for k in m} - {key for _, key in DEVICE_ROWS})
    return known + [(k, k) for k in extra]


def memory_nodes(snapshot: MachineSnapshot, runtime: RuntimeSnapshot | None = None) -> list[MemoryNode]:
    """The Memory Usage Details tree: runtime → NeuronCore → model → category, plus the runtime's ``Host``
    categories; each parent is the sum of its children (host memory is accounted per runtime, so cores and
    models have no host column)."""
    nodes: list[MemoryNode] = []
    runtimes = sorted(snapshot.runtimes, key=lambda r: (r.start_time, r.pid)) if runtime is None else [runtime]
    for rt in runtimes:
        key = _runtime_key(rt)
        name = f"{rt.tag} (pid {rt.pid})" if rt.tag != str(rt.pid) else f"pid {rt.pid}"
        unreadable = bool(rt.error) and not rt.cores
        node = MemoryNode(key, f"Runtime {name}", NA if unreadable else rt.host_memory_total,
                          NA if unreadable else rt.device_memory_total)
        for core in rt.cores:
            core_key = f"{key}/nc{core.core}"
            core_node = MemoryNode(core_key, f"NeuronCore {core.core}", None, sum(core.memory.values()))
            attributed: dict[str, int] = {}
            for model in sorted((m for m in rt.models if m.core == core.core), key=lambda m: m.model_id):
                model_node = MemoryNode(f"{core_key}/m{model.model_id}", f"{model.model_id} {model.name}", None,
                                        sum(model.memory.values()))
                for label, kind in _kinds(model.memory):
                    value = int(model.memory[kind])
                    attributed[kind] = attributed.get(kind, 0) + value
                    if value:
                        model_node.children.append(MemoryNode(f"{model_node.key}/{kind}", label, None, value))
                core_node.children.append(model_node)
            for label, kind in _kinds(core.memory, core.memory_peak):
                # A category stays listed once it was used (peak), so that rows do not flicker as
                # execution tensors come and go.
                rest = int(core.memory.get(kind, 0)) - attributed.get(kind, 0)
                if rest > 0 or int(core.memory_peak.get(kind, 0)) > attributed.get(kind, 0):
                    core_node.children.append(MemoryNode(f"{core_key}/{kind}", label, None, max(0, rest)))
            node.children.append(core_node)
        if not unreadable:
            host = MemoryNode(f"{key}/host", "Host", rt.host_memory_total, None)
            for label, kind in HOST_ROWS:
                host.children.append(MemoryNode(f"{host.key}/{kind}", label, int(rt.host_memory.get(kind, 0)), None))
            node.children.append(host)
        nodes.append(node)
    return nodes


# ---------------------------------------------------------------------------------------------- formatting


def format_bytes(value: int | float | NotApplicable | None) -> str:
    """Human-readable bytes as neuron-top shows them (``96.0MB``); ``N/A`` when unknown, blank when None."""
    if value is None:
        return ""
    if isinstance(value, NotApplicable):
        return "N/A"
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(amount) < 1024 or unit == "GB":
            return f"{int(amount)}{unit}" if unit == "B" else f"{amount:.1f}{unit}"
        amount /= 1024
    return f"{amount:.1f}TB"  # pragma: no cover - the loop returns at GB


def _pct(value: float | NotApplicable) -> str:
    return "N/A" if isinstance(value, NotApplicable) else f"{value:.2f}%"


def _flops(value: float | NotApplicable, width: int) -> str:
    """FLOPS with an SI prefix (``412.3G``) in at most ``width`` characters (the unit letter included)."""
    if isinstance(value, NotApplicable):
        return "N/A"
    amount = max(0.0, float(value))
    for prefix in ("", "K", "M", "G", "T", "P"):
        if amount < 999.5 or prefix == "P":
            break
        amount /= 1000
    digits = width - len(prefix)
    decimals = digits - (1 if amount < 9.995 else 2 if amount < 99.95 else 3) - 1
    return f"{amount:.{max(0, decimals)}f}{prefix}"


def _level_style(percent: float | NotApplicable) -> str:
    if isinstance(percent, NotApplicable) or percent < 0.5:
        return "dim"
    if percent < 50:
        return "green"
    return "yellow" if percent < 80 else "red"


def _bar(fraction: float, width: int, style: str) -> Text:
    filled = max(0, min(width, round(fraction * width)))
    if fraction > 0 and filled == 0:
        filled = 1
    text = Text("[")
    text.append("|" * filled, style=style)
    text.append(" " * (width - filled) + "]")
    return text


def _rule(title: str, width: int, right: str = "") -> Text:
    text = Text("─ ")
    text.append(title, style="bold cyan")
    tail = f" {right} ─" if right else ""
    text.append(" " + "─" * max(0, width - len(title) - 3 - len(tail)))
    if right:
        text.append(" ")
        text.append(right, style="bold")
        text.append(" ─")
    return text


def title_text(snapshot: MachineSnapshot | None, width: int = WIDTH, note: str = "") -> Text:
    """The title bar: application version, EC2 instance id and instance type."""
    text = Text(" neuron-top", style="bold")
    text.append(f" {RUNTIME_VERSION}")
    if snapshot is not None:
        text.append("  │  ")
        text.append(snapshot.instance_id, style="bold")
        text.append("  │  ")
        text.append(snapshot.instance.name, style="bold")
    if note:
        text.append("  " + note, style="bold red")
    text.truncate(width)
    return text


def _grid_layout(count: int, max_rows: int | None) -> tuple[int, str]:
    """(cores per row, cell kind): full bars if they fit in ``max_rows``, else value cells, else blocks."""
    for per_row, kind in ((4, "bar"), (12, "value"), (32, "block")):
        if max_rows is None or math.ceil(count / per_row) <= max_rows:
            return per_row, kind
    return 32, "block"


def nc_header_text(version: str, cells: Sequence[CoreCell], flops: bool, width: int = WIDTH) -> Text:
    """The section rule ``NeuronCore <vers> Utilization`` with the tab's total on the right."""
    if flops:
        total = _sum_or_na(c.flops_per_s for c in cells)
        right = "Total " + ("N/A" if isinstance(total, NotApplicable) else f"{total / 1e12:.6f} TFLOPS")
    else:
        values = [c.utilization for c in cells if not isinstance(c.utilization, NotApplicable)]
        right = "Total " + (f"{sum(values) / len(values):.2f}%" if values else "N/A")
    return _rule(f"NeuronCore {version} Utilization", width, right)


def nc_grid_text(cells: Sequence[CoreCell], flops: bool, max_rows: int | None = None) -> Text:
    """One cell per NeuronCore: ``nc0 [|||  ] 45.00%`` four a row, or denser grids when ``max_rows`` is tight
    (value cells twelve a row, then one block character per core, 32 a row). With ``flops`` the cells show
    FLOPS with an SI prefix (``438MF``) and the bars are relative to the busiest core."""
    if not cells:
        return Text(" no NeuronCore in use", style="dim")
    peak = max((float(c.flops_per_s) for c in cells if not isinstance(c.flops_per_s, NotApplicable)), default=0.0)

    def fraction(cell: CoreCell) -> float:
        if flops:
            return 0.0 if isinstance(cell.flops_per_s, NotApplicable) or peak <= 0 else cell.flops_per_s / peak
        return 0.0 if isinstance(cell.utilization, NotApplicable) else cell.utilization / 100.0

    per_row, kind = _grid_layout(len(cells), max_rows)
    text = Text()
    for start in range(0, len(cells), per_row):
        row = cells[start:start + per_row]
        if start:
            text.append("\n")
        if kind == "bar":
            for i, cell in enumerate(row):
                style = _level_style(100 * fraction(cell))
                value = (_flops(cell.flops_per_s, 5) + "F") if flops else _pct(cell.utilization)
                text.append((" " if i else "") + f"nc{cell.core:<3}")
                text.append_text(_bar(fraction(cell), 5, style))
                text.append(f"{value:>7}", style=style)
            continue
        text.append(f"nc{row[0].core}-{row[-1].core}".ljust(10), style="bold")
        for cell in row:
            style = _level_style(100 * fraction(cell))
            if kind == "value":
                value = _flops(cell.flops_per_s, 4) if flops else (
                    "N/A" if isinstance(cell.utilization, NotApplicable) else f"{cell.utilization:3.0f}%")
                text.append(f"{value:>4} ", style=style)
            else:
                level = round(fraction(cell) * (len(_BLOCKS) - 1))
                char = _BLOCKS[level] if level or fraction(cell) <= 0 else _BLOCKS[1]
                text.append(("·" if char == " " else char) + " ", style=style)
    return text


def vcpu_text(snapshot: MachineSnapshot, runtimes: Sequence[RuntimeSnapshot], width: int = WIDTH) -> Text:
    """``VCPU Utilization``: System and Runtime vCPU usage, each user% and system%."""
    usage = snapshot.system.average_usage
    system_user: float | NotApplicable = usage.get("user", NA)
    system_sys: float | NotApplicable = usage.get("system", NA)
    rows = (
        ("System vCPU usage", system_user, system_sys),
        ("Runtime vCPU usage", _sum_or_na(r.vcpu_user for r in runtimes) if runtimes else 0.0,
         _sum_or_na(r.vcpu_system for r in runtimes) if runtimes else 0.0),
    )
    text = _rule("VCPU Utilization", width)
    for name, user, system in rows:
        total = sum(v for v in (user, system) if not isinstance(v, NotApplicable))
        text.append(f"\n {name:<19}")
        text.append_text(_bar(min(1.0, total / 100.0), 16, _level_style(total)))
        text.append(f" {_pct(user):>7} user {_pct(system):>7} system")
    return text


def memory_summary_text(runtimes: Sequence[RuntimeSnapshot], width: int = WIDTH) -> Text:
    """``Memory Usage Summary``: host and device memory used by the tab's runtimes, by category."""
    host, device = _host_totals(runtimes), _device_totals(runtimes)
    left = [("Total", sum(host.values()))] + [(name, host.get(key, 0)) for name, key in HOST_ROWS]
    right = [("Total", sum(device.values()))] + [(name, device.get(key, 0)) for name, key in DEVICE_ROWS]
    half = width // 2
    text = _rule("Memory Usage Summary", width)
    text.append("\n")
    text.append(" Host Used Memory".ljust(half), style="bold")
    text.append(" Device Used Memory", style="bold")
    for i in range(max(len(left), len(right))):
        text.append("\n")
        cell = f"   {left[i][0]:<18}{format_bytes(left[i][1]):>10}" if i < len(left) else ""
        text.append(cell.ljust(half))
        if i < len(right):
            text.append(f"   {right[i][0]:<18}{format_bytes(right[i][1]):>10}")
    return text


def details_header_text(width: int = WIDTH) -> Text:
    """The ``Memory Usage Details`` rule and its column titles."""
    text = _rule("Memory Usage Details", width)
    text.append("\n")
    text.append(f" {'Model ID':<{_NAME_W}}{'Host Memory':>{_HOST_W}}{'Device Memory':>{_DEVICE_W}}", style="bold")
    return text


def _node_row(node: MemoryNode, name_width: int) -> Text:
    label = node.label if len(node.label) <= name_width else node.label[:max(0, name_width - 1)] + "…"
    text = Text(label.ljust(name_width))
    text.append(f"{format_bytes(node.host):>{_HOST_W}}{format_bytes(node.device):>{_DEVICE_W}}")
    return text


def details_tree_text(nodes: Sequence[MemoryNode]) -> Text:
    """The whole tree, expanded, two spaces of indentation per level (the --once form of the tree)."""
    text = Text()

    def walk(node: MemoryNode, depth: int) -> None:
        if text.plain:
            text.append("\n")
        text.append(" " + "  " * depth)
        text.append_text(_node_row(node, _NAME_W - 2 * depth))
        for child in node.children:
            walk(child, depth + 1)

    for node in nodes:
        walk(node, 0)
    if not nodes:
        text.append(" no runtime", style="dim")
    return text


def tab_bar_text(tabs: Sequence[Tab], active: int, width: int = WIDTH, hint: str = "") -> Text:
    """The tab bar: every tab's label, the active one green and marked ``>…<`` (scrolled to stay visible)."""
    labels = [f">{t.label}<" if i == active else t.label for i, t in enumerate(tabs)]
    first = 0
    while first < active and sum(len(x) + 2 for x in labels[first:active + 1]) > width:
        first += 1
    text = Text()
    for i in range(first, len(tabs)):
        if i > first:
            text.append("  ")
        text.append(labels[i], style="bold green" if i == active else "")
    if hint and text.cell_len + len(hint) + 2 <= width:
        text.append(" " * (width - text.cell_len - len(hint)))
        text.append(hint, style="dim")
    text.truncate(width)
    return text


def render_once(snapshot: MachineSnapshot, *, flops: bool = False, width: int = WIDTH) -> str:
    """The ``all`` tab as plain text (every section, the tree expanded), for ``neuron-top --once``."""
    tabs = tabs_of(snapshot)
    version, cells = core_cells(snapshot)
    parts = [
        title_text(snapshot, width),
        nc_header_text(version, cells, flops, width),
        nc_grid_text(cells, flops),
        vcpu_text(snapshot, snapshot.runtimes, width),
        memory_summary_text(snapshot.runtimes, width),
        details_header_text(width),
        details_tree_text(memory_nodes(snapshot)),
        tab_bar_text(tabs, 0, width),
    ]
    lines: list[str] = []
    for part in parts:
        lines.extend(line.rstrip() for line in part.plain.split("\n"))
    return "\n".join(lines) + "\n"


def once_output(*, period: float = 1.0, tag_filter: str | None = None, root: Path | str | None = None,
                flops: bool = False) -> str:
    """Sample the machine twice ``period`` seconds apart and render the second sample (``--once``)."""
    monitor = Monitor(Path(root) if root is not None else None)
    monitor.sample(tag_filter)
    time.sleep(period)
    return render_once(monitor.sample(tag_filter), flops=flops)


# ---------------------------------------------------------------------------------------------- the app


class SnapshotReady(Message):
    """Posted by the sampling thread: a new snapshot, or the error that prevented it."""

    def __init__(self, snapshot: MachineSnapshot | None, error: str = "") -> None:
        super().__init__()
        self.snapshot = snapshot
        self.error = error


class _MemoryTree(Tree[str]):
    """The Memory Usage Details tree: rows aligned on the column titles; left/right fold and unfold."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "fold", "Collapse", show=False),
        Binding("right", "unfold", "Expand", show=False),
    ]

    def action_fold(self) -> None:
        """Left: collapse the node under the cursor, or move to its parent."""
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded and node.children:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)

    def action_unfold(self) -> None:
        """Right: expand the node under the cursor."""
        node = self.cursor_node
        if node is not None and node.allow_expand:
            node.expand()


class NeuronTopApp(App[int]):
    """The neuron-top terminal UI; ``snapshot`` is the latest sample, the only thing widgets draw from."""

    TITLE = "neuron-top"
    CSS = """
    Screen { layout: vertical; overflow: hidden; }
    #title { height: 1; background: $primary-background; }
    #nc-header, #tabs { height: 1; }
    #nc-scroll { height: 1; scrollbar-size-vertical: 1; }
    #nc-grid { height: auto; }
    #vcpu { height: 3; }
    #memory { height: 8; }
    #details-header { height: 2; }
    #tree { height: 1fr; padding: 0; scrollbar-size-vertical: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("F", "toggle_units", "% / TFLOPS"),
        Binding("x", "toggle_tree", "Expand/collapse all"),
        Binding("a", "previous_tab", "Previous tab", show=False),
        Binding("d", "next_tab", "Next tab", show=False),
        *[Binding(str(i), f"select_tab({i})", f"Tab {i}", show=False) for i in range(1, 10)],
    ]
    HINT = "1-9/a/d tab  F %/TF  x tree  q quit"

    def __init__(self, *, period: float = 1.0, tag_filter: str | None = None, root: Path | str | None = None,
                 monitor: Monitor | None = None) -> None:
        """``period`` seconds between samples; ``tag_filter`` keeps runtimes whose tag matches the regex."""
        super().__init__()
        self.period = period
        self.tag_filter = tag_filter
        self.monitor = monitor if monitor is not None else Monitor(Path(root) if root is not None else None)
        self.snapshot: MachineSnapshot | None = None
        self.error = ""
        self.samples = 0
        self.show_flops = False
        self.active_key = ALL_TAB
        self._sampling = False
        self._drawable = False
        self._known: set[str] = set()
        self._tree_shape: list[tuple[str, str | None]] = []

    # -- layout
    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield Static(id="nc-header")
        with VerticalScroll(id="nc-scroll", can_focus=False):
            yield Static(id="nc-grid")
        yield Static(id="vcpu")
        yield Static(id="memory")
        yield Static(id="details-header")
        tree: _MemoryTree = _MemoryTree("memory", id="tree")
        tree.show_root = False
        tree.guide_depth = 2
        yield tree
        yield Static(id="tabs")

    def on_mount(self) -> None:
        self.query_one("#tree", Tree).focus()
        self._drawable = True
        self.refresh_view()
        self._request_sample()
        self.set_interval(self.period, self._request_sample)

    def on_resize(self) -> None:
        self.refresh_view()

    # -- sampling (a worker thread), decoupled from drawing
    def _request_sample(self) -> None:
        if self._sampling:
            return
        self._sampling = True
        self.run_worker(self._sample_in_thread, thread=True, group="sample", exit_on_error=False)

    def _sample_in_thread(self) -> None:
        try:
            message = SnapshotReady(self.monitor.sample(self.tag_filter))
        except Exception as exc:  # noqa: BLE001 - a failed sample is shown, never fatal to the UI
            message = SnapshotReady(None, f"{type(exc).__name__}: {exc}")
        self.post_message(message)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self._sampling = False
        self.samples += 1
        if message.snapshot is not None:
            self.snapshot = message.snapshot
            self.error = ""
        else:
            self.error = message.error
        self.refresh_view()

    # -- state
    @property
    def tabs(self) -> list[Tab]:
        """The tabs of the latest snapshot."""
        return tabs_of(self.snapshot)

    @property
    def active_index(self) -> int:
        """Index of the active tab (``all`` when the selected runtime went away)."""
        for i, tab in enumerate(self.tabs):
            if tab.key == self.active_key:
                return i
        return 0

    def _select(self, index: int) -> None:
        tabs = self.tabs
        if 0 <= index < len(tabs):
            self.active_key = tabs[index].key
            self.refresh_view()

    # -- actions
    def action_select_tab(self, number: int) -> None:
        """Keys 1-9: select the tab at that position of the bar (1 = ``all``)."""
        self._select(number - 1)

    def action_previous_tab(self) -> None:
        """Key a: the tab on the left (wraps around)."""
        self._select((self.active_index - 1) % len(self.tabs))

    def action_next_tab(self) -> None:
        """Key d: the tab on the right (wraps around)."""
        self._select((self.active_index + 1) % len(self.tabs))

    def action_toggle_units(self) -> None:
        """Key F: utilization in percent or in TFLOPS."""
        self.show_flops = not self.show_flops
        self.refresh_view()

    def action_toggle_tree(self) -> None:
        """Key x: expand the whole tree, or collapse it when it is already fully expanded."""
        tree = self.query_one("#tree", Tree)
        expandable = [n for n in _walk(tree.root) if n is not tree.root and n.allow_expand]
        if expandable and all(n.is_expanded for n in expandable):
            for node in expandable:
                node.collapse()
        else:
            tree.root.expand_all()

    # -- drawing (from the cached snapshot only)
    def _grid_rows_available(self) -> int:
        return max(1, self.size.height - _FIXED_ROWS - _MIN_TREE_ROWS)

    def refresh_view(self) -> None:
        """Redraw every section from the latest snapshot, for the active tab."""
        if not self._drawable:
            return
        width = max(20, self.size.width)
        snapshot = self.snapshot
        tabs = self.tabs
        active = self.active_index
        tab = tabs[active]
        note = self.error or ("" if snapshot is not None else "sampling…")
        self.query_one("#title", Static).update(title_text(snapshot, width, note))
        self.query_one("#tabs", Static).update(tab_bar_text(tabs, active, width, self.HINT))
        if snapshot is None:
            return
        runtimes = _selected(snapshot, tab)
        version, cells = core_cells(snapshot, tab.runtime)
        max_rows = self._grid_rows_available()
        grid = nc_grid_text(cells, self.show_flops, max_rows)
        self.query_one("#nc-header", Static).update(nc_header_text(version, cells, self.show_flops, width))
        self.query_one("#nc-grid", Static).update(grid)
        self.query_one("#nc-scroll").styles.height = max(1, min(max_rows, len(grid.plain.split("\n"))))
        self.query_one("#vcpu", Static).update(vcpu_text(snapshot, runtimes, width))
        self.query_one("#memory", Static).update(memory_summary_text(runtimes, width))
        self.query_one("#details-header", Static).update(details_header_text(width))
        self._update_tree(memory_nodes(snapshot, tab.runtime))

    def _update_tree(self, nodes: list[MemoryNode]) -> None:
        tree = self.query_one("#tree", Tree)
        shape: list[tuple[str, str | None]] = []
        flat: list[tuple[MemoryNode, int]] = []

        def walk(node: MemoryNode, parent: str | None, depth: int) -> None:
            shape.append((node.key, parent))
            flat.append((node, depth))
            for child in node.children:
                walk(child, node.key, depth + 1)

        for node in nodes:
            walk(node, None, 0)
        if shape == self._tree_shape:
            by_key = {n.data: n for n in _walk(tree.root) if n.data is not None}
            for node, depth in flat:
                by_key[node.key].set_label(_node_row(node, self._label_width(tree, depth, bool(node.children))))
            return
        expanded = {n.data for n in _walk(tree.root) if n.data is not None and n.is_expanded}
        cursor = tree.cursor_node.data if tree.cursor_node is not None else None
        tree.clear()
        tree.root.expand()
        added: dict[str, TreeNode[str]] = {}

        def add(node: MemoryNode, parent: TreeNode[str], depth: int) -> None:
            label = _node_row(node, self._label_width(tree, depth, bool(node.children)))
            if node.children:
                item = parent.add(label, data=node.key)
                for child in node.children:
                    add(child, item, depth + 1)
                # New runtimes open on their NeuronCores; nodes seen before keep their state.
                if node.key in expanded or (node.key not in self._known and depth == 0):
                    item.expand()
            else:
                item = parent.add_leaf(label, data=node.key)
            added[node.key] = item

        for node in nodes:
            add(node, tree.root, 0)
        self._known.update(added)
        self._tree_shape = shape
        if cursor in added:
            self.call_after_refresh(tree.move_cursor, added[cursor])

    @staticmethod
    def _label_width(tree: Tree[str], depth: int, expandable: bool) -> int:
        # The tree draws guide_depth cells per level, plus the expand icon (2 cells) before a parent's label;
        # every row then ends where the column titles end.
        return max(8, 1 + _NAME_W - depth * tree.guide_depth - (2 if expandable else 0))


def _walk(node: TreeNode[str]) -> Iterable[TreeNode[str]]:
    yield node
    for child in node.children:
        yield from _walk(child)


# ---------------------------------------------------------------------------------------------- command line


def _period(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid period {value!r}: expected seconds, e.g. 1 or 0.5") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid period {value!r}: must be a positive number of seconds")
    return seconds


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"invalid tag regex {value!r}: {exc}") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``neuron-top``."""
    parser = argparse.ArgumentParser(
        prog="neuron-top",
        description="Show NeuronCore and vCPU utilization, memory usage and loaded models of the Neuron "
                    "runtimes on this (emulated) machine.",
    )
    parser.add_argument("--period", type=_period, default=1.0, metavar="SECONDS",
                        help="seconds between samples (default 1)")
    parser.add_argument("--once", action="store_true",
                        help="print one plain-text snapshot (two samples PERIOD apart) and exit")
    parser.add_argument("--tag", type=_regex, default=None, metavar="REGEX",
                        help="only show runtimes whose process tag matches REGEX")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuron-top`` console script."""
    args = build_parser().parse_args(argv)
    if args.once:
        try:
            text = once_output(period=args.period, tag_filter=args.tag)
        except (StateError, OSError, ValueError) as exc:  # an unusable machine or state root: one line
            print(f"neuron-top: error: {exc}", file=sys.stderr)
            return 1
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            return 0
        return 0
    try:
        device_user = open_devices(open_machine().root, process_command_line())  # shows in `neuron-ls -a`
    except StateError as exc:
        print(f"neuron-top: error: {exc}", file=sys.stderr)
        return 1
    try:
        result: Any = NeuronTopApp(period=args.period, tag_filter=args.tag).run()
    finally:
        device_user.release()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
