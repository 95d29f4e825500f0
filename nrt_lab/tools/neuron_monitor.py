"""``neuron-monitor``: stream JSON reports about every Neuron runtime on the emulated machine (SPEC §7.3).

Usage: ``neuron-monitor [-c CONFIG] [--verbose 0-4] [--count N]``. Each report is one complete JSON object on
one line of stdout, shaped as AWS's user guide and SPEC §7.3 show it (field names, nesting and types checked
against real reports pasted in public projects: an inf1.xlarge report printed by a user of the companion
Prometheus script, an inf2.xlarge report captured with runtime 2.30 by a benchmark suite, and the user guide's
examples; SPEC's names win where those differ, e.g. ``flops`` where runtime 2.30 prints ``effective_flops``).

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
* **instance_info** comes from the emulated machine (``instance_type``, ``instance_id``); the placement
  fields are fixed emulated values, :data:`EMULATED_PLACEMENT` (the user guide's example values).
* **neuron_hw_counters** are read through :func:`read_hardware_counters`, the seam to fault injection:
  zeros unless a module ``nrt_lab.driver.faults`` with ``hardware_counters(root)`` exists.
* **Errors.** A bad configuration prints one message naming the problem and what is accepted, writes
  nothing on stdout and exits 2. SIGINT, SIGTERM and a closed stdout end the monitor with status 0 after the
  report being written (never half a line).
* **nrt_lab extension:** ``--count N`` stops after N reports (for tests, scripts and notebooks).
* ``--verbose``: 0 prints nothing on stderr; 1 errors; 2 also warnings and the configuration summary; 3 also
  one line per report; 4 also the time spent on every group.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nrt_lab.driver import Machine, OwnerRecord, StateError, open_machine
from nrt_lab.driver.locks import open_devices
from nrt_lab.driver.owners import process_command_line
from nrt_lab.driver.stats import DEVICE_MEMORY_KINDS, ERROR_KINDS, HOST_MEMORY_KINDS, OUTCOMES
from nrt_lab.hardware import InstanceSpec
from nrt_lab.monitor import Monitor, RuntimeSnapshot, SystemSnapshot, get_view

__all__ = [
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
RUNTIME_METRIC_TYPES = ("neuroncore_counters", "memory_used", "neuron_runtime_vcpu_usage", "execution_stats")
SYSTEM_METRIC_TYPES = ("vcpu_usage", "memory_info", "neuron_hw_counters")
HW_COUNTER_NAMES = ("mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_uncorrected", "sram_ecc_corrected")
# Fixed placement of the emulated instance (the user guide's example values); instance type and id come from
# the machine.
EMULATED_PLACEMENT = {
    "instance_name": "",
    "instance_availability_zone": "us-west-2b",
    "instance_availability_zone_id": "usw2-az2",
    "instance_region": "us-west-2",
    "ami_id": "ami-0011223344556677b",
    "subnet_id": "subnet-112233ee",
}

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
            if "address" in entry and not isinstance(entry["address"], str):
                raise ConfigError(f"{at}.address is a JSON {_json_type(entry['address'])}; accepted: a string "
                                  "(ignored: runtime 1.x daemons only)")
            metrics = _groups(entry.get("metrics", []), f"{at}.metrics", period, RUNTIME_METRIC_TYPES,
                              SYSTEM_METRIC_TYPES, "system_metrics")
            runtimes.append(RuntimeGroupConfig(tag_filter, metrics))
        system = _groups(root.get("system_metrics", []), f"{source}: system_metrics", root_period,
                         SYSTEM_METRIC_TYPES, RUNTIME_METRIC_TYPES, "neuron_runtimes[].metrics")
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply; accepted: the neuron-monitor configuration "
                          "format") from None
    return MonitorConfig(tuple(runtimes), system)


def load_config(path: str | os.PathLike[str]) -> MonitorConfig:
    """Read and validate a configuration file; ConfigError says what is wrong and what is accepted."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file {os.fspath(path)} does not exist; accepted: the path of a "
                          "readable JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"configuration file {os.fspath(path)} cannot be read ({reason}); accepted: the path "
                          "of a readable UTF-8 JSON file") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"configuration file {os.fspath(path)} is not valid JSON ({exc}); accepted: a JSON "
                          "object such as {\"period\": \"1s\", \"neuron_runtimes\": [...], "
                          "\"system_metrics\": [...]}") from None
    except RecursionError:
        raise ConfigError(f"configuration file {os.fspath(path)} is nested too deeply; accepted: the "
                          "neuron-monitor configuration format") from None
    return parse_config(data, os.fspath(path))


