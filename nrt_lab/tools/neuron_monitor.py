"""``neuron-monitor``: stream JSON reports about every Neuron runtime on the emulated machine (docs/behaviour.md §7).

Usage: ``neuron-monitor [-c CONFIG] [--verbose 0-4] [--count N]``. Each report is one complete JSON object on
one line of stdout, shaped as AWS's user guide and docs/behaviour.md §7 show it (field names, nesting and types checked
against real reports pasted in public projects: an inf1.xlarge report printed by a user of the companion
Prometheus script, an inf2.xlarge report captured with runtime 2.30 by a benchmark suite, and the user guide's
examples; the documented names win where those differ, e.g. ``flops`` where runtime 2.30 prints ``effective_flops``).

Configuration (exactly the real file format)::

    {"period": "1s",
     "neuron_runtimes": [{"tag_filter": ".*", "period": "1s",
                          "metrics": [{"type": "neuroncore_counters"}, {"type": "memory_used"},
                                      {"type": "neuron_runtime_vcpu_usage"}, {"type": "execution_stats"}]}],
     "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"},
                        {"type": "neuron_hw_counters", "period": "2s"}]}

``period`` may be given at the root, per ``neuron_runtimes`` entry and per metric group; the nearest one
wins, else 5 s. No ``-c`` = every group of both lists, every 5 s, for every runtime.

Decisions (documented here because the real tool's documentation is silent or was measured otherwise):

* **Period syntax.** A whole number followed by ``s``: ``"1s"``, ``"5s"``. On real hardware (inf2.xlarge,
  2026-09, measured by a public benchmark suite) ``"1s"`` is honoured while ``"1.0s"``, ``"0.5s"`` and
  ``"5.0s"`` are silently replaced by the 5 s default and ``"500ms"`` yields no report at all. nrt_lab
  rejects decimals with a message instead of silently using 5 s, and accepts ``ms``, ``m`` and ``h``
  (``"500ms"``, ``"2m"``) as an nrt_lab extension; periods run from 100 ms to 24 h.
* **Groups with different periods.** As the user guide's execution model says, the monitor waits until at
  least one group is due, collects the due groups and writes one report holding *only those groups*: a
  runtime's ``report`` (and ``system_data``) lacks the groups that were not due. Every report still lists
  every live runtime that passes a filter (with ``"report": {}`` when none of its groups was due), so a
  consumer always knows which runtimes exist, and ``instance_info`` and ``neuron_hardware_info`` are always
  present. Counts are per period, so a group that is not due is never repeated (the companion Prometheus
  script adds every report's counts to its counters).
* **Per-period counts.** ``execution_summary``, ``error_summary``, ``neuron_hw_counters`` and
  ``context_switch_count`` hold the events *of the captured period* (the user guide says so, and real
  reports show e.g. ``completed: 14`` over a 0.06 s period); the first report after start covers the first
  period. Latency percentiles cover the executions that ended in the period, ``null`` without any.
* **Rates.** ``neuroncore_utilization`` is busy time over the period in percent; ``flops`` is floating point
  operations per second over the period (an integer). ``neuron_runtime_vcpu_usage`` is the process's CPU
  time in percent of *all* the host's vCPUs, like ``vcpu_usage`` (real reports fit that: 1 jiffy over a 62 ms
  period on 4 vCPUs reads 4). A runtime first seen mid-run reports vCPU 0 once (one sample has no rate).
* **Measured periods.** Every group carries the seconds its data actually covers: a runtime that started in
  the middle of a period reports the shorter time since it started.
* **Runtime selection.** ``tag_filter`` is a regular expression searched in ``NEURON_PROCESS_TAG`` (the pid
  when unset); absent = every runtime. A runtime matching several entries appears once, with the union of
  their groups (the first entry wins for a group listed twice). Core keys are global logical NeuronCore ids;
  on trn2 with LNC=2 each core adds ``v3d: {"nc_v3.<physical>": {neuroncore_utilization}}``.
* **Runtime 1.x daemons.** An entry with ``address`` (e.g. ``"unix:/run/neuron.sock"``) instead of
  ``tag_filter`` polls the neuron-rtd serving that address (found by its owner record) and reports it with
  ``"pid": 0``, ``"address"`` and ``"neuron_runtime_tag"`` = the address; when no daemon answers there the entry
  carries an ``error`` saying so (and ``--verbose`` ≥ 1 warns). ``tag_filter`` entries never list daemons.
* **instance_info** comes from the emulated machine (``instance_type``, ``instance_id``); the placement
  fields are fixed emulated values, :data:`EMULATED_PLACEMENT` (the user guide's example values).
* **neuron_hw_counters** are read through :func:`read_hardware_counters`, the seam to fault injection:
  zeros unless a module ``nrt_lab.driver.faults`` with ``hardware_counters(root)`` exists.
* **Errors.** A bad configuration prints one message naming the problem and what is accepted, writes
  nothing on stdout and exits 2; ``-c`` must name a regular file of at most :data:`CONFIG_MAX_BYTES` bytes
  (a FIFO, ``/dev/zero`` or a directory is refused at once instead of hanging). An unusable machine exits 1. SIGINT, SIGTERM and a closed stdout end the monitor with status 0 after the
  report being written (never half a line).
* **nrt_lab extension:** ``--count N`` stops after N reports (for tests, scripts and notebooks).
* ``--verbose``: 0 prints nothing on stderr; 1 errors; 2 also warnings and the configuration summary; 3 also
  one line per report; 4 also the time spent on every group.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nrt_lab.driver import Machine, StateError, open_machine
from nrt_lab.monitor import MachineSnapshot, Monitor, OwnerView, get_view, register_device_user
from nrt_lab.monitor.report import (
    EMULATED_PLACEMENT,
    HW_COUNTER_NAMES,
    counter_delta,
    daemon_at,
    daemon_entry,
    execution_stats,
    hardware_counter_deltas,
    machine_info,
    memory_info,
    memory_used,
    neuroncore_counters,
    no_daemon_error,
    read_hardware_counters,
    runtime_entry,
    runtime_vcpu_usage,
    system_vcpu_usage,
)
from nrt_lab.tools import _cli

__all__ = [
    "CONFIG_MAX_BYTES",
    "DEFAULT_PERIOD_S",
    "RUNTIME_METRIC_TYPES",
    "SYSTEM_METRIC_TYPES",
    "HW_COUNTER_NAMES",
    "EMULATED_PLACEMENT",
    "ConfigError",
    "MetricGroup",
    "RuntimeGroupConfig",
    "MonitorConfig",
    "parse_period",
    "parse_config",
    "load_config",
    "default_config",
    "read_hardware_counters",
    "NeuronMonitor",
    "build_parser",
    "main",
]

DEFAULT_PERIOD_S = 5.0
CONFIG_MAX_BYTES = _cli.CONFIG_MAX_BYTES
RUNTIME_METRIC_TYPES = ("neuroncore_counters", "memory_used", "neuron_runtime_vcpu_usage", "execution_stats")
SYSTEM_METRIC_TYPES = ("vcpu_usage", "memory_info", "neuron_hw_counters")
_MIN_PERIOD_S = 0.1
_MAX_PERIOD_S = 86400.0
_PERIOD_RE = re.compile(r"^([0-9]+)(ms|s|m|h)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PERIOD_ACCEPTED = ('a whole number followed by s (the real tool\'s form: "1s", "5s"), or by ms, m or h '
                    f'(nrt_lab extension: "500ms", "2m"), from {int(_MIN_PERIOD_S * 1000)}ms to 24h')
_ROOT_KEYS = ("period", "neuron_runtimes", "system_metrics")
_RUNTIME_KEYS = ("tag_filter", "metrics", "period", "address")
_GROUP_KEYS = ("type", "period")
_RENAMED = {
    "inference_stats": "it was renamed execution_stats",
    "hw_counters": 'it is now the system metric "neuron_hw_counters"',
}
_SLACK_S = 0.02  # groups due within this many seconds are collected together
PROG = "neuron-monitor"
_LEVELS = {1: "ERROR", 2: "WARN", 3: "INFO", 4: "DEBUG"}  # label of each --verbose level


# ---------------------------------------------------------------------------------------------- configuration


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message names the problem and what is accepted."""


