"""ClusterMap and ClusterDashboard: every node of an emulated Ray cluster, its devices and NeuronCores, live.

Fed by :class:`nrt_lab.cluster.views.ClusterMonitor` (each node's own monitor, asked through Ray) in the widgets'
one background sampler thread. A core's fill is its utilization, its frame the colour of its owner, and owners
are coloured by what Ray runs there: the actor, else the job (a fixed palette in order of arrival, as in
CoreMap). Each node's header says its instance, whether it is alive (or dead, stopped, unreachable, and why) and
how many of its cores are in use; tasks and actors Ray cannot place are listed with their demands and the reason.

:class:`ClusterDashboard` adds a node status table and a live plotly chart of each node's utilization over time
(bounded history, appended in the browser from each delta). Both render as plain HTML and text for nbconvert,
and the dashboard's static form carries the chart as plotly's mime bundle.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import anywidget
import traitlets

from nrt_lab.cluster.views import ClusterSnapshot
from nrt_lab.monitor import Clock
from nrt_lab.widgets._assets import CLUSTER_MAP_JS, CSS, widget_esm
from nrt_lab.widgets._base import LiveWidget
from nrt_lab.widgets._palette import OwnerPalette, heat_color, text_color
from nrt_lab.widgets._plotly import PLOTLY_READY_JS, plotly_library
from nrt_lab.widgets._sampler import Observation, Sampler
from nrt_lab.widgets._static import FREE_COLOR, format_bytes, format_number, short

__all__ = ["ClusterMap", "ClusterDashboard", "ClusterObservation", "ClusterSampler", "CLUSTER_PALETTE",
           "cluster_figure"]

# Colours of Ray actors and jobs, in order of arrival (its own palette: keys are Ray ids, not pids).
CLUSTER_PALETTE = OwnerPalette()
_ESC = html.escape
PLOTLY_MIME = "application/vnd.plotly.v1+json"


class _Sampling(Protocol):
    def sample(self) -> ClusterSnapshot: ...


@dataclass(frozen=True)
class ClusterObservation(Observation):
    """What one tick read of the cluster (``cluster`` None when the cluster could not be read at all)."""

    cluster: ClusterSnapshot | None = None


class ClusterSampler(Sampler):
    """The widgets' sampler thread, reading a cluster (``monitor.sample()``) instead of one machine."""

    def __init__(self, monitor: _Sampling, name: str = "ClusterMap", clock: Clock | None = None) -> None:
        super().__init__(None, name=name, clock=clock)
        self.cluster_monitor = monitor

    def observe(self, need_snapshot: bool) -> Observation:
        """Sample the cluster once; never raises (a failure becomes the observation's error)."""
        with self._read_lock:
            now = self.clock.time()
            try:
                snapshot = self.cluster_monitor.sample()
            except Exception as exc:  # noqa: BLE001 - shown in the widget, the thread goes on
                return ClusterObservation(now, Path("."), None, f"{type(exc).__name__}: {exc}")
            return ClusterObservation(now, Path("."), None, "", need_snapshot, cluster=snapshot)


class _ColorKeys:
    """Ray actor/job keys -> palette colours, in order of arrival; keys no longer seen free their colour."""

    def __init__(self, palette: OwnerPalette) -> None:
        self.palette = palette
        self._numbers: dict[str, int] = {}
        self._next = 1

    def assign(self, keys: list[str]) -> dict[str, str]:
        for key in keys:
            if key not in self._numbers:
                self._numbers[key] = self._next
                self._next += 1
        live = set(keys)
        for key in [k for k in self._numbers if k not in live]:
            del self._numbers[key]
        colors = self.palette.assign((self._numbers[k], 0.0) for k in live)
        return {k: colors[self._numbers[k]] for k in live}