def default_config() -> MonitorConfig:
    """What the real tool does without ``-c``: every group, every 5 s, every runtime."""
    return MonitorConfig(
        (RuntimeGroupConfig(None, tuple(MetricGroup(t, DEFAULT_PERIOD_S) for t in RUNTIME_METRIC_TYPES)),),
        tuple(MetricGroup(t, DEFAULT_PERIOD_S) for t in SYSTEM_METRIC_TYPES),
    )


# ---------------------------------------------------------------------------------------------- hardware counters


def read_hardware_counters(root: Path, device_count: int) -> tuple[list[dict[str, int]], str]:
    """Cumulative ECC counters per device and an error string: zeros, or ``nrt_lab.driver.faults``'s numbers.

    The seam to fault injection: when a module ``nrt_lab.driver.faults`` with a function
    ``hardware_counters(root)`` exists, its result is used; it may return ``{device_index: {counter: count}}``
    or an iterable of dicts carrying ``neuron_device_index``; missing devices and counters count 0. Without
    that module every counter is 0. The monitor reports the increase over each period.
    """
    devices = [{"neuron_device_index": i, **dict.fromkeys(HW_COUNTER_NAMES, 0)} for i in range(device_count)]
    try:
        faults = importlib.import_module("nrt_lab.driver.faults")
    except ImportError:
        return devices, ""
    source = getattr(faults, "hardware_counters", None)
    if source is None:
        return devices, ""
    try:
        data = source(root)
        items: Iterable[tuple[int, Any]]
        if isinstance(data, Mapping):
            items = ((int(k), v) for k, v in data.items())
        else:
            items = ((int(d["neuron_device_index"]), d) for d in data)
        for index, counters in items:
            if 0 <= index < device_count and isinstance(counters, Mapping):
                for name in HW_COUNTER_NAMES:
                    devices[index][name] = max(0, int(counters.get(name, 0)))
    except Exception as exc:  # a fault-injection bug must not stop the monitor: report it in the group
        return devices, f"failed to read hardware counters: {exc}"
    return devices, ""


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
    return f"{stamp} neuron-monitor {label}: {message}\n"