@dataclass(frozen=True)
class MetricGroup:
    """One metric group and its update period in seconds."""

    type: str
    period: float


@dataclass(frozen=True)
class RuntimeGroupConfig:
    """One ``neuron_runtimes`` entry: which runtimes (tag regex) and which groups."""

    tag_filter: str | None
    metrics: tuple[MetricGroup, ...]
    address: str | None = None  # a Runtime 1.x daemon's gRPC address: poll that daemon instead of 2.x runtimes

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The compiled ``tag_filter`` (None = every runtime)."""
        return re.compile(self.tag_filter) if self.tag_filter is not None else None

    def matches(self, tag: str) -> bool:
        """True when a runtime tagged ``tag`` passes the filter (regex search, like the real tool)."""
        pattern = self.pattern
        return pattern is None or pattern.search(tag) is not None


@dataclass(frozen=True)
class MonitorConfig:
    """A parsed neuron-monitor configuration."""

    runtimes: tuple[RuntimeGroupConfig, ...]
    system: tuple[MetricGroup, ...]

    def groups(self) -> list[tuple[str, MetricGroup]]:
        """Every group with its owner (``runtime[i]`` or ``system``), for summaries."""
        found = [(f"neuron_runtimes[{i}]", g) for i, entry in enumerate(self.runtimes) for g in entry.metrics]
        return found + [("system_metrics", g) for g in self.system]


def parse_period(value: Any, where: str = "period") -> float:
    """Seconds of a period string (``"1s"``, ``"500ms"``, ``"2m"``); ConfigError names ``where`` otherwise."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} is {json.dumps(value)}, a {_json_type(value)}; accepted: a string, "
                          f"{_PERIOD_ACCEPTED}")
    match = _PERIOD_RE.match(value.strip())
    if match is None:
        hint = ""
        if re.match(r"^\s*[0-9]*\.[0-9]+\s*(ms|s|m|h)\s*$", value):
            hint = " (decimals are not accepted: the real neuron-monitor silently uses 5s instead)"
        raise ConfigError(f"{where} {json.dumps(value)} is not a valid period{hint}; accepted: {_PERIOD_ACCEPTED}")
    seconds = int(match[1]) * _UNIT_S[match[2]]
    if not _MIN_PERIOD_S <= seconds <= _MAX_PERIOD_S:
        raise ConfigError(f"{where} {json.dumps(value)} is out of range; accepted: {_PERIOD_ACCEPTED}")
    return seconds


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _object(value: Any, where: str, keys: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} is a JSON {_json_type(value)}; accepted: a JSON object with keys "
                          f"{', '.join(keys)}")
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise ConfigError(f"{where} has unknown key {json.dumps(unknown[0])}; accepted keys: {', '.join(keys)}")
    return value


