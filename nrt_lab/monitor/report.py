"""neuron-monitor's report, built from snapshots: the JSON groups of docs/behaviour.md §7 as plain dicts.

The tool (``nrt_lab.tools.neuron_monitor``) parses the configuration, schedules the groups and writes the
lines; everything here is a function of a :class:`~nrt_lab.monitor.RuntimeSnapshot` /
:class:`~nrt_lab.monitor.SystemSnapshot` (plus the previous counts, for per-period deltas), so a notebook or
another exporter can build the same report. Field names, nesting and types follow AWS's user guide and real
reports (see the tool's module docstring for the sources and decisions).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from nrt_lab.driver import DriverState, OwnerRecord
from nrt_lab.hardware import InstanceSpec
from nrt_lab.monitor.readers import (
    DEVICE_MEMORY_KINDS,
    ERROR_KINDS,
    HARDWARE_COUNTERS,
    HOST_MEMORY_KINDS,
    OUTCOMES,
)
from nrt_lab.monitor.snapshot import OwnerView, RuntimeSnapshot, SystemSnapshot

__all__ = [
    "EMULATED_PLACEMENT",
    "HW_COUNTER_NAMES",
    "MODEL_MEMORY_KINDS",
    "counter_delta",
    "execution_stats",
    "hardware_counter_deltas",
    "hardware_info",
    "instance_info",
    "machine_info",
    "memory_info",
    "memory_used",
    "neuroncore_counters",
    "read_hardware_counters",
    "runtime_entry",
    "daemon_at",
    "daemon_entry",
    "no_daemon_error",
    "runtime_vcpu_usage",
    "system_vcpu_usage",
]

# The ECC counters neuron-monitor reports (the user guide's four; the driver also keeps
# mem_ecc_repairable_uncorrected, which only sysfs shows).
HW_COUNTER_NAMES = tuple(name for name in HARDWARE_COUNTERS if name != "mem_ecc_repairable_uncorrected")
# Device memory categories attributed to a loaded model's subgraphs.
MODEL_MEMORY_KINDS = ("constants", "model_code", "runtime_memory", "tensors")
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
_DRIVER_MISSING = ("Neuron Driver not found: the aws-neuronx-dkms package is not installed "
                   "(install it with: nrt-lab driver install)")


def counter_delta(now: int, before: int) -> int:
    """Increase of a cumulative counter (a counter that went back, e.g. after a reset, restarts from 0)."""
    return now - before if now >= before else now


def runtime_entry(pid: int, tag: str) -> dict[str, Any]:
    """A ``neuron_runtime_data`` entry without any group yet (``report`` is filled with the due groups)."""
    return {"pid": pid, "address": "", "neuron_runtime_tag": tag, "error": "", "report": {}}


def daemon_entry(address: str, error: str = "") -> dict[str, Any]:
    """The entry of a Runtime 1.x daemon polled at ``address`` (docs/legacy_daemon.md): ``pid`` 0, the address as
    both ``address`` and ``neuron_runtime_tag``, as neuron-monitor 2.x reports a 1.x runtime."""
    return {"pid": 0, "address": address, "neuron_runtime_tag": address, "error": error, "report": {}}


_Owner = TypeVar("_Owner", OwnerRecord, OwnerView)


def daemon_at(owners: Iterable[_Owner], address: str) -> _Owner | None:
    """The live neuron-rtd owner serving ``address`` (the 2.x side knows daemons only by their owner records)."""
    return next((o for o in owners if o.is_daemon and o.extra.get("address") == address), None)


def no_daemon_error(address: str) -> str:
    """What a report says when nothing answers at ``address``."""
    return (f"no Neuron Runtime 1.x daemon (neuron-rtd) answers at {address}; start it (nrt-lab systemctl start "
            "neuron-rtd) or remove this address entry (Runtime 2.x applications are selected by tag_filter)")


def neuroncore_counters(rt: RuntimeSnapshot, view: InstanceSpec) -> dict[str, Any]:
    """``neuroncore_counters``: utilization (percent) and FLOPS per owned core; on trn2 (``v3d``) each core
    also lists its physical cores. A core number the instance does not have (a damaged stats page) is left
    out and named in the group's ``error``."""
    cores: dict[str, Any] = {}
    bad: list[int] = []
    for c in rt.cores:
        if not 0 <= c.core < view.total_cores:
            bad.append(c.core)
            continue
        data: dict[str, Any] = {"neuroncore_utilization": c.utilization, "flops": int(c.flops_per_s)}
        if view.neuroncore_version == "v3d":
            data["v3d"] = {f"nc_v3.{c.core * rt.lnc + k}": {"neuroncore_utilization": c.utilization}
                           for k in range(rt.lnc)}
        cores[str(c.core)] = data
    return {"period": rt.period, "neuroncores_in_use": cores, "error": _bad_cores(bad, view)}


def _bad_cores(cores: Iterable[int], view: InstanceSpec) -> str:
    listed = sorted(set(cores))
    if not listed:
        return ""
    return (f"stats page lists NeuronCore {', '.join(map(str, listed))}, which {view.name} does not have "
            f"(valid: 0-{view.total_cores - 1}); left out")


def _subgraph_name(name: str) -> str:
    match = re.fullmatch(r"sg_?(\d+)", name)
    return f"sg_{int(match[1]):02d}" if match else name


