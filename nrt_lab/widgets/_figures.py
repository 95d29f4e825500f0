"""Static plotly figures of a neuron-monitor recording or a live TopView's history (public as ``nrt_lab.plot``).

``neuron-monitor -c monitor.json > run.jsonl`` writes one JSON report per line; :func:`read_recording` parses
such a file (a bad line is an error naming its line number) into a :class:`Recording`, and the figure functions
draw the same charts the live widgets draw:

* :func:`utilization_figure` — utilization per process over time, stacked (% of all cores seen), or TFLOPS;
* :func:`core_heatmap` — utilization per NeuronCore over time (cores × time);
* :func:`memory_figure` — device memory per NeuronCore, used of its HBM share, by category (last report);
* :func:`execution_figure` — executions per second and total latency p50/p99/p100 over time, errors as markers.

:func:`from_top_view` turns a live :class:`~nrt_lab.widgets.TopView`'s history into a :class:`Recording`-like
heatmap. Time is seconds since the first report (the sum of the reports' periods), so figures are deterministic
for one recording; owner colours come from a fresh palette in order of arrival (the widgets' palette).
Every figure has axes with units, a legend or colour bar, hover text, zoom and plotly's PNG export.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrt_lab.widgets._palette import OwnerPalette, heat_colorscale

try:
    import plotly.graph_objects as go
except ImportError as _exc:  # pragma: no cover - plotly is in the lab extra
    raise ImportError("nrt_lab.plot needs plotly: pip install 'nrt_lab[lab]' (or pip install plotly)") from _exc

__all__ = [
    "Recording",
    "core_heatmap",
    "execution_figure",
    "figures",
    "from_top_view",
    "memory_figure",
    "parse_reports",
    "read_recording",
    "utilization_figure",
]

_PERCENTILES = ("p50", "p99", "p100")


@dataclass
class Recording:
    """What a neuron-monitor recording says, per report (one time step each)."""

    times: list[float] = field(default_factory=list)  # seconds since the first report (end of each period)
    cores: list[int] = field(default_factory=list)  # every NeuronCore seen, sorted
    core_util: list[dict[int, float]] = field(default_factory=list)  # per step: core -> utilization %
    core_flops: list[dict[int, float]] = field(default_factory=list)  # per step: core -> FLOPS (per second)
    owners: dict[int, str] = field(default_factory=dict)  # pid -> tag, in order of arrival
    process_cores: list[dict[int, list[int]]] = field(default_factory=list)  # per step: pid -> cores
    completed: list[dict[int, float]] = field(default_factory=list)  # per step: pid -> executions per second
    errors: list[dict[int, int]] = field(default_factory=list)  # per step: pid -> errors in the period
    latency: list[dict[int, dict[str, float]]] = field(default_factory=list)  # per step: pid -> pXX -> ms
    memory: dict[int, dict[str, int]] = field(default_factory=dict)  # core -> category -> bytes (last report)
    core_capacity: int = 0  # bytes of device memory per NeuronCore (0: unknown)
    instance: str = ""

    @property
    def steps(self) -> int:
        """Number of reports."""
        return len(self.times)


def read_recording(path: str | Path) -> Recording:
    """Parse a neuron-monitor recording (one JSON report per line; blank lines skipped)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the recording {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source} is not UTF-8 text (byte {exc.start}); accepted: neuron-monitor's JSON lines") \
            from None
    return parse_reports(text.splitlines(), name=str(source))


def parse_reports(lines: Iterable[str | Mapping[str, Any]], name: str = "recording") -> Recording:
    """A :class:`Recording` from neuron-monitor reports: JSON lines (text) or already parsed dicts."""
    rec = Recording()
    palette_order: list[int] = []
    clock = 0.0
    for number, line in enumerate(lines, start=1):
        if isinstance(line, Mapping):
            report: Any = line
        else:
            if not line.strip():
                continue
            try:
                report = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{name} line {number}: not JSON ({exc.msg} at column {exc.colno}); accepted: one "
                                 "neuron-monitor report (a JSON object) per line") from None
        if not isinstance(report, Mapping) or "neuron_runtime_data" not in report:
            raise ValueError(f"{name} line {number}: not a neuron-monitor report (no 'neuron_runtime_data'); "
                             "accepted: the lines neuron-monitor writes")
        try:
            clock = _add_report(rec, report, clock, palette_order)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"{name} line {number}: malformed neuron-monitor report ({type(exc).__name__}: "
                             f"{exc})") from None
    rec.cores = sorted({c for step in rec.core_util for c in step} | set(rec.memory))
    if not rec.steps:
        raise ValueError(f"{name} holds no neuron-monitor report; record one with: neuron-monitor -c config.json "
                         "> run.jsonl")
    return rec