def _array(value: Any, where: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} is a JSON {_json_type(value)}; accepted: an array of {what}")
    return value


def _groups(items: Any, where: str, inherited: float, allowed: Sequence[str], other: Sequence[str],
            other_list: str) -> tuple[MetricGroup, ...]:
    groups: list[MetricGroup] = []
    seen: set[str] = set()
    for i, item in enumerate(_array(items, where, "metric group objects")):
        at = f"{where}[{i}]"
        obj = _object(item, at, _GROUP_KEYS)
        if "type" not in obj:
            raise ConfigError(f"{at} has no \"type\"; accepted types: {', '.join(allowed)}")
        kind = obj["type"]
        if not isinstance(kind, str):
            raise ConfigError(f"{at}.type is a JSON {_json_type(kind)}; accepted: one of {', '.join(allowed)}")
        if kind not in allowed:
            if kind in other:
                why = f"it is a {other_list} type"
            elif kind in _RENAMED:
                why = _RENAMED[kind]
            elif kind == "k8s_info":
                why = "Kubernetes information (neuron-monitor-k8s-info.py) is not emulated by nrt_lab"
            else:
                why = "unknown metric type"
            raise ConfigError(f"{at}.type {json.dumps(kind)} is not accepted here ({why}); accepted types: "
                              f"{', '.join(allowed)}")
        if kind in seen:
            raise ConfigError(f"{at}.type {json.dumps(kind)} is listed twice in {where}; accepted: each type once")
        seen.add(kind)
        period = parse_period(obj["period"], f"{at}.period") if "period" in obj else inherited
        groups.append(MetricGroup(kind, period))
    return tuple(groups)


