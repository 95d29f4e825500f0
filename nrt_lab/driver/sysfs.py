"""The driver's sysfs tree (docs/behaviour.md §7) for the emulated machine: ``/sys/devices/virtual/neuron_device/neuron<N>/``.

The tree is a pure function of the instance and its counters (:func:`sysfs_tree`), so it can be checked
without processes; :func:`read_sysfs` builds it for the live machine. Paths are relative to
``/sys/devices/virtual/neuron_device`` (``neuron0/neuron_core1/stats/status/success/total``).

What the values mean here:

* **Status counters** (``neuron_core<i>/stats/status/<name>/{total,present}``): ``total`` counts since the
  driver was loaded: the live runtimes' stats pages, plus the machine accumulator into which a runtime's
  page is folded when it closes or when ``remove_stale_records`` finds it dead (see
  :mod:`nrt_lab.driver.counters`), plus pages of dead processes not folded yet. ``present`` is the part the
  running processes contributed (the documentation: "last change"; the runtime posts its counts while it runs), so it
  drops to 0 when they exit while ``total`` stays. ``nrt-lab driver reload`` resets everything.
  With a loaded driver ≥ 2.24 the last three names are ``execute_*`` instead of ``infer_*`` (docs/behaviour.md §7);
  the ``hw_*_error``/``execute_sw_*`` counters that driver adds are not emulated (their names are not public).
* **Memory** (``{total,present,peak}``): ``total`` = bytes in use now, ``present`` = the same (the stats
  page keeps no last delta), ``peak`` = maximum since driver load. Categories libnrt does not account
  (collectives, dma_rings, ...) read 0. Host memory is charged to the device of the runtime's first core.
* ``stats/hardware/*`` and ``other_info/*`` are plain values. ECC counters come from injected faults.
* ``stats/power/utilization`` = ``POWER_STATUS_VALID,<epoch>,<min>,<max>,<avg>`` (percent of max power,
  2 decimals, epoch on a minute boundary). *(inf)* Power = 0.50 % idle + 24.5 % × utilization, over the
  device's cores (utilization = busy time over each live runtime's lifetime): ~0.5 idle, ~25 at full load,
  as public readings show.
* Cores are the machine's logical NeuronCores (its LNC, as ``neuron-ls`` numbers them); counters of a
  runtime running at another LNC are mapped through physical cores.
* ``info/serial_number`` is 16 hex digits derived from the instance id (stable per machine); the kernel's
  ``NEURON_HW_ERR=`` lines print the same serial.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrt_lab.driver.counters import HARDWARE_COUNTERS, MachineCounters, counters_lock, page_lnc, read_counters
from nrt_lab.driver.locks import owner_is_live
from nrt_lab.driver.machine import Machine
from nrt_lab.driver.package import DriverVersion, parse_driver_version
from nrt_lab.driver.state import StateError, ensure_root, list_state_dir
from nrt_lab.driver.stats import (
    DEVICE_MEMORY_KINDS,
    HOST_MEMORY_KINDS,
    SYSFS_STATUS_KINDS,
    StatsSnapshot,
    read_stats,
)
from nrt_lab.hardware import InstanceSpec

__all__ = [
    "SYSFS_ROOT",
    "SYSFS_DEVICE_MEMORY",
    "SYSFS_HOST_MEMORY",
    "SYSFS_HARDWARE",
    "OTHER_INFO",
    "SysfsPathError",
    "CoreView",
    "DeviceView",
    "SysfsCounters",
    "serial_number",
    "status_counter_names",
    "collect_counters",
    "sysfs_tree",
    "read_sysfs",
    "lookup",
    "flatten",
    "normalize_path",
]

SYSFS_ROOT = "/sys/devices/virtual/neuron_device"
SYSFS_DEVICE_MEMORY = ("collectives", "constants", "dma_rings", "driver_memory", "model_code",
                       "model_shared_scratchpad", "nonshared_scratchpad", "notifications", "runtime_memory",
                       "tensors", "uncategorized")
SYSFS_HOST_MEMORY = ("application_memory", "constants", "dma_buffers", "dma_rings", "driver_memory",
                     "notifications", "tensors", "uncategorized")
SYSFS_HARDWARE = ("mem_ecc_uncorrected", "mem_ecc_repairable_uncorrected", "sram_ecc_uncorrected")
OTHER_INFO = ("flop_count", "inference_count", "model_load_count", "reset_fail_count", "reset_req_count",
              "nc_time_in_use")
_RENAMED_IN_2_24 = {"infer_completed_with_error": "execute_completed_with_error",
                    "infer_completed_with_num_error": "execute_completed_with_num_error",
                    "infer_failed_to_queue": "execute_failed_to_queue"}
_DRIVER_2_24 = parse_driver_version("2.24")
_IDLE_POWER, _LOAD_POWER = 0.5, 24.5

Leaf = int | str
Memory = tuple[int, int, int]  # total, present, peak


class SysfsPathError(ValueError):
    """A sysfs path that does not exist; the message lists what does."""


@dataclass(frozen=True)
class CoreView:
    """One logical NeuronCore's counters as sysfs shows them."""

    status_total: Mapping[str, int]
    status_present: Mapping[str, int]
    other_info: Mapping[str, int]
    memory: Mapping[str, Memory]  # stats-page kind -> (total, present, peak)