def _add_report(rec: Recording, report: Mapping[str, Any], clock: float, order: list[int]) -> float:
    hardware = report.get("neuron_hardware_info") or {}
    if hardware.get("neuron_device_memory_size") and hardware.get("neuroncore_per_device_count"):
        rec.core_capacity = int(hardware["neuron_device_memory_size"]) // int(hardware["neuroncore_per_device_count"])
    rec.instance = str((report.get("instance_info") or {}).get("instance_type", rec.instance))
    util: dict[int, float] = {}
    flops: dict[int, float] = {}
    cores_of: dict[int, list[int]] = {}
    rate: dict[int, float] = {}
    errors: dict[int, int] = {}
    latency: dict[int, dict[str, float]] = {}
    period = 0.0
    for entry in report["neuron_runtime_data"] or []:
        pid = int(entry["pid"])
        if pid not in rec.owners:
            rec.owners[pid] = str(entry.get("neuron_runtime_tag") or pid)
            order.append(pid)
        body = entry.get("report") or {}
        counters = body.get("neuroncore_counters") or {}
        step = float(counters.get("period") or 0.0)
        period = max(period, step)
        for core_text, values in (counters.get("neuroncores_in_use") or {}).items():
            core = int(core_text)
            util[core] = float(values.get("neuroncore_utilization") or 0.0)
            flops[core] = float(values.get("flops") or 0.0)
            cores_of.setdefault(pid, []).append(core)
        used = (body.get("memory_used") or {}).get("neuron_runtime_used_bytes") or {}
        for core_text, kinds in ((used.get("usage_breakdown") or {}).get("neuroncore_memory_usage") or {}).items():
            rec.memory[int(core_text)] = {str(k): int(v) for k, v in kinds.items()}
        stats = body.get("execution_stats") or {}
        if stats:
            stat_period = float(stats.get("period") or step or 1.0)
            period = max(period, stat_period)
            rate[pid] = float((stats.get("execution_summary") or {}).get("completed", 0)) / max(stat_period, 1e-9)
            errors[pid] = int(sum(int(v) for v in (stats.get("error_summary") or {}).values()))
            total = (stats.get("latency_stats") or {}).get("total_latency")
            if isinstance(total, Mapping):
                latency[pid] = {p: float(total[p]) * 1e3 for p in _PERCENTILES if total.get(p) is not None}
    clock += period if period > 0 else 1.0
    rec.times.append(round(clock, 6))
    rec.core_util.append(util)
    rec.core_flops.append(flops)
    rec.process_cores.append(cores_of)
    rec.completed.append(rate)
    rec.errors.append(errors)
    rec.latency.append(latency)
    return clock


def _colors(rec: Recording) -> dict[int, str]:
    palette = OwnerPalette()
    return {pid: palette.color(pid, float(index)) for index, pid in enumerate(rec.owners)}


def _layout(title: str, ytitle: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title}, "height": 320, "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "xaxis": {"title": {"text": "time since the first report (s)"}},
        "yaxis": {"title": {"text": ytitle}}, "legend": {"orientation": "h", "y": -0.25},
        "hovermode": "closest",
    }
    layout.update(extra)
    return layout


def utilization_figure(rec: Recording, mode: str = "percent") -> go.Figure:
    """Utilization per process over time, stacked (% of all cores seen), or TFLOPS per process (``mode``)."""
    if mode not in ("percent", "tflops"):
        raise ValueError(f"mode={mode!r} is invalid; accepted: 'percent' or 'tflops'")
    total = max(1, len(rec.cores))
    colors = _colors(rec)
    traces = []
    for pid, tag in rec.owners.items():
        values = []
        for step in range(rec.steps):
            cores = rec.process_cores[step].get(pid, [])
            if mode == "percent":
                values.append(round(sum(rec.core_util[step].get(c, 0.0) for c in cores) / total, 3))
            else:
                values.append(sum(rec.core_flops[step].get(c, 0.0) for c in cores) / 1e12)
        unit = "% of the cores" if mode == "percent" else "TFLOPS"
        traces.append(go.Scatter(x=rec.times, y=values, name=f"{tag} ({pid})", mode="lines", stackgroup="u",
                                 line={"color": colors[pid], "width": 1}, fillcolor=colors[pid],
                                 hovertemplate=f"{tag} (pid {pid})<br>%{{x}} s<br>%{{y:.4g}} {unit}<extra></extra>"))
    title = ("Utilization per process (stacked)" if mode == "percent" else "TFLOPS per process (stacked)")
    ytitle = f"% of {total} NeuronCores" if mode == "percent" else "TFLOPS"
    return go.Figure(traces, _layout(title, ytitle))


def core_heatmap(rec: Recording) -> go.Figure:
    """Utilization per NeuronCore over time (cores × time)."""
    z = [[round(rec.core_util[step].get(core, 0.0), 2) for step in range(rec.steps)] for core in rec.cores]
    trace = go.Heatmap(x=rec.times, y=[f"nc{c}" for c in rec.cores], z=z, zmin=0, zmax=100, colorscale=heat_colorscale(),
                       colorbar={"title": {"text": "%"}},
                       hovertemplate="%{y}<br>%{x} s<br>%{z:.1f} %<extra></extra>")
    return go.Figure([trace], _layout("Utilization per NeuronCore (%)", "NeuronCore",
                                      yaxis={"title": {"text": "NeuronCore"}, "autorange": "reversed",
                                             "type": "category"}))