def parse_config(data: Any, source: str = "configuration") -> MonitorConfig:
    """Validate a decoded configuration (the JSON object of a ``-c`` file); ConfigError names the problem."""
    try:
        root = _object(data, source, _ROOT_KEYS)
        root_period = parse_period(root["period"], f"{source}: period") if "period" in root else DEFAULT_PERIOD_S
        runtimes: list[RuntimeGroupConfig] = []
        for i, item in enumerate(_array(root.get("neuron_runtimes", []), f"{source}: neuron_runtimes",
                                        "runtime objects")):
            at = f"{source}: neuron_runtimes[{i}]"
            entry = _object(item, at, _RUNTIME_KEYS)
            period = parse_period(entry["period"], f"{at}.period") if "period" in entry else root_period
            tag_filter = entry.get("tag_filter")
            if tag_filter is not None:
                if not isinstance(tag_filter, str):
                    raise ConfigError(f"{at}.tag_filter is a JSON {_json_type(tag_filter)}; accepted: a regular "
                                      "expression string such as \".*\"")
                try:
                    re.compile(tag_filter)
                except re.error as exc:
                    raise ConfigError(f"{at}.tag_filter {json.dumps(tag_filter)} is not a valid regular "
                                      f"expression ({exc}); accepted: a regular expression such as \".*\" or "
                                      "\"^my_app\"") from None
            address = entry.get("address")
            if address is not None:
                if not isinstance(address, str) or not address.strip():
                    raise ConfigError(f"{at}.address is {json.dumps(address)}; accepted: a Runtime 1.x daemon "
                                      "address such as \"unix:/run/neuron.sock\"")
                if tag_filter is not None:
                    raise ConfigError(f"{at} has both address and tag_filter; accepted: address (a Runtime 1.x "
                                      "daemon) or tag_filter (Runtime 2.x applications), one per entry")
            metrics = _groups(entry.get("metrics", []), f"{at}.metrics", period, RUNTIME_METRIC_TYPES,
                              SYSTEM_METRIC_TYPES, "system_metrics")
            runtimes.append(RuntimeGroupConfig(tag_filter, metrics, address))
        system = _groups(root.get("system_metrics", []), f"{source}: system_metrics", root_period,
                         SYSTEM_METRIC_TYPES, RUNTIME_METRIC_TYPES, "neuron_runtimes[].metrics")
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply; accepted: the neuron-monitor configuration "
                          "format") from None
    return MonitorConfig(tuple(runtimes), system)


def load_config(path: str | os.PathLike[str]) -> MonitorConfig:
    """Read and validate a configuration file; ConfigError says what is wrong and what is accepted.

    Only a regular file of at most :data:`CONFIG_MAX_BYTES` bytes is read (a FIFO, a device such as
    ``/dev/zero`` or a directory is refused at once instead of hanging or filling memory).
    """
    name = os.fspath(path)
    try:
        raw = _cli.read_small_file(name, "configuration file", CONFIG_MAX_BYTES)
    except _cli.FileRefused as exc:
        raise ConfigError(str(exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {name} cannot be read ({exc}); accepted: the path of a readable "
                          "UTF-8 JSON file") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"configuration file {name} is not valid JSON ({exc}); accepted: a JSON "
                          "object such as {\"period\": \"1s\", \"neuron_runtimes\": [...], "
                          "\"system_metrics\": [...]}") from None
    except RecursionError:
        raise ConfigError(f"configuration file {name} is nested too deeply; accepted: the "
                          "neuron-monitor configuration format") from None
    return parse_config(data, name)


def default_config() -> MonitorConfig:
    """What the real tool does without ``-c``: every group, every 5 s, every runtime."""
    return MonitorConfig(
        (RuntimeGroupConfig(None, tuple(MetricGroup(t, DEFAULT_PERIOD_S) for t in RUNTIME_METRIC_TYPES)),),
        tuple(MetricGroup(t, DEFAULT_PERIOD_S) for t in SYSTEM_METRIC_TYPES),
    )


# ---------------------------------------------------------------------------------------------- the monitor


@dataclass
class _Slot:
    """Groups of one owner (a runtime entry index, or -1 for the system) sharing one period."""

    owner: int
    period: float
    types: tuple[str, ...]
    monitor: Monitor
    next_due: float = 0.0
    # per (pid, start_time): cumulative execution_summary + error_summary at the previous sample
    executions: dict[tuple[int, float], tuple[dict[str, int], dict[str, int]]] = field(default_factory=dict)
    hw_previous: list[dict[str, int]] | None = None
    hw_taken: float = 0.0
    context_switches: int | None = None


