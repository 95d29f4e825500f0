"""Static HTML pictures of the widgets' state, plus the helpers both the live and static views share.

Every widget keeps its whole state in one flat JSON mapping (see :mod:`nrt_lab.widgets._base`); the functions here
turn such a mapping into plain HTML (tables with inline colours, no script) for nbconvert, nbval and GitHub,
which cannot run the live view. The same owner colours are used by the live views and here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from nrt_lab.monitor import format_core_ranges
from nrt_lab.widgets._palette import PALETTE, text_color

__all__ = [
    "FREE_COLOR",
    "owner_color",
    "text_color",
    "format_bytes",
    "format_number",
    "format_ranges",
    "short",
    "core_map_html",
    "driver_status_html",
    "top_view_html",
]

FREE_COLOR = "#e6e6e6"
_ESC = html.escape


def owner_color(pid: int, start_time: float) -> str:
    """The owner's colour from the kernel's one palette (order of arrival; see :mod:`nrt_lab.widgets._palette`)."""
    return PALETTE.color(pid, start_time)


def format_number(value: float | int | None, digits: int = 3) -> str:
    """A number for people, the same rule as common.js's ``fmtNum``: ``digits`` significant digits, trailing zeros
    of the fraction removed (100 stays ``100``), larger integers in full, tiny values as ``1e-5``, ``-`` for
    None/NaN."""
    if value is None:
        return "-"
    x = float(value)
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if abs(x) >= 10**digits:
        return str(int(math.floor(x + 0.5)))  # JS Math.round: halves go up
    if abs(x) < 1e-3:
        mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
        return f"{_strip(mantissa)}e{int(exponent)}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = _strip(f"{x:.{decimals}f}")
    return "0" if text == "-0" else text


def _strip(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_bytes(value: float | int | None) -> str:
    """Human-readable bytes with binary units (``1.5 GiB``); ``-`` for None."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"  # pragma: no cover


def format_ranges(cores: Sequence[int], prefix: str = "nc") -> str:
    """Compact core ids as ranges: [0, 1, 2, 5] -> ``nc0-nc2,nc5``; ``none`` when empty."""
    return format_core_ranges(cores, prefix=prefix)