class ClusterMap(LiveWidget):
    """Nodes × devices × NeuronCores of a Ray cluster: utilization as fill, owner (Ray actor or job) as frame.

    ``ClusterMap(monitor=None, period=2.0, autostart=True, history_size=120)``: ``monitor`` is a
    :class:`~nrt_lab.cluster.views.ClusterMonitor` (default: one for the cluster this kernel is connected to,
    ``nrt_lab.cluster.connect()`` first), or anything whose ``sample()`` returns a ClusterSnapshot.
    """

    _esm = widget_esm(PLOTLY_READY_JS + CLUSTER_MAP_JS)
    _css = CSS
    _default_period = 2.0
    _derived_keys = ("hist",)
    _layout_keys = ("nodes",)
    _heartbeat = True
    _dashboard: ClassVar[bool] = False

    dashboard = traitlets.Bool(False).tag(sync=True)  # the node table and the utilization chart

    def _prepare(self, kwargs: dict[str, Any]) -> None:
        size = int(kwargs.pop("history_size", 120))
        if not 2 <= size <= 3600:
            raise ValueError(f"history_size={size} is invalid; accepted: 2 to 3600 updates")
        self._history_size = size
        self._owner_ids: dict[tuple[str, int, float], int] = {}
        self._next_owner = 1
        self._colors = _ColorKeys(CLUSTER_PALETTE)

    def __init__(self, monitor: _Sampling | None = None, *, period: float | None = None, autostart: bool = True,
                 history_size: int = 120, clock: Clock | None = None, sampler: Sampler | None = None,
                 **kwargs: Any) -> None:
        self._own_monitor: Any = None
        if sampler is None:
            if monitor is None:
                from nrt_lab.cluster.views import ClusterMonitor

                monitor = self._own_monitor = ClusterMonitor(
                    timeout_s=min(5.0, max(1.0, period or self._default_period)))
            sampler = ClusterSampler(monitor, name=type(self).__name__, clock=clock)
            owns = True
        else:
            owns = False
        self.plotly = plotly_library() if self._dashboard else None
        super().__init__(period=period, autostart=False, sampler=sampler, history_size=history_size,
                         dashboard=self._dashboard, **kwargs)
        self._owns_sampler = owns
        self.on_msg(lambda _w, content, _b: self.refresh()
                    if isinstance(content, Mapping) and content.get("action") == "refresh" else None)
        if autostart:
            self.start()

    def close(self) -> None:
        """Stop the thread and close the widget (also one whose construction failed, e.g. no Ray driver)."""
        if "_sampler" not in self.__dict__:
            anywidget.AnyWidget.close(self)
            return
        super().close()
        if self._own_monitor is not None:  # made by this widget: its helper thread goes too (actors stay)
            self._own_monitor.close()
            self._own_monitor = None

    @property
    def history_size(self) -> int:
        """Rows kept in the utilization history."""
        return self._history_size

    # ------------------------------------------------------------------ state
    def _owner_id(self, node: str, pid: int, start: float) -> int:
        key = (node, pid, round(start, 6))
        number = self._owner_ids.get(key)
        if number is None:
            number = self._owner_ids[key] = self._next_owner
            self._next_owner += 1
        return number

    def _build(self, observation: Observation) -> dict[str, Any]:
        cluster = getattr(observation, "cluster", None)
        if cluster is None:
            return {"nodes": None, "err": observation.machine_error or "the cluster could not be read"}
        nodes = list(cluster.nodes)
        state: dict[str, Any] = {
            "nodes": [
                {"name": n.name, "inst": n.instance, "lnc": n.lnc, "total": n.total_cores,
                 "devices": [[d.first_core, d.core_count] for d in n.devices]}
                for n in nodes
            ],
            "addr": cluster.address, "t": round(observation.taken, 3), "cap": self._history_size,
            "err": "\n".join(cluster.errors),
            "pending": [[p.kind, p.name, p.job_id, p.demand_text, p.reason] for p in cluster.pending],
        }
        colors = self._colors.assign(sorted({o.color_key for n in nodes for o in n.owners}))
        live: set[tuple[str, int, float]] = set()
        for index, node in enumerate(nodes):
            owner_of = [0] * node.total_cores
            for owner in node.owners:
                live.add((node.name, owner.pid, round(owner.start_time, 6)))
                number = self._owner_id(node.name, owner.pid, owner.start_time)
                ray = owner.ray
                state[f"o{number}"] = {
                    "id": number, "node": node.name, "pid": owner.pid, "start": owner.start_time,
                    "tag": owner.tag or str(owner.pid), "cmd": owner.command, "cores": owner.core_ranges,
                    "n": len(owner.cores), "color": colors[owner.color_key],
                    "ray": ray.text if ray is not None else "", "kind": ray.kind if ray is not None else "",
                    "job": ray.job_id if ray is not None else "", "actor": ray.actor_id if ray is not None else "",
                }
                for core in owner.cores:
                    if 0 <= core < node.total_cores:
                        owner_of[core] = number
            util = [round(u) for u in node.utilization] if node.alive else []
            state[f"n{index}"] = {
                "state": node.state, "reason": node.reason, "used": node.used_cores, "total": node.total_cores,
                "util": round(node.mean_utilization, 1) if node.alive else None,
                "mem": sum(node.memory_used), "memtotal": node.memory_total, "id": node.ray_node_id[:8],
            }
            state[f"c{index}"] = owner_of
            state[f"u{index}"] = util
        for key in [k for k in self._owner_ids if k not in live]:
            del self._owner_ids[key]
        return state

    def _derive(self, state: dict[str, Any], reset: bool) -> None:
        nodes = state.get("nodes")
        hist = state.get("hist")
        if reset or not isinstance(hist, list) or not nodes:
            hist = []
        if nodes:
            row: list[float | None] = [state.get("t", 0.0)]
            for index in range(len(nodes)):
                node = state.get(f"n{index}") or {}
                row.append(node.get("util"))
            hist.append(row)
            cap = int(state.get("cap", self._history_size))
            del hist[: max(0, len(hist) - cap)]
        state["hist"] = hist

    # ------------------------------------------------------------------ reading helpers
    def node_names(self) -> list[str]:
        """The nodes shown, in order."""
        return [n["name"] for n in self.current_state().get("nodes") or []]

    def node_state(self, name: str) -> dict[str, Any]:
        """What the header of node ``name`` shows (state, reason, used, total, util, mem, memtotal)."""
        state = self.current_state()
        for index, node in enumerate(state.get("nodes") or []):
            if node["name"] == name:
                return dict(state[f"n{index}"])
        raise KeyError(f"no node {name!r}; shown: {', '.join(self.node_names()) or 'none'}")

    def owners(self) -> list[dict[str, Any]]:
        """Every owner shown (node, pid, tag, ray, color, cores, ...), by node then pid."""
        state = self.current_state()
        found = [v for k, v in state.items() if k.startswith("o") and k[1:].isdigit()]
        return sorted(found, key=lambda o: (o["node"], o["pid"]))

    def history(self) -> list[list[float | None]]:
        """Rows [time, mean utilization % of node 0, node 1, ...] (None: the node was not read), oldest first."""
        return [list(row) for row in self.current_state().get("hist", [])]

    # ------------------------------------------------------------------ representations
    def _static_html(self, state: Mapping[str, Any]) -> str:
        return cluster_map_html(state, dashboard=self._dashboard)

    def _plain(self, state: Mapping[str, Any]) -> str:
        nodes = state.get("nodes")
        if not nodes:
            return f"{type(self).__name__}(error: {state.get('err', '')})"
        parts = []
        for index, node in enumerate(nodes):
            info = state.get(f"n{index}") or {}
            parts.append(f"{node['name']} {node['inst']} {info.get('state')} {info.get('used')}/{node['total']}")
        pending = len(state.get("pending") or [])
        return (f"{type(self).__name__}({len(nodes)} node{'s' if len(nodes) != 1 else ''}: " + "; ".join(parts)
                + f"; {pending} pending)")

    def figure_json(self) -> dict[str, Any] | None:
        """Utilization per node over time as plotly JSON (None without plotly)."""
        try:
            figure = cluster_figure(self.current_state())
        except ImportError:
            return None
        return figure

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[Any, Any], dict[Any, Any]] | None:
        """Live view, HTML tables, and (dashboard) the utilization chart as plotly's mime bundle."""
        bundle = super()._repr_mimebundle_(**kwargs)
        assert bundle is not None
        data, metadata = bundle
        if self._dashboard:
            figure = self.figure_json()
            if figure is not None:
                data[PLOTLY_MIME] = figure
        return data, metadata


