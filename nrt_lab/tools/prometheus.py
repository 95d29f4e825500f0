"""``neuron-monitor-prometheus``: serve neuron-monitor's reports as Prometheus metrics (docs/behaviour.md §7).

Usage: ``neuron-monitor | neuron-monitor-prometheus [--port 8000] [--host 127.0.0.1]``. Like AWS's companion
script ``/opt/aws/neuron/bin/neuron-monitor-prometheus.py`` it reads one JSON report per line on stdin and
serves ``/metrics`` with the same metric names, label names and help texts (checked against the script's
source and real ``/metrics`` pages of an inf1.xlarge and a trn1n.32xlarge pasted in public projects):

* labels ``instance_name, instance_id, instance_type, availability_zone, region, subnet_id``; runtime metrics
  add ``runtime_tag``;
* per runtime: ``neuroncore_utilization_ratio{neuroncore}`` (0-1),
  ``neuroncore_memory_usage_{constants,model_code,model_shared_scratchpad,runtime_memory,tensors}``
  ``{neuroncore, memory_location="None"}`` (the real script leaves that label unset, so it prints ``None``),
  ``neuron_runtime_memory_used_bytes{memory_location=host|neuron_device}``,
  ``neuron_runtime_vcpu_usage_ratio{usage_type=user|system}``, counters
  ``execution_errors_total{error_type}`` and ``execution_status_total{status_type}``, and
  ``execution_latency_seconds{percentile}`` (total latency; the last value stays while a period has none);
* system: counter ``hardware_ecc_events_total{event_type, neuron_device_index}``, ``system_vcpu_count``,
  ``system_vcpu_usage_ratio{usage_type}`` (user = user + nice; system = system + io_wait + irq + soft_irq,
  capped at 1), ``system_{memory,swap}_{total,used}_bytes``;
* info: ``instance_info`` and ``neuron_hardware_info`` (value 1, facts in labels).

Counters only grow: neuron-monitor reports the events *of each period*, so every report's counts are added
(a negative count is ignored). Unlike the real script, which keeps the series of a runtime that exited until
no runtime is left, series of runtimes absent from a report are removed at once: metrics come from a custom
collector over the latest state rather than global metric objects. Runtimes sharing a tag share its series
(the tag is the only runtime label): gauges show the last one reported, counters add both. A line that is not a neuron-monitor report
is reported on stderr and skipped; so is a group whose ``error`` is set (with the real script's message).
The server binds 127.0.0.1 unless ``--host`` says otherwise; ``--port 0`` picks a free port. The first line on
stdout says where it listens (``Running HTTP prometheus server at port N``, as the real script prints). The
exporter exits with status 0 at the end of its input, on SIGINT and on SIGTERM.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from nrt_lab.tools import _cli

__all__ = [
    "PROG",
    "INSTANCE_LABELS",
    "ReportError",
    "NeuronMonitorCollector",
    "make_registry",
    "serve",
    "build_parser",
    "main",
]

INSTANCE_LABELS = ("instance_name", "instance_id", "instance_type", "availability_zone", "region", "subnet_id")
_INSTANCE_FIELDS = {  # label -> instance_info field
    "instance_name": "instance_name",
    "instance_id": "instance_id",
    "instance_type": "instance_type",
    "availability_zone": "instance_availability_zone",
    "region": "instance_region",
    "subnet_id": "subnet_id",
}
_VCPU_AGGREGATION = {"user": ("user", "nice"), "system": ("system", "io_wait", "irq", "soft_irq")}
PROG = "neuron-monitor-prometheus"


@functools.cache
def _report_kinds() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(NeuronCore memory categories, ECC counters) of neuron-monitor's report, defined once in the monitor
    API and imported on first use: it pulls in numpy, which ``--help`` does not need."""
    from nrt_lab.monitor import DEVICE_MEMORY_KINDS
    from nrt_lab.monitor.report import HW_COUNTER_NAMES

    return DEVICE_MEMORY_KINDS, HW_COUNTER_NAMES


