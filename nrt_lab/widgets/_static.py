"""Static HTML pictures of the widgets' state, plus the helpers both the live and static views share.

Every widget keeps its whole state in one flat JSON mapping (see :mod:`nrt_lab.widgets._base`); the functions here
turn such a mapping into plain HTML (tables with inline colours, no script) for nbconvert, nbval and GitHub,
which cannot run the live view. The same owner colours are used by the live views and here.
"""

from __future__ import annotations

import colorsys
import hashlib
import html
from collections.abc import Mapping, Sequence
from typing import Any

from nrt_lab.monitor import format_core_ranges

__all__ = [
    "FREE_COLOR",
    "owner_color",
    "text_color",
    "format_bytes",
    "format_ranges",
    "short",
    "core_map_html",
    "driver_status_html",
    "top_view_html",
]

FREE_COLOR = "#e6e6e6"
_ESC = html.escape


def owner_color(pid: int, start_time: float) -> str:
    """A colour that stays the same for one owner process (hash of pid and start time), as ``#rrggbb``."""
    digest = hashlib.sha256(f"{pid}:{start_time:.6f}".encode()).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536.0
    saturation = 0.55 + digest[2] / 255.0 * 0.3
    lightness = 0.40 + digest[3] / 255.0 * 0.18
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def text_color(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (``#rrggbb``)."""
    try:
        red, green, blue = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    except (ValueError, IndexError):
        return "#000000"
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return "#000000" if luminance > 140 else "#ffffff"


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


def core_map_html(state: Mapping[str, Any]) -> str:
    """The core map as plain HTML: one table row per device, one cell per NeuronCore, and the owner legend."""
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
    grid = ('<table class="nrt-core-grid" style="border-collapse:collapse">' + "".join(rows) + "</table>")
    return f'<div class="nrt-lab-static nrt-core-map">{header}{grid}{legend_html}</div>'


_SEVERITY_COLOR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0", "ok": "#2e7d32"}


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
    return (
        '<div class="nrt-lab-static nrt-driver-status"><p><b>DriverStatus</b></p>'
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
    return "-" if value is None else f"{value:.3g}"


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
            value = f"{util:.0f}%" if mode == "percent" else f"{tflops:.3g}"
            text = value if pid else "·"
            cells.append(_cell(f"{core}<br>{text}", _heat(util) if visible else "#f7f7f7",
                               f"nc{core}: {util:.1f}% {tflops:.4g} TFLOPS" + (f", pid {pid}" if pid else ", free")))
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