@dataclass(frozen=True)
class DeviceView:
    """One device's counters."""

    hardware: Mapping[str, int]
    host_memory: Mapping[str, Memory]
    power: tuple[str, int, float, float, float]  # status, epoch, min %, max %, avg %


@dataclass(frozen=True)
class SysfsCounters:
    """The counters the tree is built from, per machine-view logical core and per device."""

    cores: Mapping[int, CoreView]
    devices: Mapping[int, DeviceView]


def serial_number(instance_id: str, device: int) -> str:
    """The device's serial number: 16 hex digits, stable for one machine (instance id)."""
    return hashlib.sha256(f"{instance_id}/nd{device}".encode()).hexdigest()[:16]


def status_counter_names(driver_version: DriverVersion | None) -> dict[str, str]:
    """Stats-page status name -> the sysfs directory name under ``driver_version`` (2.24 renames three)."""
    renamed = driver_version is not None and driver_version >= _DRIVER_2_24
    return {name: (_RENAMED_IN_2_24.get(name, name) if renamed else name) for name in SYSFS_STATUS_KINDS}


def _zero_core() -> dict[str, Any]:
    return {"status": dict.fromkeys(SYSFS_STATUS_KINDS, 0), "present": dict.fromkeys(SYSFS_STATUS_KINDS, 0),
            "other": dict.fromkeys(OTHER_INFO, 0), "memory": dict.fromkeys(DEVICE_MEMORY_KINDS, 0),
            "peak": dict.fromkeys(DEVICE_MEMORY_KINDS, 0), "busy": 0.0}