def __getattr__(name: str) -> Any:
    """``NEURONCORE_MEMORY_KINDS``: the report's NeuronCore memory categories (imported on first use)."""
    if name == "NEURONCORE_MEMORY_KINDS":
        return _report_kinds()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ReportError(ValueError):
    """A line or a group that is not shaped like a neuron-monitor report."""


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ReportError(f"{where} is not a JSON object")
    return value


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"{where} is {json.dumps(value)[:40]}, not a number")
    return float(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ReportError(f"{where} is {json.dumps(value)[:40]}, not a string")
    return value


@dataclass
class _Counter:
    """A monotonically increasing total and the time its series was created."""

    value: float = 0.0
    created: float = field(default_factory=time.time)

    def add(self, amount: float) -> None:
        if amount > 0:
            self.value += amount


@dataclass
class _Runtime:
    """The latest values of one runtime tag."""

    utilization: dict[str, float] = field(default_factory=dict)
    core_memory: dict[str, dict[str, float]] = field(default_factory=dict)
    used_bytes: dict[str, float] = field(default_factory=dict)
    vcpu: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    errors: dict[str, _Counter] = field(default_factory=dict)
    status: dict[str, _Counter] = field(default_factory=dict)


@dataclass
class _System:
    vcpu_count: float | None = None
    vcpu_ratio: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    ecc: dict[tuple[str, str], _Counter] = field(default_factory=dict)


class NeuronMonitorCollector(Collector):
    """Holds the latest neuron-monitor report's values and turns them into metric families on each scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instance: dict[str, str] | None = None
        self._hardware: dict[str, str] | None = None
        self._runtimes: dict[str, _Runtime] = {}
        self._system = _System()
        self.reports = 0

    # ------------------------------------------------------------------ input
    def update_line(self, line: str) -> list[str]:
        """Apply one line of neuron-monitor output; returns the problems to report (ReportError if unusable)."""
        try:
            data = json.loads(line)
        except RecursionError:
            raise ReportError("not a neuron-monitor report (nested too deeply)") from None
        except ValueError as exc:
            raise ReportError(f"not JSON ({exc})") from None
        return self.update(data)

    def update(self, report: Any) -> list[str]:
        """Apply one decoded report; returns warnings (group errors, malformed groups) to print on stderr."""
        report = _obj(report, "the report")
        info = _obj(report.get("instance_info"), "instance_info")
        instance = {label: _str(info.get(key, ""), f"instance_info.{key}")
                    for label, key in _INSTANCE_FIELDS.items()}
        runtimes_in = report.get("neuron_runtime_data", [])
        if runtimes_in is None:
            runtimes_in = []
        if not isinstance(runtimes_in, list):
            raise ReportError("neuron_runtime_data is not a JSON array")
        warnings: list[str] = []
        with self._lock:
            self._instance = instance
            hardware = report.get("neuron_hardware_info")
            if isinstance(hardware, Mapping):
                self._hardware = {
                    "neuron_device_count": str(hardware.get("neuron_device_count", "")),
                    "neuroncore_per_device_count": str(hardware.get("neuroncore_per_device_count", "")),
                }
            present: set[str] = set()
            for i, entry in enumerate(runtimes_in):
                try:
                    entry = _obj(entry, f"neuron_runtime_data[{i}]")
                    tag = str(entry.get("neuron_runtime_tag", entry.get("pid", "")))
                except ReportError as exc:
                    warnings.append(str(exc))
                    continue
                present.add(tag)
                state = self._runtimes.setdefault(tag, _Runtime())
                error = entry.get("error", "")
                if error:
                    warnings.append(f"Runtime {tag} error: {error}")
                    continue
                groups = entry.get("report") or {}
                if not isinstance(groups, Mapping):
                    warnings.append(f"neuron_runtime_data[{i}].report is not a JSON object")
                    continue
                for name, group in groups.items():
                    warnings.extend(self._apply(name, group, tag, state))
            for gone in set(self._runtimes) - present:
                del self._runtimes[gone]
            system = report.get("system_data") or {}
            if isinstance(system, Mapping):
                for name, group in system.items():
                    warnings.extend(self._apply(name, group, None, None))
            else:
                warnings.append("system_data is not a JSON object")
            self.reports += 1
        return warnings

    def _apply(self, name: str, group: Any, tag: str | None, state: _Runtime | None) -> list[str]:
        handler = _RUNTIME_HANDLERS.get(name) if state is not None else _SYSTEM_HANDLERS.get(name)
        if handler is None:
            return []
        if not isinstance(group, Mapping):
            return [f"{name} is not a JSON object"]
        error = group.get("error", "")
        if error:
            if tag is not None:
                return [f"Error getting {name} for runtime tag {tag}: {error}"]
            return [f"Error getting {name}: {error}"]
        try:
            handler(self, group, state)
        except ReportError as exc:
            where = f" of runtime tag {tag}" if tag is not None else ""
            return [f"skipping {name}{where}: {exc}"]
        return []

    # -- runtime groups (validated before anything is stored, so a bad group changes nothing)
    def _neuroncore_counters(self, group: Mapping[str, Any], state: _Runtime | None) -> None:
        assert state is not None
        cores = _obj(group.get("neuroncores_in_use"), "neuroncores_in_use")
        state.utilization = {
            str(nc): _num(_obj(d, f"neuroncores_in_use.{nc}").get("neuroncore_utilization"),
                          f"neuroncores_in_use.{nc}.neuroncore_utilization") / 100.0
            for nc, d in cores.items()
        }

    def _memory_used(self, group: Mapping[str, Any], state: _Runtime | None) -> None:
        assert state is not None
        used = _obj(group.get("neuron_runtime_used_bytes"), "neuron_runtime_used_bytes")
        totals = {loc: _num(used.get(loc), f"neuron_runtime_used_bytes.{loc}") for loc in ("host", "neuron_device")}
        breakdown = _obj(used.get("usage_breakdown"), "usage_breakdown")
        per_core = _obj(breakdown.get("neuroncore_memory_usage"), "usage_breakdown.neuroncore_memory_usage")
        memory = {
            str(nc): {kind: _num(_obj(d, f"neuroncore_memory_usage.{nc}").get(kind),
                                 f"neuroncore_memory_usage.{nc}.{kind}") for kind in _report_kinds()[0]}
            for nc, d in per_core.items()
        }
        state.used_bytes, state.core_memory = totals, memory

    def _neuron_runtime_vcpu_usage(self, group: Mapping[str, Any], state: _Runtime | None) -> None:
        assert state is not None
        usage = _obj(group.get("vcpu_usage"), "vcpu_usage")
        state.vcpu = {kind: _num(usage.get(kind), f"vcpu_usage.{kind}") / 100.0 for kind in ("user", "system")}

    def _execution_stats(self, group: Mapping[str, Any], state: _Runtime | None) -> None:
        assert state is not None
        errors = {k: _num(v, f"error_summary.{k}") for k, v in _obj(group.get("error_summary"),
                                                                    "error_summary").items()}
        status = {k: _num(v, f"execution_summary.{k}") for k, v in _obj(group.get("execution_summary"),
                                                                        "execution_summary").items()}
        latency_stats = _obj(group.get("latency_stats"), "latency_stats")
        total = latency_stats.get("total_latency")
        latency = None
        if total is not None:
            latency = {p: _num(v, f"total_latency.{p}") for p, v in _obj(total, "total_latency").items()}
        for kind, count in errors.items():
            state.errors.setdefault(kind, _Counter()).add(count)
        for kind, count in status.items():
            state.status.setdefault(kind, _Counter()).add(count)
        if latency is not None:
            state.latency = latency

    # -- system groups
    def _neuron_hw_counters(self, group: Mapping[str, Any], _state: _Runtime | None) -> None:
        devices = group.get("neuron_devices")
        if not isinstance(devices, list):
            raise ReportError("neuron_devices is not a JSON array")
        increments: list[tuple[tuple[str, str], float]] = []
        for i, device in enumerate(devices):
            device = _obj(device, f"neuron_devices[{i}]")
            index = device.get("neuron_device_index")
            if isinstance(index, bool) or not isinstance(index, int):
                raise ReportError(f"neuron_devices[{i}].neuron_device_index is not an integer")
            for event in _report_kinds()[1]:
                increments.append(((event, str(index)), _num(device.get(event), f"neuron_devices[{i}].{event}")))
        for key, amount in increments:
            self._system.ecc.setdefault(key, _Counter()).add(amount)

    def _vcpu_usage(self, group: Mapping[str, Any], _state: _Runtime | None) -> None:
        usage_data = _obj(group.get("usage_data"), "usage_data")
        average = _obj(group.get("average_usage"), "average_usage")
        ratio = {
            kind: min(sum(_num(average.get(f), f"average_usage.{f}") for f in fields), 100.0) / 100.0
            for kind, fields in _VCPU_AGGREGATION.items()
        }
        self._system.vcpu_count = float(len(usage_data))
        self._system.vcpu_ratio = ratio

    def _memory_info(self, group: Mapping[str, Any], _state: _Runtime | None) -> None:
        names = [f"{what}_{stat}" for what in ("memory", "swap") for stat in ("total_bytes", "used_bytes")]
        self._system.memory = {name: _num(group.get(name), name) for name in names}

    # ------------------------------------------------------------------ output
    def describe(self) -> Iterator[Metric]:
        """No fixed description: families depend on the reports seen (the registry then calls collect)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Metric families for the latest state (thread-safe; called by the HTTP server on each scrape)."""
        with self._lock:
            families = self._families()
        yield from families

    def _families(self) -> list[Metric]:
        if self._instance is None:
            return []
        base = dict(self._instance)
        names = list(INSTANCE_LABELS)
        rt_names = [*names, "runtime_tag"]
        out: list[Metric] = []

        def gauge(name: str, doc: str, labels: Sequence[str]) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            out.append(family)
            return family

        def counter(name: str, doc: str, labels: Sequence[str]) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=list(labels))
            out.append(family)
            return family

        def values(extra: Sequence[str]) -> list[str]:
            return [base[n] for n in names] + list(extra)

        runtimes = sorted(self._runtimes.items())
        if any(rt.errors for _, rt in runtimes):
            family_e = counter("execution_errors_total", "Execution errors total", [*rt_names, "error_type"])
            for tag, rt in runtimes:
                for kind, c in rt.errors.items():
                    family_e.add_metric(values([tag, kind]), c.value, created=c.created)
        if any(rt.status for _, rt in runtimes):
            family_s = counter("execution_status_total", "Execution status total", [*rt_names, "status_type"])
            for tag, rt in runtimes:
                for kind, c in rt.status.items():
                    family_s.add_metric(values([tag, kind]), c.value, created=c.created)
        if any(rt.latency for _, rt in runtimes):
            family = gauge("execution_latency_seconds", "Execution latency in seconds", [*rt_names, "percentile"])
            for tag, rt in runtimes:
                for percentile, value in rt.latency.items():
                    family.add_metric(values([tag, percentile]), value)
        if any(rt.used_bytes for _, rt in runtimes):
            family = gauge("neuron_runtime_memory_used_bytes", "Runtime memory used bytes",
                           [*rt_names, "memory_location"])
            for tag, rt in runtimes:
                for location, value in rt.used_bytes.items():
                    family.add_metric(values([tag, location]), value)
        if any(rt.core_memory for _, rt in runtimes):
            for kind in _report_kinds()[0]:
                family = gauge(f"neuroncore_memory_usage_{kind}", f"NeuronCore memory utilization for {kind}",
                               [*rt_names, "memory_location", "neuroncore"])
                for tag, rt in runtimes:
                    for nc, usage in rt.core_memory.items():
                        family.add_metric(values([tag, "None", nc]), usage[kind])
        if any(rt.vcpu for _, rt in runtimes):
            family = gauge("neuron_runtime_vcpu_usage_ratio", "Runtime vCPU utilization ratio",
                           [*rt_names, "usage_type"])
            for tag, rt in runtimes:
                for kind, value in rt.vcpu.items():
                    family.add_metric(values([tag, kind]), value)
        if any(rt.utilization for _, rt in runtimes):
            family = gauge("neuroncore_utilization_ratio", "NeuronCore utilization ratio", [*rt_names, "neuroncore"])
            for tag, rt in runtimes:
                for nc, value in rt.utilization.items():
                    family.add_metric(values([tag, nc]), value)
        system = self._system
        for name, value in system.memory.items():
            what, _, stat = name.partition("_")
            gauge(f"system_{name}", f"System {what} {stat} bytes", names).add_metric(values([]), value)
        if system.ecc:
            family_c = counter("hardware_ecc_events_total", "Hardware ecc events total",
                               [*names, "event_type", "neuron_device_index"])
            for (event, device), c in sorted(system.ecc.items(), key=lambda kv: (int(kv[0][1]), kv[0][0])):
                family_c.add_metric(values([event, device]), c.value, created=c.created)
        if system.vcpu_count is not None:
            gauge("system_vcpu_count", "System vCPU count", names).add_metric(values([]), system.vcpu_count)
            family = gauge("system_vcpu_usage_ratio", "System CPU utilization ratio", [*names, "usage_type"])
            for kind, value in system.vcpu_ratio.items():
                family.add_metric(values([kind]), value)
        out.append(InfoMetricFamily("instance", "EC2 instance information", value=base))
        if self._hardware is not None:
            out.append(InfoMetricFamily("neuron_hardware", "Neuron Hardware Information",
                                        value={**self._hardware, **base}))
        return out


_RUNTIME_HANDLERS = {
    "neuroncore_counters": NeuronMonitorCollector._neuroncore_counters,
    "memory_used": NeuronMonitorCollector._memory_used,
    "neuron_runtime_vcpu_usage": NeuronMonitorCollector._neuron_runtime_vcpu_usage,
    "execution_stats": NeuronMonitorCollector._execution_stats,
}
_SYSTEM_HANDLERS = {
    "neuron_hw_counters": NeuronMonitorCollector._neuron_hw_counters,
    "vcpu_usage": NeuronMonitorCollector._vcpu_usage,
    "memory_info": NeuronMonitorCollector._memory_info,
}


def make_registry(collector: NeuronMonitorCollector, process_metrics: bool = True) -> CollectorRegistry:
    """A registry with ``collector`` (and, like the real script's default registry, process/GC/platform info)."""
    registry = CollectorRegistry(auto_describe=False)
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    registry.register(collector)
    return registry


def serve(collector: NeuronMonitorCollector, lines: TextIO, errors: TextIO,
          stop: threading.Event | None = None) -> int:
    """Feed ``lines`` into ``collector`` until end of input or ``stop``; returns how many lines were skipped."""
    skipped = 0
    for number, line in enumerate(lines, start=1):
        if stop is not None and stop.is_set():
            break
        if not line.strip():
            continue
        try:
            problems = collector.update_line(line)
        except ReportError as exc:
            skipped += 1
            problems = [f"skipping line {number}: {exc}"]
        for problem in problems:
            print(f"{PROG}: {_cli.printable(problem)}", file=errors, flush=True)
    return skipped


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: the real script's ``-p/--port`` plus ``--host``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve neuron-monitor's JSON reports (read on stdin) as Prometheus metrics.",
    )
    parser.add_argument("-p", "--port", type=_cli.bounded_int("a port", 0, 65535), default=8000,
                        help="HTTP port on which to run the server (default 8000; 0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; the real script binds every interface)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuron-monitor-prometheus`` console script."""
    args = build_parser().parse_args(argv)
    collector = NeuronMonitorCollector()
    try:
        server, thread = start_http_server(args.port, addr=args.host, registry=make_registry(collector))
    except OSError as exc:
        return _cli.error(PROG, f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    port = server.server_address[1]
    if not _cli.write_output(f"Running HTTP prometheus server at port {port}\n"):
        return 0
    try:
        with _cli.interrupt_on_signals():
            serve(collector, sys.stdin, sys.stderr)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return 0

if __name__ == "__main__":
    sys.exit(main())