class ClusterDashboard(ClusterMap):
    """ClusterMap plus a node status table and a live plotly chart of each node's utilization over time."""

    _dashboard = True


def cluster_figure(state: Mapping[str, Any]) -> dict[str, Any]:
    """The dashboard's chart for ``state``: mean utilization per node over time (plotly JSON)."""
    import plotly.graph_objects as go

    nodes = state.get("nodes") or []
    hist = state.get("hist") or []
    figure = go.Figure()
    times = [row[0] - hist[-1][0] if hist else 0 for row in hist]
    for index, node in enumerate(nodes):
        figure.add_trace(go.Scatter(
            x=times, y=[row[index + 1] if index + 1 < len(row) else None for row in hist], mode="lines",
            name=f"{node['name']} ({node['inst']})",
            hovertemplate=f"{node['name']}<br>%{{x:.0f}} s<br>%{{y:.1f}} %<extra></extra>",
        ))
    figure.update_layout(
        title="Utilization per node (mean of its NeuronCores)", xaxis_title="time (s, 0 = last sample)",
        yaxis_title="utilization (%)", yaxis_range=[0, 100], height=300, margin={"l": 56, "r": 12, "t": 40, "b": 46},
        legend={"orientation": "h", "y": -0.3},
    )
    result: dict[str, Any] = json.loads(figure.to_json())
    return result


_STATE_COLOR = {"alive": "#1b5e20", "dead": "#b71c1c", "unreachable": "#a64a00", "stopped": "#555555"}


