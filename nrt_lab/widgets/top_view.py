"""TopView: neuron-top in a notebook — live per-core utilization, memory, executions, latency, history.

Each update reads :class:`nrt_lab.monitor.Monitor` once (rates over the period since the previous update) and
sends only what changed: the cores whose utilization or TFLOPS moved, the processes whose counters moved. The
history ring (``hist``: one row per update, total TFLOPS then every core's utilization) is bounded by
``history_size`` and never sent incrementally: the browser appends the same row from each delta.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from typing import Any

import traitlets

from nrt_lab.hardware import InstanceSpec
from nrt_lab.monitor import (
    DEVICE_MEMORY_KINDS,
    ERROR_KINDS,
    HOST_MEMORY_KINDS,
    OUTCOMES,
    PERCENTILES,
    CoreSample,
    RuntimeSnapshot,
    printable,
)
from nrt_lab.widgets._assets import CSS, TOP_VIEW_JS, widget_esm
from nrt_lab.widgets._base import LiveWidget
from nrt_lab.widgets._palette import PALETTE
from nrt_lab.widgets._plotly import PLOTLY_READY_JS, plotly_library
from nrt_lab.widgets._sampler import Observation
from nrt_lab.widgets._static import format_ranges, top_view_html

__all__ = ["TopView", "HOST_KINDS", "DEVICE_KINDS", "OUTCOME_KINDS", "ERROR_KINDS", "PLOTLY_MIME"]

PLOTLY_MIME = "application/vnd.plotly.v1+json"

# The counter kinds, in the order the front end indexes them (defined once, by the stats page).
HOST_KINDS = HOST_MEMORY_KINDS
DEVICE_KINDS = DEVICE_MEMORY_KINDS
OUTCOME_KINDS = OUTCOMES
_PCT = tuple(f"p{p}" for p in PERCENTILES)
_MIB = 1 << 20


def _sig(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (so tiny jitter does not count as a change)."""
    return float(format(value, _SIG_FORMATS[digits])) if value else 0.0


_SIG_FORMATS = {digits: f".{digits}g" for digits in range(1, 18)}
_FREE_CORE: list[Any] = [0.0, 0.0, 0, 0]  # a core no runtime owns: [utilization, TFLOPS, owner pid, memory]
_CORE_KEYS: dict[int, list[str]] = {}
_FREE_CORES: dict[int, dict[str, list[Any]]] = {}


def _free_cores(total: int) -> dict[str, list[Any]]:
    """``{"c0": _FREE_CORE, …}`` for ``total`` cores (built once per core count)."""
    cores = _FREE_CORES.get(total)
    if cores is None:
        cores = _FREE_CORES[total] = dict.fromkeys(_core_keys(total), _FREE_CORE)
    return cores


def _core_keys(total: int) -> list[str]:
    """The state keys of cores 0 … total-1 (``c0``, ``c1``, …), formatted once per core count."""
    keys = _CORE_KEYS.get(total)
    if keys is None:
        keys = _CORE_KEYS[total] = [f"c{core}" for core in range(total)]
    return keys


def _memory_totals(memories: list[Mapping[str, int]]) -> list[int]:
    """Bytes per DEVICE_KINDS over every core's memory categories."""
    try:
        return [int(sum(map(getter, memories))) for getter in _DEVICE_GETTERS]  # every category present: C loops
    except KeyError:
        return [sum(int(m.get(k, 0)) for m in memories) for k in DEVICE_KINDS]


_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)
_DEVICE_GETTERS = tuple(operator.itemgetter(kind) for kind in DEVICE_KINDS)


def _latency(values: Mapping[str, float] | None) -> list[float] | None:
    return None if values is None else [_sig(values[p] * 1e3, 3) for p in _PCT]