def _log_line(label: str, message: str) -> str:
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    return f"{stamp} neuron-monitor {label}: {_cli.printable(message)}\n"


def _event_wait(stop: threading.Event, seconds: float) -> bool:
    return stop.wait(seconds)


class NeuronMonitor:
    """Collects due metric groups into reports (the tool without its command line).

    ``clock`` (monotonic seconds) schedules the groups and ``wait(stop, seconds)`` waits for the next one
    (True when ``stop`` was set): tests inject a fake clock whose ``wait`` advances it, so no test sleeps.
    """

    def __init__(self, config: MonitorConfig, root: Path | None = None, verbose: int = 0,
                 log: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[threading.Event, float], bool] = _event_wait) -> None:
        self.config = config
        self.verbose = verbose
        self.clock = clock
        self._wait = wait
        self._log_stream = log
        self.machine: Machine = open_machine(root)
        self._patterns = [entry.pattern for entry in config.runtimes]
        self.slots: list[_Slot] = []
        owners = [(i, entry.metrics) for i, entry in enumerate(config.runtimes)] + [(-1, config.system)]
        for owner, groups in owners:
            periods: dict[float, list[str]] = {}
            for group in groups:
                periods.setdefault(group.period, []).append(group.type)
            for period, types in sorted(periods.items()):
                self.slots.append(_Slot(owner, period, tuple(types), Monitor(self.machine.root, self.machine)))
        self._lister = Monitor(self.machine.root, self.machine)  # who runs (runtimes, daemons), read cheaply
        self.started = False

    # -- logging
    def log(self, level: int, message: str, label: str | None = None) -> None:
        """Write ``message`` on stderr when ``--verbose`` is at least ``level`` (1 error … 4 debug)."""
        if self.verbose >= level:
            stream = self._log_stream or sys.stderr
            try:
                stream.write(_log_line(label or _LEVELS[level], message))
                stream.flush()
            except (OSError, ValueError):
                pass

    # -- scheduling
    def start(self) -> None:
        """Take the first samples (rates need two) and schedule every group one period from now."""
        now = self.clock()
        for slot in self.slots:
            try:
                self._sample_slot(slot, prime=True)
            except (OSError, ValueError, StateError) as exc:
                self.log(1, f"cannot read the machine: {exc}")
            slot.next_due = now + slot.period
        self.started = True
        if not self.slots:
            self.log(2, "no metric group is configured: no report will be written")
        self.log(2, f"monitoring {len(self.config.groups())} metric groups of {self.machine.root}: " + ", ".join(
            f"{owner}:{g.type}@{g.period:g}s" for owner, g in self.config.groups()), label="INFO")

    def next_due(self) -> float:
        """Clock time at which the next group is due (infinity when nothing is configured)."""
        return min((slot.next_due for slot in self.slots), default=math.inf)

    # -- collection
    def collect(self) -> dict[str, Any]:
        """One report with the groups due now (call :meth:`start` first)."""
        if not self.started:
            self.start()
        now = self.clock()
        due = [slot for slot in self.slots if slot.next_due <= now + _SLACK_S]
        for slot in due:
            slot.next_due += slot.period
            if slot.next_due <= now:
                slot.next_due = now + slot.period
        runtimes: dict[tuple[int, float], dict[str, Any]] = {}
        system_data: dict[str, Any] = {}
        listing, listing_error = self._listing()
        owners = [o for o in listing.owners if o.runtime_version != "NA"] if listing is not None else []
        for index, entry in enumerate(self.config.runtimes):
            entry_slots = [slot for slot in due if slot.owner == index]
            if entry.address is not None:
                self._collect_daemon(index, entry.address, entry_slots, owners, runtimes)
            elif entry_slots:
                daemons = {o.pid for o in owners if o.is_daemon}
                for slot in entry_slots:
                    self._collect_runtimes(slot, entry.tag_filter, runtimes, skip=daemons)
            else:
                pattern = self._patterns[index]
                for record in owners:
                    if not record.is_daemon and (pattern is None or pattern.search(record.tag)):
                        runtimes.setdefault((record.pid, record.start_time), runtime_entry(record.pid, record.tag))
        for slot in due:
            if slot.owner == -1:
                system_data.update(self._collect_system(slot))
        report = {
            "neuron_runtime_data": [runtimes[key] for key in sorted(runtimes)],
            "system_data": system_data,
            **(machine_info(listing, listing.driver) if listing is not None
               else machine_info(None, None, listing_error)),
        }
        self.log(3, f"report: {len(runtimes)} runtimes, groups "
                    + ", ".join(sorted({t for slot in due for t in slot.types})))
        return report

    def _listing(self) -> tuple[MachineSnapshot | None, str]:
        """Who runs (runtimes, daemons) and the machine's identity, from a monitor kept for the purpose (records
        parsed once, cheap liveness probes, state files re-read only when they change); or why it cannot say."""
        try:
            return self._lister.sample(runtimes=False), ""
        except (OSError, StateError) as exc:
            self.log(1, f"cannot list runtimes: {exc}")
            return None, f"cannot read the emulated machine: {exc}"

    def _sample_slot(self, slot: _Slot, prime: bool = False) -> Any:
        if slot.owner == -1:
            system, period = slot.monitor.sample_system()
            if prime:
                slot.context_switches = system.context_switch_count
                if "neuron_hw_counters" in slot.types:
                    slot.hw_previous = self._hw_counters()[0]
                    slot.hw_taken = self.clock()
            return system, period
        entry = self.config.runtimes[slot.owner]
        snap = slot.monitor.sample(entry.tag_filter)
        if prime:
            for rt in snap.runtimes:
                slot.executions[(rt.pid, rt.start_time)] = (dict(rt.execution_summary), dict(rt.error_summary))
        return snap

    def _collect_daemon(self, index: int, address: str, slots: Sequence[_Slot], owners: Sequence[OwnerView],
                        runtimes: dict[tuple[int, float], dict[str, Any]]) -> None:
        """A 1.x ``address`` entry: the daemon's groups (it executes through the same runtime, so its stats page
        has them) under pid 0 and its address; an error entry (and a warning) when no daemon answers there."""
        key = (0, float(index))
        daemon = daemon_at(owners, address)
        if daemon is None:
            runtimes[key] = daemon_entry(address, no_daemon_error(address))
            self.log(1, no_daemon_error(address), label="WARNING")
            return
        runtimes.setdefault(key, daemon_entry(address))
        for slot in slots:
            self._collect_runtimes(slot, None, runtimes, only=daemon.pid, key=key)

    def _collect_runtimes(self, slot: _Slot, tag_filter: str | None,
                          runtimes: dict[tuple[int, float], dict[str, Any]], *, skip: set[int] | None = None,
                          only: int | None = None, key: tuple[int, float] | None = None) -> None:
        started = time.perf_counter()
        try:
            snap = slot.monitor.sample(tag_filter)
        except (OSError, ValueError, StateError) as exc:
            # ValueError: a damaged stats page (e.g. a core number the instance does not have).
            self.log(1, f"cannot read the runtimes: {exc}")
            return
        seen: set[tuple[int, float]] = set()
        vcpus = snap.system.vcpu_count or 1
        for rt in snap.runtimes:
            if rt.runtime_version == "NA" or (skip and rt.pid in skip) or (only is not None and rt.pid != only):
                continue
            own = (rt.pid, rt.start_time)
            seen.add(own)
            entry = runtimes.setdefault(key or own, runtime_entry(rt.pid, rt.tag))
            if rt.error:
                entry["error"] = rt.error
                self.log(1, f"runtime {rt.pid} (tag {rt.tag}): {rt.error}")
                continue
            view = get_view(snap.instance, rt.lnc)
            for kind in slot.types:
                if kind in entry["report"]:
                    continue
                if kind == "neuroncore_counters":
                    entry["report"][kind] = neuroncore_counters(rt, view)
                elif kind == "execution_stats":
                    before = slot.executions.get(own)
                    slot.executions[own] = (dict(rt.execution_summary), dict(rt.error_summary))
                    entry["report"][kind] = execution_stats(rt, before)
                elif kind == "memory_used":
                    entry["report"][kind] = memory_used(rt, view)
                elif kind == "neuron_runtime_vcpu_usage":
                    entry["report"][kind] = runtime_vcpu_usage(rt, vcpus)
                group_error = entry["report"][kind].get("error")
                if group_error:
                    self.log(1, f"runtime {rt.pid} (tag {rt.tag}) {kind}: {group_error}")
        for gone in set(slot.executions) - seen:
            del slot.executions[gone]
        self.log(4, f"runtime groups {','.join(slot.types)} @{slot.period:g}s: {len(snap.runtimes)} runtimes "
                    f"in {1000 * (time.perf_counter() - started):.2f} ms")

    def _collect_system(self, slot: _Slot) -> dict[str, Any]:
        started = time.perf_counter()
        system, period = slot.monitor.sample_system()
        data: dict[str, Any] = {}
        for kind in slot.types:
            if kind == "vcpu_usage":
                switches = system.context_switch_count
                delta = counter_delta(switches, slot.context_switches or 0)
                slot.context_switches = switches
                data[kind] = system_vcpu_usage(system, period, delta)
            elif kind == "memory_info":
                data[kind] = memory_info(system, period)
            elif kind == "neuron_hw_counters":
                data[kind] = self._hw_group(slot)
        self.log(4, f"system groups {','.join(slot.types)} @{slot.period:g}s in "
                    f"{1000 * (time.perf_counter() - started):.2f} ms")
        return data

    def _hw_counters(self) -> tuple[list[dict[str, int]], str]:
        try:
            count = self.machine.state().instance.device_count
        except (OSError, StateError) as exc:
            return [], f"cannot read the machine: {exc}"
        return read_hardware_counters(self.machine.root, count)

    def _hw_group(self, slot: _Slot) -> dict[str, Any]:
        now = self.clock()
        current, error = self._hw_counters()
        devices = hardware_counter_deltas(current, slot.hw_previous)
        period = now - slot.hw_taken if slot.hw_taken else slot.period
        slot.hw_previous, slot.hw_taken = current, now
        if error:
            self.log(1, error)
        return {"period": period, "neuron_devices": devices, "error": error}

    # -- running
    def run(self, out: TextIO, count: int | None = None, stop: threading.Event | None = None) -> int:
        """Write reports on ``out`` until ``stop`` is set or ``count`` reports were written; returns how many."""
        stop = stop or threading.Event()
        if not self.started:
            self.start()
        written = 0
        while not stop.is_set() and (count is None or written < count):
            if math.isinf(self.next_due()):
                stop.wait()  # nothing to report, ever: wait for a signal
                break
            wait = self.next_due() - self.clock()
            if wait > 0 and self._wait(stop, wait):
                break
            line = json.dumps(self.collect(), separators=(",", ":"), allow_nan=False)
            out.write(line + "\n")
            out.flush()
            written += 1
        return written