def memory_used(rt: RuntimeSnapshot, view: InstanceSpec | None = None) -> dict[str, Any]:
    """``memory_used``: host and per-core device memory by category, and every loaded model's subgraphs
    (a model's device memory is split evenly over its subgraphs, the remainder on the first)."""
    host = {k: int(rt.host_memory.get(k, 0)) for k in HOST_MEMORY_KINDS}
    bad = [c.core for c in rt.cores if view is not None and not 0 <= c.core < view.total_cores]
    valid = [c for c in rt.cores if c.core not in bad]
    per_core = {str(c.core): {k: int(c.memory.get(k, 0)) for k in DEVICE_MEMORY_KINDS} for c in valid}
    models = []
    for m in rt.models:
        names = m.subgraphs or ("sg00",)
        device = {k: int(m.memory.get(k, 0)) for k in MODEL_MEMORY_KINDS}
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
        "error": "" if view is None else _bad_cores(bad, view),
    }


def runtime_vcpu_usage(rt: RuntimeSnapshot, vcpus: int) -> dict[str, Any]:
    """``neuron_runtime_vcpu_usage``: the process's CPU time in percent of all the host's vCPUs."""
    user = rt.vcpu_user / vcpus if isinstance(rt.vcpu_user, (int, float)) else 0.0
    system = rt.vcpu_system / vcpus if isinstance(rt.vcpu_system, (int, float)) else 0.0
    return {"period": rt.period, "vcpu_usage": {"user": round(user, 2), "system": round(system, 2)}, "error": ""}


def execution_stats(rt: RuntimeSnapshot, before: tuple[Mapping[str, int], Mapping[str, int]] | None
                    ) -> dict[str, Any]:
    """``execution_stats``: outcomes and errors of the period (counts since ``before``, the cumulative
    (execution_summary, error_summary) of the previous sample; None = since the runtime started) and the
    latency percentiles of the executions that ended in the period."""
    base_outcomes, base_errors = before if before is not None else ({}, {})
    return {
        "period": rt.period,
        "error_summary": {k: counter_delta(rt.error_summary.get(k, 0), base_errors.get(k, 0)) for k in ERROR_KINDS},
        "execution_summary": {k: counter_delta(rt.execution_summary.get(k, 0), base_outcomes.get(k, 0))
                              for k in OUTCOMES},
        "latency_stats": {
            "total_latency": dict(rt.total_latency) if rt.total_latency is not None else None,
            "device_latency": dict(rt.device_latency) if rt.device_latency is not None else None,
        },
        "error": "",
    }


def system_vcpu_usage(system: SystemSnapshot, period: float, context_switches: int) -> dict[str, Any]:
    """``vcpu_usage``: average and per-CPU usage (percent, 2 decimals) and the context switches of the period."""
    def rounded(usage: Mapping[str, float]) -> dict[str, float]:
        return {k: round(float(v), 2) for k, v in usage.items()}

    return {
        "period": period,
        "average_usage": rounded(system.average_usage),
        "usage_data": {cpu: rounded(usage) for cpu, usage in system.per_cpu_usage.items()},
        "context_switch_count": context_switches,
        "error": "",
    }


def memory_info(system: SystemSnapshot, period: float) -> dict[str, Any]:
    """``memory_info``: host memory and swap, total and used, in bytes."""
    return {
        "period": period,
        "memory_total_bytes": system.memory_total_bytes,
        "memory_used_bytes": system.memory_used_bytes,
        "swap_total_bytes": system.swap_total_bytes,
        "swap_used_bytes": system.swap_used_bytes,
        "error": "",
    }


def instance_info(instance_type: str, instance_id: str) -> dict[str, Any]:
    """``instance_info``: the machine's type and id with the emulated placement fields."""
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


def hardware_info(instance: InstanceSpec | None) -> dict[str, Any]:
    """``neuron_hardware_info``: device type, counts and sizes (zeros and blanks without a driver)."""
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


class _Identified(Protocol):
    """What the instance groups need: a :class:`MachineState` or a :class:`MachineSnapshot` both have it."""

    @property
    def instance(self) -> InstanceSpec: ...
    @property
    def instance_id(self) -> str: ...


def machine_info(state: _Identified | None, driver: DriverState | None, error: str = "") -> dict[str, Any]:
    """``instance_info`` and ``neuron_hardware_info`` of a report; ``error`` (the machine could not be read)
    fills both groups' error fields."""
    if state is None or error:
        message = error or "cannot read the emulated machine"
        return {"instance_info": {**instance_info("", ""), "error": message},
                "neuron_hardware_info": {**hardware_info(None), "error": message}}
    hardware = hardware_info(state.instance if driver is not None else None)
    if driver is None:
        hardware["error"] = _DRIVER_MISSING
    return {"instance_info": instance_info(state.instance.name, state.instance_id), "neuron_hardware_info": hardware}


def read_hardware_counters(root: Any, device_count: int) -> tuple[list[dict[str, int]], str]:
    """Cumulative ECC counters per device and an error string: zeros, or ``nrt_lab.driver.faults``'s numbers.

    The seam to fault injection: when a module ``nrt_lab.driver.faults`` with a function
    ``hardware_counters(root)`` exists, its result is used; it may return ``{device_index: {counter: count}}``
    or an iterable of dicts carrying ``neuron_device_index``; missing devices and counters count 0, devices
    out of range are ignored. Without that module every counter is 0.
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


def hardware_counter_deltas(current: Iterable[Mapping[str, int]],
                            previous: Iterable[Mapping[str, int]] | None) -> list[dict[str, int]]:
    """Per device, the ECC events since ``previous`` (the cumulative counters of the previous sample)."""
    before = {d["neuron_device_index"]: d for d in previous or []}
    devices = []
    for device in current:
        base = before.get(device["neuron_device_index"], {})
        devices.append({"neuron_device_index": device["neuron_device_index"],
                        **{name: counter_delta(device[name], base.get(name, 0)) for name in HW_COUNTER_NAMES}})
    return devices