def collect_counters(instance: InstanceSpec, accumulated: MachineCounters,
                     live: Sequence[tuple[StatsSnapshot, int]], dead: Sequence[tuple[StatsSnapshot, int]],
                     now: float | None = None) -> SysfsCounters:
    """Combine the accumulator with live pages (``(snapshot, lnc)``) and unfolded dead pages, per machine core."""
    now = time.time() if now is None else now
    lnc = instance.lnc
    per_device = instance.physical_cores_per_device
    cores = {core: _zero_core() for core in range(instance.total_cores)}
    host = {dev.index: {"total": dict.fromkeys(HOST_MEMORY_KINDS, 0), "peak": dict.fromkeys(HOST_MEMORY_KINDS, 0)}
            for dev in instance.devices}

    def view_of(physical: int) -> dict[str, Any] | None:
        return cores.get(physical // lnc)

    for physical, totals in accumulated.cores.items():
        view = view_of(physical)
        if view is None:
            continue
        for name, value in totals.status.items():
            view["status"][name] += value
        for name, value in totals.values.items():
            view["other"][name] += value
        for kind, value in totals.memory_peak.items():
            view["peak"][kind] = max(view["peak"][kind], value)
    for device, peaks in accumulated.host_memory_peak.items():
        if device in host:
            for kind, value in peaks.items():
                host[device]["peak"][kind] = max(host[device]["peak"][kind], value)

    for pages, is_live in ((live, True), (dead, False)):
        for snapshot, page_lnc_value in pages:
            first_device = None
            for core in snapshot.cores:
                physical = core.core * page_lnc_value
                view = view_of(physical)
                if view is None:
                    continue
                if first_device is None:
                    first_device = physical // per_device
                for name, value in core.status.items():
                    view["status"][name] += value
                    if is_live:
                        view["present"][name] += value
                other = view["other"]
                other["flop_count"] += core.flops
                other["inference_count"] += core.inferences
                other["model_load_count"] += core.model_loads
                busy_ns = core.busy_ns
                if is_live and core.running_since_ns:
                    busy_ns += max(0, snapshot.taken_ns - core.running_since_ns)
                other["nc_time_in_use"] += busy_ns // 1000
                for kind, peak in core.memory_peak.items():
                    view["peak"][kind] = max(view["peak"][kind], peak)
                if is_live:
                    for kind, value in core.memory.items():
                        view["memory"][kind] += value
                    utilization = min(1.0, busy_ns / 1e9 / max(now - snapshot.created, 1e-9))
                    for covered in range(physical, physical + page_lnc_value):  # each physical core it ran on
                        target = view_of(covered)
                        if target is not None:
                            target["busy"] += utilization / lnc
            if first_device is not None and first_device in host:
                for kind, peak in snapshot.host_memory_peak.items():
                    host[first_device]["peak"][kind] = max(host[first_device]["peak"][kind], peak)
                if is_live:
                    for kind, value in snapshot.host_memory.items():
                        host[first_device]["total"][kind] += value

    core_views: dict[int, CoreView] = {}
    for core_id, view in cores.items():
        memory = {kind: (view["memory"][kind], view["memory"][kind], max(view["peak"][kind], view["memory"][kind]))
                  for kind in DEVICE_MEMORY_KINDS}
        core_views[core_id] = CoreView(status_total=view["status"], status_present=view["present"],
                                    other_info=view["other"], memory=memory)
    epoch = int(now // 60 * 60)
    device_views: dict[int, DeviceView] = {}
    for dev in instance.devices:
        utils = [min(1.0, cores[c]["busy"]) for c in dev.cores]
        powers = [_IDLE_POWER + _LOAD_POWER * u for u in utils] or [_IDLE_POWER]
        hardware = accumulated.hardware.get(dev.index, dict.fromkeys(HARDWARE_COUNTERS, 0))
        host_mem = {kind: (host[dev.index]["total"][kind], host[dev.index]["total"][kind],
                           max(host[dev.index]["peak"][kind], host[dev.index]["total"][kind]))
                    for kind in HOST_MEMORY_KINDS}
        device_views[dev.index] = DeviceView(
            hardware=dict(hardware), host_memory=host_mem,
            power=("POWER_STATUS_VALID", epoch, min(powers), max(powers), sum(powers) / len(powers)),
        )
    return SysfsCounters(cores=core_views, devices=device_views)


def _memory_dir(values: Mapping[str, Memory], names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        total, present, peak = values.get(name, (0, 0, 0))
        out[name] = {"total": total, "present": present, "peak": peak}
    return out


def sysfs_tree(instance: InstanceSpec, counters: SysfsCounters, *, instance_id: str,
               driver_version: DriverVersion | None = None) -> dict[str, Any]:
    """The whole ``/sys/devices/virtual/neuron_device`` tree as nested dicts (leaves are int or str)."""
    core_arch, device_arch, instance_type, device_name = instance.sysfs_arch
    names = status_counter_names(driver_version)
    tree: dict[str, Any] = {}
    for dev in instance.devices:
        device_counters = counters.devices.get(dev.index)
        node: dict[str, Any] = {
            "connected_devices": ", ".join(str(d) for d in dev.connected_to),
            "core_count": dev.core_count,
            "info": {
                "architecture": {"arch_type": device_arch, "device_name": device_name,
                                 "instance_type": instance_type},
                "notify_delay": -1,
                "serial_number": serial_number(instance_id, dev.index),
            },
        }
        for local, core in enumerate(dev.cores):
            view = counters.cores.get(core)
            status = {
                names[name]: {"total": view.status_total.get(name, 0) if view else 0,
                              "present": view.status_present.get(name, 0) if view else 0}
                for name in SYSFS_STATUS_KINDS
            }
            node[f"neuron_core{local}"] = {
                "info": {"architecture": {"arch_type": core_arch}},
                "stats": {
                    "memory_usage": {"device_mem": _memory_dir(view.memory if view else {}, SYSFS_DEVICE_MEMORY)},
                    "other_info": {name: (view.other_info.get(name, 0) if view else 0) for name in OTHER_INFO},
                    "status": status,
                },
            }
        hardware = device_counters.hardware if device_counters else {}
        power = device_counters.power if device_counters else ("POWER_STATUS_NO_DATA", 0, 0.0, 0.0, 0.0)
        node["stats"] = {
            "hardware": {name: int(hardware.get(name, 0)) for name in SYSFS_HARDWARE},
            "memory_usage": {"host_mem": _memory_dir(device_counters.host_memory if device_counters else {},
                                                     SYSFS_HOST_MEMORY)},
            "power": {"utilization": f"{power[0]},{power[1]},{power[2]:.2f},{power[3]:.2f},{power[4]:.2f}"},
        }
        tree[f"neuron{dev.index}"] = node
    return tree


def _pages(root: Path, default_lnc: int) -> tuple[list[tuple[StatsSnapshot, int]], list[tuple[StatsSnapshot, int]]]:
    live: list[tuple[StatsSnapshot, int]] = []
    dead: list[tuple[StatsSnapshot, int]] = []
    procs = root / "procs"
    for name in sorted(list_state_dir(procs)):
        if not name.endswith(".stats") or name.startswith("."):
            continue
        path = procs / name
        snapshot = read_stats(path)
        if snapshot is None:
            continue
        entry = (snapshot, page_lnc(path) or default_lnc)
        (live if owner_is_live(path) else dead).append(entry)
    return live, dead


def read_sysfs(root: Path) -> dict[str, Any]:
    """The sysfs tree of the machine at ``root``; StateError when the neuron module is not loaded."""
    machine = Machine(ensure_root(root))
    state = machine.state()
    driver = machine.driver()
    if driver is None or driver.loaded is None:
        raise StateError(f"{SYSFS_ROOT} does not exist: the neuron module is not loaded "
                         "(install it with: nrt-lab driver install)")
    instance = state.instance
    with counters_lock(machine.root, shared=True):
        accumulated = read_counters(machine.root, state.instance_id)
        live, dead = _pages(machine.root, instance.lnc)
    counters = collect_counters(instance, accumulated, live, dead)
    return sysfs_tree(instance, counters, instance_id=state.instance_id, driver_version=driver.loaded)


def normalize_path(path: str) -> list[str]:
    """Split a sysfs path (relative, or absolute under SYSFS_ROOT) into its components."""
    text = path.strip()
    if text.startswith(SYSFS_ROOT):
        text = text[len(SYSFS_ROOT):]
    return [part for part in text.split("/") if part not in ("", ".")]


def lookup(tree: Mapping[str, Any], path: str) -> Any:
    """The file value or the directory (dict) at ``path``; SysfsPathError naming the entries that exist."""
    node: Any = tree
    walked: list[str] = []
    for part in normalize_path(path):
        if not isinstance(node, Mapping) or part not in node:
            where = "/".join(walked) or "."
            if isinstance(node, Mapping):
                entries = ", ".join(node) or "none"
                detail = f"entries of {where}: {entries}"
            else:
                detail = f"{where} is a file"
            raise SysfsPathError(
                f"no such sysfs entry: {path!r} ({'/'.join([*walked, part])} does not exist); {detail}; "
                f"top-level entries: {', '.join(tree)}"
            )
        node = node[part]
        walked.append(part)
    return node


def flatten(node: Any, prefix: str = "") -> list[tuple[str, Leaf]]:
    """Every file under ``node`` as ``(path, value)``, paths joined with ``/`` after ``prefix``."""
    if not isinstance(node, Mapping):
        return [(prefix, node)]
    out: list[tuple[str, Leaf]] = []
    for name, child in node.items():
        out.extend(flatten(child, f"{prefix}/{name}" if prefix else name))
    return out