class NeuronMonitor:
    """Collects due metric groups into reports (the tool without its command line)."""

    def __init__(self, config: MonitorConfig, root: Path | None = None, verbose: int = 0,
                 log: TextIO | None = None) -> None:
        self.config = config
        self.verbose = verbose
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
        now = time.monotonic()
        for slot in self.slots:
            try:
                self._sample_slot(slot, prime=True)
            except StateError as exc:
                self.log(1, f"cannot read the machine: {exc}")
            slot.next_due = now + slot.period
        self.started = True
        if not self.slots:
            self.log(2, "no metric group is configured: no report will be written")
        self.log(2, f"monitoring {len(self.config.groups())} metric groups of {self.machine.root}: " + ", ".join(
            f"{owner}:{g.type}@{g.period:g}s" for owner, g in self.config.groups()), label="INFO")

    def next_due(self) -> float:
        """Monotonic time at which the next group is due (infinity when nothing is configured)."""
        return min((slot.next_due for slot in self.slots), default=math.inf)

    # -- collection
    def collect(self) -> dict[str, Any]:
        """One report with the groups due now (call :meth:`start` first)."""
        if not self.started:
            self.start()
        now = time.monotonic()
        due = [slot for slot in self.slots if slot.next_due <= now + _SLACK_S]
        for slot in due:
            slot.next_due += slot.period
            if slot.next_due <= now:
                slot.next_due = now + slot.period
        runtimes: dict[tuple[int, float], dict[str, Any]] = {}
        owners: list[OwnerRecord] | None = None
        system_data: dict[str, Any] = {}
        for index, entry in enumerate(self.config.runtimes):
            entry_slots = [slot for slot in due if slot.owner == index]
            if entry_slots:
                for slot in entry_slots:
                    self._collect_runtimes(slot, entry.tag_filter, runtimes)
            else:
                if owners is None:
                    owners = self._owners()
                pattern = self._patterns[index]
                for record in owners:
                    if pattern is None or pattern.search(record.tag):
                        runtimes.setdefault((record.pid, record.start_time), _runtime_entry(record.pid, record.tag))
        for slot in due:
            if slot.owner == -1:
                system_data.update(self._collect_system(slot))
        report = {
            "neuron_runtime_data": [runtimes[key] for key in sorted(runtimes)],
            "system_data": system_data,
            **self._machine_info(),
        }
        self.log(3, f"report: {len(runtimes)} runtimes, groups "
                    + ", ".join(sorted({t for slot in due for t in slot.types})))
        return report

    def _owners(self) -> list[OwnerRecord]:
        try:
            return [r for r in self.machine.owners() if r.runtime_version != "NA"]
        except (OSError, StateError) as exc:
            self.log(1, f"cannot list runtimes: {exc}")
            return []

    def _sample_slot(self, slot: _Slot, prime: bool = False) -> Any:
        if slot.owner == -1:
            system, period = slot.monitor.sample_system()
            if prime:
                slot.context_switches = system.context_switch_count
                if "neuron_hw_counters" in slot.types:
                    slot.hw_previous = self._hw_counters()[0]
                    slot.hw_taken = time.monotonic()
            return system, period
        entry = self.config.runtimes[slot.owner]
        snap = slot.monitor.sample(entry.tag_filter)
        if prime:
            for rt in snap.runtimes:
                slot.executions[(rt.pid, rt.start_time)] = (dict(rt.execution_summary), dict(rt.error_summary))
        return snap

    def _collect_runtimes(self, slot: _Slot, tag_filter: str | None,
                          runtimes: dict[tuple[int, float], dict[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            snap = slot.monitor.sample(tag_filter)
        except (OSError, StateError) as exc:
            self.log(1, f"cannot read the runtimes: {exc}")
            return
        seen: set[tuple[int, float]] = set()
        vcpus = snap.system.vcpu_count or 1
        for rt in snap.runtimes:
            if rt.runtime_version == "NA":
                continue
            key = (rt.pid, rt.start_time)
            seen.add(key)
            entry = runtimes.setdefault(key, _runtime_entry(rt.pid, rt.tag))
            if rt.error:
                entry["error"] = rt.error
                self.log(1, f"runtime {rt.pid} (tag {rt.tag}): {rt.error}")
                continue
            view = get_view(snap.instance, rt.lnc)
            for kind in slot.types:
                if kind in entry["report"]:
                    continue
                if kind == "neuroncore_counters":
                    entry["report"][kind] = _neuroncore_counters(rt, view)
                elif kind == "execution_stats":
                    entry["report"][kind] = self._execution_stats(slot, rt)
                elif kind == "memory_used":
                    entry["report"][kind] = _memory_used(rt)
                elif kind == "neuron_runtime_vcpu_usage":
                    entry["report"][kind] = _vcpu_usage(rt, vcpus)
        for gone in set(slot.executions) - seen:
            del slot.executions[gone]
        self.log(4, f"runtime groups {','.join(slot.types)} @{slot.period:g}s: {len(snap.runtimes)} runtimes "
                    f"in {1000 * (time.perf_counter() - started):.2f} ms")

    def _execution_stats(self, slot: _Slot, rt: RuntimeSnapshot) -> dict[str, Any]:
        key = (rt.pid, rt.start_time)
        outcomes, errors = dict(rt.execution_summary), dict(rt.error_summary)
        before = slot.executions.get(key)
        slot.executions[key] = (outcomes, errors)
        base_outcomes, base_errors = before if before is not None else ({}, {})
        return {
            "period": rt.period,
            "error_summary": {k: _delta(errors.get(k, 0), base_errors.get(k, 0)) for k in ERROR_KINDS},
            "execution_summary": {k: _delta(outcomes.get(k, 0), base_outcomes.get(k, 0)) for k in OUTCOMES},
            "latency_stats": {
                "total_latency": dict(rt.total_latency) if rt.total_latency is not None else None,
                "device_latency": dict(rt.device_latency) if rt.device_latency is not None else None,
            },
            "error": "",
        }

    def _collect_system(self, slot: _Slot) -> dict[str, Any]:
        started = time.perf_counter()
        system, period = slot.monitor.sample_system()
        data: dict[str, Any] = {}
        for kind in slot.types:
            if kind == "vcpu_usage":
                switches = system.context_switch_count
                delta = _delta(switches, slot.context_switches or 0)
                slot.context_switches = switches
                data[kind] = _system_vcpu(system, period, delta)
            elif kind == "memory_info":
                data[kind] = {
                    "period": period,
                    "memory_total_bytes": system.memory_total_bytes,
                    "memory_used_bytes": system.memory_used_bytes,
                    "swap_total_bytes": system.swap_total_bytes,
                    "swap_used_bytes": system.swap_used_bytes,
                    "error": "",
                }
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
        now = time.monotonic()
        current, error = self._hw_counters()
        previous = {d["neuron_device_index"]: d for d in slot.hw_previous or []}
        devices = []
        for device in current:
            before = previous.get(device["neuron_device_index"], {})
            devices.append({"neuron_device_index": device["neuron_device_index"],
                            **{name: _delta(device[name], before.get(name, 0)) for name in HW_COUNTER_NAMES}})
        period = now - slot.hw_taken if slot.hw_taken else slot.period
        slot.hw_previous, slot.hw_taken = current, now
        if error:
            self.log(1, error)
        return {"period": period, "neuron_devices": devices, "error": error}

    def _machine_info(self) -> dict[str, Any]:
        try:
            state = self.machine.state()
            driver = self.machine.driver()
        except (OSError, StateError) as exc:
            message = f"cannot read the emulated machine: {exc}"
            return {
                "instance_info": {**_instance_info("", ""), "error": message},
                "neuron_hardware_info": {**_hardware_info(None), "error": message},
            }
        hardware = _hardware_info(state.instance if driver is not None else None)
        if driver is None:
            hardware["error"] = ("Neuron Driver not found: the aws-neuronx-dkms package is not installed "
                                 "(install it with: nrt-lab driver install)")
        return {"instance_info": _instance_info(state.instance.name, state.instance_id),
                "neuron_hardware_info": hardware}

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
            wait = self.next_due() - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            line = json.dumps(self.collect(), separators=(",", ":"), allow_nan=False)
            out.write(line + "\n")
            out.flush()
            written += 1
        return written


def _delta(now: int, before: int) -> int:
    """Increase of a cumulative counter (a counter that went back, e.g. after a reset, restarts from 0)."""
    return now - before if now >= before else now


def _runtime_entry(pid: int, tag: str) -> dict[str, Any]:
    return {"pid": pid, "address": "", "neuron_runtime_tag": tag, "error": "", "report": {}}


def _neuroncore_counters(rt: RuntimeSnapshot, view: InstanceSpec) -> dict[str, Any]:
    cores: dict[str, Any] = {}
    for c in rt.cores:
        data: dict[str, Any] = {"neuroncore_utilization": c.utilization, "flops": int(c.flops_per_s)}
        if view.neuroncore_version == "v3d":
            data["v3d"] = {f"nc_v3.{c.core * rt.lnc + k}": {"neuroncore_utilization": c.utilization}
                           for k in range(rt.lnc)}
        cores[str(c.core)] = data
    return {"period": rt.period, "neuroncores_in_use": cores, "error": ""}


def _subgraph_name(name: str) -> str:
    match = re.fullmatch(r"sg_?(\d+)", name)
    return f"sg_{int(match[1]):02d}" if match else name


def _memory_used(rt: RuntimeSnapshot) -> dict[str, Any]:
    host = {k: int(rt.host_memory.get(k, 0)) for k in HOST_MEMORY_KINDS}
    per_core = {str(c.core): {k: int(c.memory.get(k, 0)) for k in DEVICE_MEMORY_KINDS} for c in rt.cores}
    models = []
    for m in rt.models:
        names = m.subgraphs or ("sg00",)
        device = {k: int(m.memory.get(k, 0)) for k in ("constants", "model_code", "runtime_memory", "tensors")}
        subgraphs: dict[str, Any] = {}
        for i, name in enumerate(names):
            share = {k: v // len(names) + (v % len(names) if i == 0 else 0) for k, v in device.items()}
            subgraphs[_subgraph_name(name)] = {
                "memory_used_bytes": {
                    "host": 0,
                    "neuron_device": sum(share.values()),
                    "usage_breakdown": {"host": dict.fromkeys(HOST_MEMORY_KINDS, 0), "neuron_device": share},
                },
                "neuroncore_index": m.core,
                "neuron_device_index": m.device,
            }
        models.append({"name": m.name, "uuid": m.uuid, "model_id": m.model_id, "is_running": m.is_running,
                       "subgraphs": subgraphs})
    return {
        "period": rt.period,
        "neuron_runtime_used_bytes": {
            "host": sum(host.values()),
            "neuron_device": sum(sum(v.values()) for v in per_core.values()),
            "usage_breakdown": {"host": host, "neuroncore_memory_usage": per_core},
        },
        "loaded_models": models,
        "error": "",
    }


def _vcpu_usage(rt: RuntimeSnapshot, vcpus: int) -> dict[str, Any]:
    user = rt.vcpu_user / vcpus if isinstance(rt.vcpu_user, (int, float)) else 0.0
    system = rt.vcpu_system / vcpus if isinstance(rt.vcpu_system, (int, float)) else 0.0
    return {"period": rt.period, "vcpu_usage": {"user": round(user, 2), "system": round(system, 2)}, "error": ""}


def _system_vcpu(system: SystemSnapshot, period: float, context_switches: int) -> dict[str, Any]:
    def rounded(usage: Mapping[str, float]) -> dict[str, float]:
        return {k: round(float(v), 2) for k, v in usage.items()}

    return {
        "period": period,
        "average_usage": rounded(system.average_usage),
        "usage_data": {cpu: rounded(usage) for cpu, usage in system.per_cpu_usage.items()},
        "context_switch_count": context_switches,
        "error": "",
    }


def _instance_info(instance_type: str, instance_id: str) -> dict[str, Any]:
    return {
        "instance_name": EMULATED_PLACEMENT["instance_name"],
        "instance_id": instance_id,
        "instance_type": instance_type,
        "instance_availability_zone": EMULATED_PLACEMENT["instance_availability_zone"],
        "instance_availability_zone_id": EMULATED_PLACEMENT["instance_availability_zone_id"],
        "instance_region": EMULATED_PLACEMENT["instance_region"],
        "ami_id": EMULATED_PLACEMENT["ami_id"],
        "subnet_id": EMULATED_PLACEMENT["subnet_id"],
        "error": "",
    }


def _hardware_info(instance: InstanceSpec | None) -> dict[str, Any]:
    if instance is None:
        return {"neuron_device_type": "", "neuron_device_version": "", "neuroncore_version": "",
                "neuron_device_count": 0, "neuron_device_memory_size": 0, "neuroncore_per_device_count": 0,
                "logical_neuroncore_config": 0, "error": ""}
    first = instance.devices[0] if instance.devices else None
    return {
        "neuron_device_type": instance.neuron_device_type,
        "neuron_device_version": instance.neuron_device_version,
        "neuroncore_version": instance.neuroncore_version,
        "neuron_device_count": instance.device_count,
        "neuron_device_memory_size": first.memory_bytes if first else 0,
        "neuroncore_per_device_count": first.core_count if first else 0,
        "logical_neuroncore_config": instance.lnc,
        "error": "",
    }


# ---------------------------------------------------------------------------------------------- command line


def _verbosity(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a verbosity; accepted: 0 to 4") from None
    if not 0 <= value <= 4:
        raise argparse.ArgumentTypeError(f"{value} is out of range; accepted: 0 to 4")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count; accepted: an integer ≥ 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range; accepted: an integer ≥ 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: the real tool's ``-c/--config-file`` and ``--verbose``, plus ``--count``."""
    parser = argparse.ArgumentParser(
        prog="neuron-monitor",
        description="Stream JSON reports about the Neuron runtimes of the emulated machine, one per line.",
    )
    parser.add_argument("-c", "--config-file", metavar="CONFIG",
                        help="neuron-monitor JSON configuration file (default: every metric group every 5s)")
    parser.add_argument("--verbose", type=_verbosity, default=0, metavar="0-4",
                        help="stderr verbosity: 0 nothing (default), 4 maximum")
    parser.add_argument("--count", type=_count, default=None, metavar="N",
                        help="nrt_lab extension: stop after N reports")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuron-monitor`` console script."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config_file) if args.config_file else default_config()
    except ConfigError as exc:
        print(f"neuron-monitor: error: {exc}", file=sys.stderr)
        return 2
    try:
        monitor = NeuronMonitor(config, verbose=args.verbose)
    except StateError as exc:
        print(f"neuron-monitor: error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        monitor.log(3, f"received {signal.Signals(signum).name}, stopping")
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    device_user = open_devices(open_machine().root, process_command_line())  # shows in `neuron-ls -a`
    try:
        monitor.run(sys.stdout, args.count, stop)
    except BrokenPipeError:
        # The reader went away: silence the interpreter's final flush of stdout and end cleanly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        monitor.log(3, "stdout closed, stopping")
    except StateError as exc:
        print(f"neuron-monitor: error: {exc}", file=sys.stderr)
        return 1
    finally:
        device_user.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