def cluster_map_html(state: Mapping[str, Any], dashboard: bool = False) -> str:
    """The cluster map as plain HTML: per node a header and a devices × cores table, the owners, the pending."""
    nodes = state.get("nodes")
    if not nodes:
        return f'<div class="nrt-lab-static"><b>ClusterMap</b>: {_ESC(str(state.get("err", "")))}</div>'
    owners = {int(v["id"]): v for k, v in state.items() if k.startswith("o") and k[1:].isdigit()}
    parts = [f"<p><b>ClusterMap</b> &mdash; {_ESC(str(state.get('addr', '')))}: {len(nodes)} nodes</p>"]
    for index, node in enumerate(nodes):
        info = state.get(f"n{index}") or {}
        owner_of = state.get(f"c{index}") or []
        util = state.get(f"u{index}") or []
        color = _STATE_COLOR.get(str(info.get("state")), "#555555")
        mean = info.get("util")
        head = (f"<b>{_ESC(node['name'])}</b> {_ESC(node['inst'])} &mdash; <b style='color:{color}'>"
                f"{_ESC(str(info.get('state')))}</b> &mdash; {info.get('used')}/{node['total']} NeuronCores used"
                + (f", {format_number(mean)} % utilization" if mean is not None else "")
                + (f" &mdash; {_ESC(str(info.get('reason')))}" if info.get("reason") else ""))
        rows = []
        for device, (first, count) in enumerate(node["devices"]):
            cells = []
            for core in range(first, first + count):
                number = owner_of[core] if core < len(owner_of) else 0
                owner = owners.get(number)
                u = util[core] if core < len(util) else None
                fill = heat_color(u) if u is not None and u >= 0.5 else FREE_COLOR
                frame = owner["color"] if owner else "#999999"
                title = f"{node['name']} nd{device} nc{core}" + (
                    f": pid {owner['pid']} {owner['ray'] or 'not a Ray process'}" if owner else ": free")
                text = "-" if u is None else f"{u}%"
                cells.append(f'<td bgcolor="{fill}" style="background:{fill};color:{text_color(fill)};'
                             f'border:3px solid {frame};padding:1px 3px;font-family:monospace;font-size:10px" '
                             f'title="{_ESC(title)}">{core}<br>{text}</td>')
            rows.append(f"<tr><th style='font-family:monospace'>nd{device}</th>{''.join(cells)}</tr>")
        parts.append(f"<div><p>{head}</p><table style='border-collapse:collapse'>{''.join(rows)}</table></div>")
    legend = "".join(
        f"<tr><td style='background:{o['color']};width:14px'>&nbsp;</td><td>{_ESC(o['node'])}</td><td>{o['pid']}</td>"
        f"<td>{_ESC(o['ray'] or 'not a Ray process')}</td><td>{_ESC(o['cores'])}</td></tr>"
        for o in sorted(owners.values(), key=lambda o: (o["node"], o["pid"])))
    parts.append("<table style='border-collapse:collapse'><tr><th></th><th>node</th><th>pid</th><th>Ray</th>"
                 f"<th>cores</th></tr>{legend}</table>" if legend else "<p>No process holds a NeuronCore.</p>")
    pending = state.get("pending") or []
    if pending:
        parts.append("<p><b>Pending</b> (Ray cannot place these yet)</p><ul>" + "".join(
            f"<li>{_ESC(kind)} {_ESC(name)}" + (f" (job {_ESC(job)})" if job else "")
            + f" asks {_ESC(demand)}: {_ESC(reason)}</li>" for kind, name, job, demand, reason in pending) + "</ul>")
    if dashboard:
        rows = []
        for index, node in enumerate(nodes):
            info = state.get(f"n{index}") or {}
            rows.append(f"<tr><td>{_ESC(node['name'])}</td><td>{_ESC(node['inst'])}</td>"
                        f"<td>{_ESC(str(info.get('state')))}</td><td>{info.get('used')}/{node['total']}</td>"
                        f"<td>{format_number(info.get('util'))}</td><td>{format_bytes(info.get('mem'))} of "
                        f"{format_bytes(info.get('memtotal'))}</td><td>{_ESC(short(str(info.get('reason', '')), 60))}"
                        "</td></tr>")
        parts.append("<table style='border-collapse:collapse'><tr><th>node</th><th>instance</th><th>state</th>"
                     "<th>cores used</th><th>utilization %</th><th>device memory</th><th>reason</th></tr>"
                     + "".join(rows) + "</table>")
    if state.get("err"):
        parts.append(f"<p style='color:#b71c1c'>{_ESC(str(state['err']))}</p>")
    return '<div class="nrt-lab-static nrt-cluster-map">' + "".join(parts) + "</div>"