class TopView(LiveWidget):
    """Live NeuronCore utilization (% or TFLOPS), memory, executions and latency per runtime, with history.

    ``TopView(root=None, period=1.0, autostart=True, history_size=60)``. Traits: ``mode`` (``"percent"`` or
    ``"tflops"``), ``tab`` (``"all"`` or a pid as text), plus the base ``paused``, ``period``, ``running``.
    """

    _esm = widget_esm(PLOTLY_READY_JS + TOP_VIEW_JS)
    _css = CSS

    mode = traitlets.Unicode("percent").tag(sync=True)
    charts = traitlets.Bool(True).tag(sync=True)  # the plotly charts (False: grid and tables only)
    compact = traitlets.Bool(False).tag(sync=True)  # the Dashboard's: no sparkline, no memory tables
    tab = traitlets.Unicode("all").tag(sync=True)

    _default_period = 1.0
    _wants_snapshot = True
    _derived_keys = ("hist",)
    _heartbeat = True

    def _prepare(self, kwargs: dict[str, Any]) -> None:
        size = int(kwargs.pop("history_size", 60))
        if not 2 <= size <= 3600:
            raise ValueError(f"history_size={size} is invalid; accepted: 2 to 3600 updates")
        self._history_size = size
        # What the last update built, reused while its inputs stay equal (see _build).
        self._inst_cache: tuple[InstanceSpec, dict[str, Any]] | None = None
        self._core_cache: dict[int, tuple[tuple[Any, ...], list[Any]]] = {}
        self._process_cache: dict[int, dict[str, Any]] = {}

    def __init__(self, *, root: Any = None, period: float | None = None, autostart: bool = True,
                 history_size: int = 60, **kwargs: Any) -> None:
        # plotly.js reaches the page once, through this kernel's one library model, however many charts there are.
        self.plotly = plotly_library() if kwargs.get("charts", True) else None
        super().__init__(root=root, period=period, autostart=autostart, history_size=history_size, **kwargs)
        self.on_msg(lambda _w, content, _b: self.refresh()
                    if isinstance(content, Mapping) and content.get("action") == "refresh" else None)

    @traitlets.validate("mode")
    def _valid_mode(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if value not in ("percent", "tflops"):
            raise traitlets.TraitError(f"mode={value!r} is invalid; accepted: 'percent' or 'tflops'")
        return value

    @property
    def history_size(self) -> int:
        """Rows kept in the history ring."""
        return self._history_size

    # ------------------------------------------------------------------ state
    def _build(self, observation: Observation) -> dict[str, Any]:
        instance, snap = observation.instance, observation.snapshot
        if instance is None or snap is None:
            return {"inst": None, "err": observation.machine_error or "the machine could not be read"}
        total, lnc = instance.total_cores, instance.lnc
        state: dict[str, Any] = {
            "inst": self._instance_state(instance),
            "cap": self._history_size, "t": round(snap.timestamp, 3), "per": round(snap.period, 2), "err": "",
        }
        keys = _core_keys(total)
        # The same owners as CoreMap's legend take part, so both widgets agree on every colour.
        colors = PALETTE.assign((o.pid, o.start_time) for o in snap.runtime_owners)
        parts: dict[int, list[tuple[CoreSample, int]]] = {}  # machine core -> (runtime core sample, its LNC)
        owner: dict[int, int] = {}
        for rt in snap.runtimes:
            cores = self._gather(rt, instance, parts, owner)
            self._process(state, rt, cores, lnc, colors.get(rt.pid) or PALETTE.color(rt.pid, rt.start_time))
        # [utilization %, TFLOPS, owner pid, device memory used (bytes)] per core. A core whose samples are the
        # same (a reused idle CoreSample is the same object) keeps the same list: nothing is recomputed and the
        # diff sees it unchanged at once.
        cached = self._core_cache
        fresh: dict[int, tuple[tuple[Any, ...], list[Any]]] = {}
        state.update(_free_cores(total))  # every core free, then the owned ones
        for core, contributions in sorted(parts.items()):
            key = (tuple(contributions), owner[core])
            hit = cached.get(core)
            if hit is not None and hit[0] == key:
                value = hit[1]
            else:
                util = flops = memory = 0.0
                for sample, rt_lnc in contributions:
                    util += sample.utilization
                    flops += sample.flops_per_s / rt_lnc
                    memory += sum(int(v) for v in sample.memory.values()) / rt_lnc
                value = [round(util / lnc, 1), _sig(flops / 1e12), owner[core], int(memory)]
            fresh[core] = (key, value)
            state[keys[core]] = value
        self._core_cache = fresh
        for gone in self._process_cache.keys() - {rt.pid for rt in snap.runtimes}:
            del self._process_cache[gone]
        if self.tab != "all" and f"p{self.tab}" not in state:
            self.tab = "all"  # the process shown by the tab has gone
        system = snap.system
        usage = system.average_usage
        state["sys"] = [
            system.vcpu_count, round(usage.get("user", 0.0) + usage.get("nice", 0.0), 1),
            round(sum(usage.get(k, 0.0) for k in ("system", "io_wait", "irq", "soft_irq")), 1),
            system.memory_used_bytes // _MIB * _MIB, system.memory_total_bytes,
        ]
        return state

    def _instance_state(self, instance: InstanceSpec) -> dict[str, Any]:
        """The instance's part of the state, built once per instance (the same dict while it stays)."""
        if self._inst_cache is None or self._inst_cache[0] is not instance:
            self._inst_cache = (instance, {
                "name": instance.name, "lnc": instance.lnc, "total": instance.total_cores,
                "version": instance.neuroncore_version,
                "devices": [[d.first_core, d.core_count] for d in instance.devices],
                "hbm": [d.memory_bytes for d in instance.devices]})
        return self._inst_cache[1]

    @staticmethod
    def _place(rt: RuntimeSnapshot, instance: InstanceSpec, util: list[float], flops: list[float],
               owner: list[int], memory: list[float] | None = None) -> list[int]:
        """Add ``rt``'s cores (its own LNC view) to the machine-view arrays; returns the machine cores it owns.

        A runtime core of LNC ``rt.lnc`` covers ``rt.lnc`` physical cores: each machine core it maps to gets
        the runtime core's utilization (summed, then divided by the machine's LNC) and its share of the FLOPS.
        """
        parts: dict[int, list[tuple[CoreSample, int]]] = {}
        holders: dict[int, int] = {}
        mine = TopView._gather(rt, instance, parts, holders)
        for core, contributions in parts.items():
            for sample, rt_lnc in contributions:
                util[core] += sample.utilization
                flops[core] += sample.flops_per_s / rt_lnc
                if memory is not None:
                    memory[core] += sum(int(v) for v in sample.memory.values()) / rt_lnc
            owner[core] = holders[core]
        return mine

    @staticmethod
    def _gather(rt: RuntimeSnapshot, instance: InstanceSpec, parts: dict[int, list[tuple[CoreSample, int]]],
                owner: dict[int, int]) -> list[int]:
        """Add ``rt``'s cores (its own LNC view) to ``parts``: machine-view core -> every (runtime core sample,
        runtime LNC) covering it; returns the machine cores it owns (see :meth:`_place`)."""
        mine: set[int] = set()
        total, lnc, rt_lnc, pid = instance.total_cores, instance.lnc, rt.lnc, rt.pid
        for sample in rt.cores:
            first = sample.core * rt_lnc
            for physical in range(first, first + rt_lnc):
                core = physical // lnc  # machine_view_cores(instance, 1, (physical,)): a physical core is LNC 1
                if 0 <= core < total:
                    parts.setdefault(core, []).append((sample, rt_lnc))
                    owner[core] = pid
                    mine.add(core)
        return sorted(mine)

    def _process(self, state: dict[str, Any], rt: RuntimeSnapshot, cores: list[int], lnc: int, color: str) -> None:
        pid = rt.pid
        cache = self._process_cache.setdefault(pid, {})
        about = (rt.tag, rt.command, rt.kernel_id, rt.runtime_version, rt.start_time, color, cores, rt.lnc, rt.error)
        if cache.get("about") != about:
            cache["about"] = about
            cache["p"] = {
                "pid": pid, "tag": printable(rt.tag) or str(pid), "cmd": printable(rt.command),
                "kernel": printable(rt.kernel_id), "rt": printable(rt.runtime_version),
                "start": rt.start_time, "color": color, "cores": format_ranges(cores),
                "n": len(cores), "lnc": rt.lnc, "error": rt.error,
            }
        state[f"p{pid}"] = cache["p"]
        state[f"x{pid}"] = ([int(rt.execution_summary.get(k, 0)) for k in OUTCOME_KINDS]
                            + [int(rt.error_summary.get(k, 0)) for k in ERROR_KINDS])
        state[f"l{pid}"] = {"t": _latency(rt.total_latency), "d": _latency(rt.device_latency)}
        memories = [c.memory for c in rt.cores]  # equal dicts (most are the very same ones) give equal sums
        if cache.get("memories") != memories:
            cache["memories"] = memories
            cache["device"] = _memory_totals(memories)
        state[f"m{pid}"] = [int(rt.host_memory.get(k, 0)) for k in HOST_KINDS] + cache["device"]
        state[f"md{pid}"] = [
            [m.model_id, printable(m.name), m.core * rt.lnc // lnc, int(sum(m.memory.values()))] for m in rt.models
        ]
        user, system = rt.vcpu_user, rt.vcpu_system
        state[f"v{pid}"] = ([round(user, 1), round(system, 1)]
                            if isinstance(user, float) and isinstance(system, float) else None)

    def _derive(self, state: dict[str, Any], reset: bool) -> None:
        inst = state.get("inst")
        if not inst:
            state["hist"] = []
            return
        hist = state.get("hist")
        if reset or not isinstance(hist, list):
            hist = []
        values: list[Any] = list(map(state.get, _core_keys(int(inst["total"]))))
        if all(values):  # every core has its [utilization, TFLOPS, …] (what _build writes)
            hist.append([sum(map(_SECOND, values)), *map(_FIRST, values)])
        else:
            hist.append([sum(value[1] if value else 0 for value in values), *(value[0] if value else 0
                                                                             for value in values)])
        cap = int(state.get("cap", self._history_size))
        while len(hist) > cap:
            del hist[0]
        state["hist"] = hist

    def _static_html(self, state: Mapping[str, Any]) -> str:
        return top_view_html(state, self.mode, self.tab)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[Any, Any], dict[Any, Any]] | None:
        """Live view, HTML tables, and the core heatmap as plotly's mime bundle (nbviewer, Voila, stored files)."""
        bundle = super()._repr_mimebundle_(**kwargs)
        assert bundle is not None
        data, metadata = bundle
        figure = self.figure_json()
        if figure is not None:
            data[PLOTLY_MIME] = figure
        return data, metadata

    def figure_json(self) -> dict[str, Any] | None:
        """The core heatmap of the history as plotly JSON (None when plotly is not installed)."""
        try:
            from nrt_lab.widgets._figures import from_top_view
        except ImportError:
            return None
        result: dict[str, Any] = json.loads(from_top_view(self.current_state()).to_json())
        return result

    def _plain(self, state: Mapping[str, Any]) -> str:
        inst = state.get("inst")
        if not inst:
            return f"TopView(error: {state.get('err', '')})"
        runtimes = sum(1 for k in state if k.startswith("p") and k[1:].isdigit())
        return (f"TopView({inst['name']} lnc={inst['lnc']}: {inst['total']} NeuronCores, {runtimes} "
                f"runtime{'s' if runtimes != 1 else ''}, mode={self.mode}, tab={self.tab}, "
                f"history of {self._history_size} updates)")

    # ------------------------------------------------------------------ reading helpers
    def utilization(self) -> dict[int, float]:
        """Core id -> utilization in percent over the last period."""
        state = self.current_state()
        total = int((state.get("inst") or {}).get("total", 0))
        return {core: float(state[f"c{core}"][0]) for core in range(total)}

    def tflops(self) -> dict[int, float]:
        """Core id -> TFLOPS over the last period."""
        state = self.current_state()
        total = int((state.get("inst") or {}).get("total", 0))
        return {core: float(state[f"c{core}"][1]) for core in range(total)}

    def history(self) -> list[list[float]]:
        """The history ring, oldest first: rows of [total TFLOPS, utilization of core 0, core 1, ...]."""
        return [list(row) for row in self.current_state().get("hist", [])]

    def processes(self) -> list[dict[str, Any]]:
        """One entry per live runtime (pid, tag, cmd, kernel, cores, color, ...), oldest first."""
        state = self.current_state()
        found = [v for k, v in state.items() if k.startswith("p") and k[1:].isdigit()]
        return sorted(found, key=lambda p: (p["start"], p["pid"]))

    def select_tab(self, tab: int | str = "all") -> None:
        """Show only one process (its pid) or ``"all"``."""
        self.tab = "all" if tab in ("all", "", None) else str(int(tab))

    def toggle_mode(self) -> str:
        """Switch between % and TFLOPS (neuron-top's ``F`` key); returns the new mode."""
        self.mode = "tflops" if self.mode == "percent" else "percent"
        return self.mode