# ---------------------------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: the real tool's ``-c/--config-file`` and ``--verbose``, plus ``--count``."""
    parser = argparse.ArgumentParser(
        prog="neuron-monitor",
        description="Stream JSON reports about the Neuron runtimes of the emulated machine, one per line.",
    )
    parser.add_argument("-c", "--config-file", metavar="CONFIG",
                        help="neuron-monitor JSON configuration file (default: every metric group every 5s)")
    parser.add_argument("--verbose", type=_cli.bounded_int("a verbosity", 0, 4), default=0, metavar="0-4",
                        help="stderr verbosity: 0 nothing (default), 4 maximum")
    parser.add_argument("--count", type=_cli.bounded_int("a count", 1), default=None, metavar="N",
                        help="nrt_lab extension: stop after N reports")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuron-monitor`` console script."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config_file) if args.config_file else default_config()
    except ConfigError as exc:
        return _cli.error(PROG, str(exc), 2)
    try:
        monitor = NeuronMonitor(config, verbose=args.verbose)
        device_user = register_device_user(monitor.machine.root)  # shows in `neuron-ls -a`
    except _cli.machine_errors() as exc:
        return _cli.error(PROG, str(exc))

    def stopping(signum: int) -> None:
        monitor.log(3, f"received {signal.Signals(signum).name}, stopping")

    try:
        with _cli.stop_on_signals(stopping) as stop:
            try:
                monitor.run(sys.stdout, args.count, stop)
            except BrokenPipeError:
                _cli.silence_stdout()  # the reader went away: end cleanly, without the final flush's error
                monitor.log(3, "stdout closed, stopping")
    except _cli.machine_errors() as exc:
        return _cli.error(PROG, str(exc))
    finally:
        device_user.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