def short(text: str, limit: int = 48) -> str:
    """``text`` cut to ``limit`` characters with ``...`` (as neuron-ls truncates COMMAND)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _owners(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    owners = [v for k, v in state.items() if k.startswith("o") and k[1:].isdigit() and isinstance(v, dict)]
    return sorted(owners, key=lambda o: (o.get("start", 0.0), o.get("pid", 0)))


def _devices(state: Mapping[str, Any]) -> list[tuple[int, int]]:
    inst = state.get("inst") or {}
    return [(int(first), int(count)) for first, count in inst.get("devices", [])]


def _cell(text: str, background: str, title: str, bold: bool = False) -> str:
    style = (f"background:{background};color:{text_color(background)};text-align:center;padding:2px 4px;"
             f"border:{'3px solid #000' if bold else '1px solid #999'};font-family:monospace;font-size:11px")
    return f'<td bgcolor="{background}" style="{style}" title="{_ESC(title)}">{text}</td>'


def core_map_html(state: Mapping[str, Any], grid: bool = True) -> str:
    """The core map as plain HTML: one table row per device, one cell per NeuronCore (``grid``), the legend."""
    inst = state.get("inst") or {}
    if state.get("err"):
        return f'<div class="nrt-lab-static"><b>CoreMap</b>: {_ESC(str(state["err"]))}</div>'
    owners = {int(o["pid"]): o for o in _owners(state)}
    me = int((state.get("me") or {}).get("pid", 0))
    total = int(inst.get("total", 0))
    owned = sum(1 for core in range(total) if int(state.get(f"c{core}", 0) or 0))
    rows = []
    for index, (first, count) in enumerate(_devices(state)):
        cells = []
        for core in range(first, first + count):
            pid = int(state.get(f"c{core}", 0) or 0)
            owner = owners.get(pid)
            if owner is None:
                cells.append(_cell(f"{core}<br>·", FREE_COLOR, f"nc{core} (nd{index}): free"))
                continue
            label = _ESC(short(str(owner.get("tag", pid)), 8))
            mark = "&#9733;" if pid == me else ""
            title = f"nc{core} (nd{index}): pid {pid}, tag {owner.get('tag', '')}, {owner.get('cmd', '')}"
            cells.append(_cell(f"{core}<br>{mark}{label}", str(owner.get("color", "#888888")), title, pid == me))
        rows.append(f'<tr><th style="padding:2px 6px;font-family:monospace">nd{index}</th>{"".join(cells)}</tr>')
    legend = []
    for owner in owners.values():
        color = str(owner.get("color", "#888888"))
        who = " (this kernel)" if owner.get("pid") == me else ""
        legend.append(
            "<tr>"
            f'<td bgcolor="{color}" style="background:{color};width:14px">&nbsp;</td>'
            f"<td>{owner.get('pid')}{who}</td><td>{_ESC(str(owner.get('tag', '')))}</td>"
            f"<td><code>{_ESC(short(str(owner.get('cmd', '')), 60))}</code></td>"
            f"<td>{_ESC(str(owner.get('kernel', '')) or '-')}</td>"
            f"<td>{_ESC(format_ranges(owner.get('cores', [])))}</td></tr>"
        )
    legend_html = (
        '<table class="nrt-legend" style="border-collapse:collapse;margin-top:4px">'
        "<tr><th></th><th>pid</th><th>tag</th><th>command</th><th>kernel</th><th>cores</th></tr>"
        + "".join(legend) + "</table>"
    ) if legend else "<p>No process owns a NeuronCore.</p>"
    header = (
        f"<p><b>CoreMap</b> &mdash; {_ESC(str(inst.get('name', '?')))} (lnc {inst.get('lnc', '?')}, "
        f"{_ESC(str(inst.get('kind', '')))} topology): {total} NeuronCores on {len(_devices(state))} devices, "
        f"{owned} owned by {len(owners)} process{'es' if len(owners) != 1 else ''}, {total - owned} free"
        + (" &mdash; &#9733; = this kernel" if me in owners else "") + "</p>"
    )
    table = ('<table class="nrt-core-grid" style="border-collapse:collapse">' + "".join(rows) + "</table>"
             if grid else "")
    return f'<div class="nrt-lab-static nrt-core-map">{header}{table}{legend_html}</div>'


# Readable (≥ 4.5:1) on white and on JupyterLab Light's grey; "info" and "calm" are not alarms: no colour.
_SEVERITY_COLOR = {"error": "#b71c1c", "warning": "#a64a00", "info": "inherit", "calm": "inherit", "ok": "#1b5e20"}


def driver_status_html(state: Mapping[str, Any]) -> str:
    """Driver, runtime gate, daemon, configuration and troubleshooting findings as plain HTML tables."""
    driver = state.get("driver") or {}
    gate = state.get("gate") or {}
    daemon = state.get("daemon") or {}
    runtime = state.get("runtime") or {}
    rows = [
        ("driver package", driver.get("package", "aws-neuronx-dkms")),
        ("installed version", driver.get("installed") or "not installed"),
        ("loaded version", driver.get("loaded") or "not loaded"),
        ("reload pending", "yes" if driver.get("reload_pending") else "no"),
        ("runtime (libnrt)", f"{state.get('runtime_version', '?')} (needs driver ≥ {gate.get('minimum', '?')})"),
        ("runtime can start", "yes" if gate.get("ok") else f"no: {gate.get('message', '')}"),
        ("this kernel", runtime.get("text", "")),
        ("neuron-rtd (1.x daemon)", daemon.get("text", "not running")),
    ]
    info = "".join(f"<tr><th style='text-align:left'>{_ESC(k)}</th><td>{_ESC(str(v))}</td></tr>" for k, v in rows)
    config_rows = []
    for item in state.get("config") or []:
        color = _SEVERITY_COLOR.get(str(item.get("status")), "#555")
        config_rows.append(
            f"<tr><td><code>{_ESC(str(item.get('name')))}</code></td><td><code>{_ESC(str(item.get('value')))}</code></td>"
            f"<td style='color:{color}'>{_ESC(str(item.get('status')))}</td><td>{_ESC(str(item.get('note', '')))}</td></tr>"
        )
    config = (
        "<table style='border-collapse:collapse'><tr><th>variable</th><th>value</th><th>status</th><th>note</th></tr>"
        + "".join(config_rows) + "</table>"
    ) if config_rows else "<p>No NEURON_* variable is set in this kernel.</p>"
    finding_rows = []
    for item in state.get("findings") or []:
        severity = str(item.get("severity", "info"))
        color = _SEVERITY_COLOR.get(severity, "#555")
        finding_rows.append(
            f"<li><b style='color:{color}'>{_ESC(severity.upper())}</b> {_ESC(str(item.get('title', '')))}"
            + (f"<br><code>{_ESC(str(item['detail']))}</code>" if item.get("detail") else "")
            + f"<br>Remedy: {_ESC(str(item.get('remedy', '')))}"
            + (f" <i>({_ESC(str(item['ref']))})</i>" if item.get("ref") else "") + "</li>"
        )
    findings = "<ul>" + "".join(finding_rows) + "</ul>" if finding_rows else "<p>No problem found.</p>"
    verdict = state.get("verdict") or {}
    level = str(verdict.get("level", "calm"))
    head_color = _SEVERITY_COLOR.get(level, "inherit")
    return (
        '<div class="nrt-lab-static nrt-driver-status"><p><b>DriverStatus</b> &mdash; '
        f"<b style='color:{head_color}'>{_ESC(str(verdict.get('text', '')))}</b></p>"
        f"<table style='border-collapse:collapse'>{info}</table>"
        f"<p><b>NEURON_* configuration of this kernel</b></p>{config}"
        f"<p><b>Troubleshooting</b></p>{findings}</div>"
    )


def _heat(util: float) -> str:
    """Background for a utilization in percent: white (idle) to deep green (100 %)."""
    level = max(0.0, min(1.0, util / 100.0))
    red = round(255 - level * (255 - 46))
    green = round(255 - level * (255 - 125))
    blue = round(255 - level * (255 - 50))
    return f"#{red:02x}{green:02x}{blue:02x}"


def _ms(value: float | None) -> str:
    return format_number(value, 3)


def top_view_html(state: Mapping[str, Any], mode: str = "percent", tab: str = "all") -> str:
    """Per-core utilization grid, memory, executions and latency per process, as plain HTML."""
    inst = state.get("inst") or {}
    if state.get("err"):
        return f'<div class="nrt-lab-static"><b>TopView</b>: {_ESC(str(state["err"]))}</div>'
    processes = [v for k, v in state.items() if k.startswith("p") and k[1:].isdigit() and isinstance(v, dict)]
    processes.sort(key=lambda p: (p.get("start", 0.0), p.get("pid", 0)))
    shown = [p for p in processes if tab in ("all", str(p.get("pid")))]
    shown_pids = {int(p["pid"]) for p in shown}
    rows = []
    for index, (first, count) in enumerate(_devices(state)):
        cells = []
        for core in range(first, first + count):
            util, tflops, pid = (state.get(f"c{core}") or [0.0, 0.0, 0])[:3]
            visible = pid in shown_pids if tab != "all" else True
            value = f"{util:.0f}%" if mode == "percent" else format_number(tflops, 3)
            text = value if pid else "·"
            cells.append(_cell(f"{core}<br>{text}", _heat(util) if visible else "#f7f7f7",
                               f"nc{core}: {util:.1f}% {format_number(tflops, 4)} TFLOPS" + (f", pid {pid}" if pid else ", free")))
        rows.append(f'<tr><th style="padding:2px 6px;font-family:monospace">nd{index}</th>{"".join(cells)}</tr>')
    proc_rows = []
    for p in shown:
        pid = p["pid"]
        outcomes = state.get(f"x{pid}") or [0] * 12
        memory = state.get(f"m{pid}") or [0] * 9
        latency = (state.get(f"l{pid}") or {}).get("t")
        lat = "-" if not latency else f"p50 {_ms(latency[3])} / p99 {_ms(latency[5])} / p100 {_ms(latency[6])} ms"
        color = str(p.get("color", "#888888"))
        proc_rows.append(
            f'<tr><td bgcolor="{color}" style="background:{color};width:14px">&nbsp;</td><td>{pid}</td>'
            f"<td>{_ESC(str(p.get('tag', '')))}</td><td>{_ESC(str(p.get('cores', '')))}</td>"
            f"<td>{format_bytes(sum(memory[:4]))}</td><td>{format_bytes(sum(memory[4:9]))}</td>"
            f"<td>{outcomes[0]}</td><td>{sum(outcomes[1:6])}</td><td>{lat}</td></tr>"
        )
    table = (
        "<table style='border-collapse:collapse;margin-top:4px'><tr><th></th><th>pid</th><th>tag</th><th>cores</th>"
        "<th>host memory</th><th>device memory</th><th>completed</th><th>failed</th><th>total latency</th></tr>"
        + "".join(proc_rows) + "</table>"
    ) if proc_rows else "<p>No Neuron runtime is running.</p>"
    header = (
        f"<p><b>TopView</b> &mdash; {_ESC(str(inst.get('name', '?')))} (lnc {inst.get('lnc', '?')}): "
        f"NeuronCore {_ESC(str(inst.get('version', '')))} Utilization ({'%' if mode == 'percent' else 'TFLOPS'}), "
        f"{len(processes)} process{'es' if len(processes) != 1 else ''}, tab {_ESC(tab)}</p>"
    )
    grid = '<table class="nrt-core-grid" style="border-collapse:collapse">' + "".join(rows) + "</table>"
    return f'<div class="nrt-lab-static nrt-top-view">{header}{grid}{table}</div>'