def memory_figure(rec: Recording) -> go.Figure:
    """Device memory per NeuronCore at the last report: used bytes by category, against the core's HBM share."""
    kinds = sorted({k for kinds in rec.memory.values() for k in kinds})
    cores = sorted(rec.memory)
    gib = float(1 << 30)
    traces: list[Any] = [
        go.Bar(x=[f"nc{c}" for c in cores], y=[rec.memory[c].get(kind, 0) / gib for c in cores], name=kind,
               hovertemplate=f"%{{x}} {kind}<br>%{{y:.3f}} GiB<extra></extra>") for kind in kinds]
    layout = _layout("Device memory per NeuronCore (used of capacity)", "GiB", barmode="stack",
                     xaxis={"title": {"text": "NeuronCore"}, "type": "category"})
    if rec.core_capacity:
        traces.append(go.Scatter(x=[f"nc{c}" for c in cores], y=[rec.core_capacity / gib] * len(cores),
                                 mode="markers", marker={"symbol": "line-ew-open", "size": 24}, name="capacity",
                                 hovertemplate="%{x} capacity<br>%{y:.1f} GiB<extra></extra>"))
    return go.Figure(traces, layout)


def execution_figure(rec: Recording) -> go.Figure:
    """Executions per second and total latency percentiles (ms, right axis) per process; errors as red markers."""
    colors = _colors(rec)
    traces: list[Any] = []
    dashes = {"p50": "solid", "p99": "dash", "p100": "dot"}
    for pid, tag in rec.owners.items():
        traces.append(go.Scatter(x=rec.times, y=[step.get(pid) for step in rec.completed], mode="lines+markers",
                                 name=f"{tag} ({pid}) executions/s", line={"color": colors[pid]},
                                 hovertemplate=f"{tag} (pid {pid})<br>%{{x}} s<br>%{{y:.4g}} executions/s"
                                               "<extra></extra>"))
        for p in _PERCENTILES:
            values = [step.get(pid, {}).get(p) for step in rec.latency]
            if any(v is not None and not math.isnan(v) for v in values):
                traces.append(go.Scatter(x=rec.times, y=values, mode="lines", yaxis="y2",
                                         name=f"{tag} ({pid}) latency {p}",
                                         line={"color": colors[pid], "dash": dashes[p], "width": 1},
                                         hovertemplate=f"{tag} (pid {pid}) {p}<br>%{{x}} s<br>%{{y:.4g}} ms"
                                                       "<extra></extra>"))
        marks = [(t, step.get(pid, 0)) for t, step in zip(rec.times, rec.errors, strict=True) if step.get(pid, 0)]
        if marks:
            traces.append(go.Scatter(x=[t for t, _ in marks], y=[0] * len(marks), mode="markers",
                                     marker={"color": "#d32f2f", "symbol": "x", "size": 10},
                                     name=f"{tag} ({pid}) errors", text=[str(n) for _, n in marks],
                                     hovertemplate="%{text} errors at %{x} s<extra></extra>"))
    layout = _layout("Executions and latency", "executions per second",
                     yaxis2={"title": {"text": "latency (ms)"}, "overlaying": "y", "side": "right",
                             "rangemode": "tozero"})
    return go.Figure(traces, layout)


def figures(rec: Recording) -> dict[str, go.Figure]:
    """Every chart of a recording, by name."""
    return {"utilization": utilization_figure(rec), "cores": core_heatmap(rec), "memory": memory_figure(rec),
            "executions": execution_figure(rec)}


def from_top_view(state: Mapping[str, Any]) -> go.Figure:
    """The core heatmap of a TopView's state (its ``hist`` ring); time is seconds before the last update."""
    inst = state.get("inst") or {}
    total = int(inst.get("total", 0))
    hist = [row for row in state.get("hist") or [] if isinstance(row, list)]
    period = float(state.get("per") or 0.0) or 1.0
    times = [round(-(len(hist) - 1 - i) * period, 3) for i in range(len(hist))]
    z = [[row[core + 1] if core + 1 < len(row) else 0.0 for row in hist] for core in range(total)]
    trace = go.Heatmap(x=times, y=[f"nc{c}" for c in range(total)], z=z, zmin=0, zmax=100, colorscale=heat_colorscale(),
                       colorbar={"title": {"text": "%"}},
                       hovertemplate="%{y}<br>%{x} s<br>%{z:.1f} %<extra></extra>")
    layout = _layout(f"Utilization per NeuronCore (%), {inst.get('name', '?')}", "NeuronCore",
                     xaxis={"title": {"text": "seconds before the last update"}},
                     yaxis={"title": {"text": "NeuronCore"}, "autorange": "reversed", "type": "category"})
    return go.Figure([trace], layout)
