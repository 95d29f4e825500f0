"""neuron-top's drawing: the sections as rich ``Text`` (used by the terminal app and by ``--once``).

Pure functions of the view model (:mod:`nrt_lab.monitor.top`); every string that comes from a state file
(process tags, model names, the instance id) goes through :func:`~nrt_lab.tools._cli.printable`, so that a
forged record cannot drive the terminal.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

from rich.text import Text

from nrt_lab.monitor import NA, Finding, MachineSnapshot, NotApplicable, RuntimeSnapshot, format_core_ranges
from nrt_lab.monitor.top import (
    DEVICE_ROWS,
    HOST_ROWS,
    CoreCell,
    DaemonRow,
    MemoryNode,
    Tab,
    core_cells,
    daemon_labels,
    device_totals,
    host_totals,
    memory_nodes,
    notable_findings,
    sum_or_na,
    tabs_of,
)
from nrt_lab.runtime import RUNTIME_VERSION
from nrt_lab.tools._cli import printable

__all__ = [
    "daemons_text",
    "DETAILS_NAME_WIDTH",
    "FIXED_ROWS",
    "MIN_TREE_ROWS",
    "WIDTH",
    "details_header_text",
    "details_tree_text",
    "format_bytes",
    "memory_summary_text",
    "nc_grid_text",
    "nc_header_text",
    "node_row",
    "render_once",
    "tab_bar_text",
    "title_text",
    "vcpu_text",
]

WIDTH = 80  # columns of the --once output and of the layout the TUI is designed for

# Memory Usage Details columns: the name column, then Host Memory and Device Memory, right-aligned.
_NAME_W, _HOST_W, _DEVICE_W = 49, 14, 15
DETAILS_NAME_WIDTH = _NAME_W

# Rows of the TUI that are not the NeuronCore grid nor the tree: title, grid header, VCPU (3), memory
# summary (8), details header (2), tab bar.
FIXED_ROWS = 16
MIN_TREE_ROWS = 3

_BLOCKS = " ▁▂▃▄▅▆▇█"


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
        text.append(printable(snapshot.instance_id), style="bold")
        text.append("  │  ")
        text.append(snapshot.instance.name, style="bold")
    if note:
        text.append("  " + printable(note), style="bold red")
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
        total = sum_or_na(c.flops_per_s for c in cells)
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
        ("Runtime vCPU usage", sum_or_na(r.vcpu_user for r in runtimes) if runtimes else 0.0,
         sum_or_na(r.vcpu_system for r in runtimes) if runtimes else 0.0),
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
    host, device = host_totals(runtimes), device_totals(runtimes)
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


def node_row(node: MemoryNode, name_width: int) -> Text:
    """One row of the Memory Usage Details tree: the label (escaped, cut to ``name_width``) and both columns."""
    label = printable(node.label)
    label = label if len(label) <= name_width else label[:max(0, name_width - 1)] + "…"
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
        text.append_text(node_row(node, _NAME_W - 2 * depth))
        for child in node.children:
            walk(child, depth + 1)

    for node in nodes:
        walk(node, 0)
    if not nodes:
        text.append(" no runtime", style="dim")
    return text


def tab_bar_text(tabs: Sequence[Tab], active: int, width: int = WIDTH, hint: str = "") -> Text:
    """The tab bar: every tab's label, the active one green and marked ``>…<`` (scrolled to stay visible)."""
    labels = [f">{printable(t.label)}<" if i == active else printable(t.label) for i, t in enumerate(tabs)]
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


def findings_text(findings: Sequence[Finding], width: int = WIDTH) -> Text:
    """The ``Findings`` section of ``--once``: each error and warning of diagnose() with its remedy."""
    text = _rule("Findings (nrt-lab doctor explains each)", width)
    indent = " " * 9
    for finding in notable_findings(findings):
        text.append(f"\n {finding.severity.upper():7} ", style="bold red" if finding.severity == "error" else "yellow")
        title = textwrap.wrap(printable(finding.title), max(20, width - len(indent)))
        text.append(f"\n{indent}".join(title))
        if finding.remedy:
            remedy = textwrap.wrap(f"fix: {printable(finding.remedy)}", max(20, width - len(indent)))
            text.append("".join(f"\n{indent}{line}" for line in remedy))
    return text


def daemons_text(rows: Sequence[DaemonRow], width: int = WIDTH) -> Text:
    """The ``Runtime 1.x daemons`` section: each address with the daemon serving it, or that nothing answers."""
    text = _rule("Runtime 1.x daemons (neuron-rtd)", width)
    for row in rows:
        text.append(f"\n {printable(row.address):<28} ")
        if row.owner is None:
            text.append("nothing answers (nrt-lab systemctl start neuron-rtd)", style="yellow")
            continue
        models = len(row.runtime.models) if row.runtime is not None else 0
        text.append(f"pid {row.owner.pid}  {row.owner.runtime_version}  "
                    f"{format_core_ranges(row.owner.cores, prefix='nc')}  {models} model(s)")
    return text


def render_once(snapshot: MachineSnapshot, *, flops: bool = False, width: int = WIDTH,
                findings: Sequence[Finding] = (), daemons: Sequence[DaemonRow] = ()) -> str:
    """The ``all`` tab as plain text (every section, the tree expanded), for ``neuron-top --once``; the
    errors and warnings among ``findings`` (diagnose()'s) and the Runtime 1.x ``daemons`` come just above the
    tab bar."""
    tabs = tabs_of(snapshot, daemon_labels(daemons))
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
    if daemons:
        parts.insert(-1, daemons_text(daemons, width))
    if notable_findings(findings):
        parts.insert(-1, findings_text(findings, width))  # the tab bar stays last, as on screen
    lines: list[str] = []
    for part in parts:
        lines.extend(line.rstrip() for line in part.plain.split("\n"))
    return "\n".join(lines) + "\n"
