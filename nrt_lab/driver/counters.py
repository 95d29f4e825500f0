"""Machine-level counters that outlive processes: sysfs status totals "since driver load" and ECC counters.

The real driver keeps these in kernel memory: a process's counters are added to the device's totals, they
survive the process (however it ends) and vanish when the module is reloaded. Here they live in
``<root>/counters.json``, updated under an exclusive flock on ``locks/counters.lock`` (readers take it shared
to see the accumulator and the pages it was folded from as one consistent state):

* a runtime *folds* its stats page into the accumulator when it closes (``fold_stats_page``, called from
  ``close``) and ``remove_stale_records`` folds the page a dead process left behind (a page survives SIGKILL);
  the page is deleted inside the same critical section, so a reader never counts it twice;
* injected hardware faults add to the per-device ECC counters (``add_hardware_events``);
* ``reset_counters`` (driver reload) deletes the file.

Counters are kept per **physical** NeuronCore (a logical core at LNC ``L`` is charged to its first physical
core ``c*L``), so processes running at different LNCs on trn2 add up and any logical view can be derived.
The file records the instance id: re-provisioning (a new instance id) starts from zero with nothing deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrt_lab.driver.state import StateError, atomic_write_json, read_machine
from nrt_lab.driver.stats import DEVICE_MEMORY_KINDS, HOST_MEMORY_KINDS, SYSFS_STATUS_KINDS, read_stats

__all__ = [
    "HARDWARE_COUNTERS",
    "CORE_VALUES",
    "CoreTotals",
    "MachineCounters",
    "counters_lock",
    "read_counters",
    "add_hardware_events",
    "add_core_values",
    "fold_stats_page",
    "page_lnc",
    "reset_counters",
]

# Per-device ECC counters (neuron-monitor ``neuron_hw_counters`` plus sysfs ``stats/hardware``).
HARDWARE_COUNTERS = ("mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_uncorrected", "sram_ecc_corrected",
                     "mem_ecc_repairable_uncorrected")
# Per-core plain values of sysfs ``stats/other_info`` (nc_time_in_use in microseconds).
CORE_VALUES = ("flop_count", "inference_count", "model_load_count", "reset_fail_count", "reset_req_count",
               "nc_time_in_use")

_FILE = "counters.json"
_SCHEMA = 1


@dataclass
class CoreTotals:
    """Accumulated counters of one physical NeuronCore."""

    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SYSFS_STATUS_KINDS, 0))
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CORE_VALUES, 0))
    memory_peak: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DEVICE_MEMORY_KINDS, 0))

    def to_json(self) -> dict[str, Any]:
        """On-disk form."""
        return {"status": self.status, "values": self.values, "memory_peak": self.memory_peak}


@dataclass
class MachineCounters:
    """Everything in counters.json, for one instance id (empty for another machine)."""

    instance_id: str
    cores: dict[int, CoreTotals] = field(default_factory=dict)  # physical core -> totals
    hardware: dict[int, dict[str, int]] = field(default_factory=dict)  # device -> ECC counters
    host_memory_peak: dict[int, dict[str, int]] = field(default_factory=dict)  # device -> host peaks

    def core(self, physical: int) -> CoreTotals:
        """The totals of ``physical`` (created empty)."""
        return self.cores.setdefault(physical, CoreTotals())

    def device_hardware(self, device: int) -> dict[str, int]:
        """The ECC counters of ``device`` (created at zero)."""
        return self.hardware.setdefault(device, dict.fromkeys(HARDWARE_COUNTERS, 0))

    def to_json(self) -> dict[str, Any]:
        """On-disk form (JSON object keys are strings)."""
        return {
            "schema_version": _SCHEMA,
            "instance_id": self.instance_id,
            "cores": {str(k): v.to_json() for k, v in sorted(self.cores.items())},
            "hardware": {str(k): v for k, v in sorted(self.hardware.items())},
            "host_memory_peak": {str(k): v for k, v in sorted(self.host_memory_peak.items())},
        }


def _ints(raw: Any, names: Sequence[str]) -> dict[str, int]:
    if type(raw) is dict and len(raw) == len(names):  # fast path: the file as this module writes it
        try:
            quick = {name: raw[name] for name in names}
        except KeyError:
            pass
        else:
            if all(type(value) is int and value >= 0 for value in quick.values()):
                return quick
    source = raw if isinstance(raw, dict) else {}
    out: dict[str, int] = {}
    for name in names:
        value = source.get(name, 0)
        out[name] = value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
    return out


def _parse(data: Any, instance_id: str) -> MachineCounters:
    counters = MachineCounters(instance_id)
    if not isinstance(data, dict) or data.get("schema_version") != _SCHEMA or data.get("instance_id") != instance_id:
        return counters
    for section, target in (("hardware", counters.hardware), ("host_memory_peak", counters.host_memory_peak)):
        names = HARDWARE_COUNTERS if section == "hardware" else HOST_MEMORY_KINDS
        raw = data.get(section)
        for key, value in (raw.items() if isinstance(raw, dict) else ()):
            if str(key).isascii() and str(key).isdigit():
                target[int(key)] = _ints(value, names)
    cores = data.get("cores")
    for key, value in (cores.items() if isinstance(cores, dict) else ()):
        if str(key).isascii() and str(key).isdigit() and isinstance(value, dict):
            counters.cores[int(key)] = CoreTotals(
                status=_ints(value.get("status"), SYSFS_STATUS_KINDS), values=_ints(value.get("values"), CORE_VALUES),
                memory_peak=_ints(value.get("memory_peak"), DEVICE_MEMORY_KINDS),
            )
    return counters


@contextlib.contextmanager
def counters_lock(root: Path, shared: bool = False) -> Iterator[None]:
    """Hold ``locks/counters.lock``: exclusive to update the counters, shared to read them consistently."""
    fd = os.open(root / "locks" / "counters.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_counters(root: Path, instance_id: str) -> MachineCounters:
    """The accumulated counters of machine ``instance_id`` (zero when absent, unreadable or another machine's)."""
    try:
        data = json.loads((root / _FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    return _parse(data, instance_id)


def _current_instance(root: Path) -> tuple[str, int] | None:
    """(instance id, physical cores per device) of the provisioned machine, or None."""
    try:
        state = read_machine(root)
    except StateError:
        return None
    if state is None:
        return None
    return state.instance_id, state.instance.physical_cores_per_device


def add_hardware_events(root: Path, instance_id: str, device: int, counters: Sequence[str]) -> None:
    """Add one to each of ``counters`` (names of HARDWARE_COUNTERS) of ``device``."""
    unknown = [name for name in counters if name not in HARDWARE_COUNTERS]
    if unknown:
        raise ValueError(f"unknown hardware counters {unknown}; accepted: {', '.join(HARDWARE_COUNTERS)}")
    with counters_lock(root):
        state = read_counters(root, instance_id)
        hardware = state.device_hardware(device)
        for name in counters:
            hardware[name] += 1
        atomic_write_json(root / _FILE, state.to_json())


def add_core_values(root: Path, instance_id: str, physical_cores: Sequence[int], values: Mapping[str, int]) -> None:
    """Add ``values`` (names of CORE_VALUES) to each of ``physical_cores`` (e.g. a reset request per core)."""
    with counters_lock(root):
        state = read_counters(root, instance_id)
        for physical in physical_cores:
            totals = state.core(physical).values
            for name, delta in values.items():
                totals[name] = totals.get(name, 0) + int(delta)
        atomic_write_json(root / _FILE, state.to_json())


def page_lnc(stats_path: Path) -> int | None:
    """The LNC recorded in the owner record beside a stats page (None if unknown)."""
    try:
        data = json.loads(stats_path.with_suffix(".json").read_text(encoding="utf-8"))
        lnc = data.get("lnc") if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
    return lnc if isinstance(lnc, int) and lnc in (1, 2) else None


def fold_stats_page(root: Path, stats_path: Path, lnc: int | None = None) -> bool:
    """Add a runtime's stats page to the machine's totals and delete the page; False when nothing was folded.

    ``lnc`` is the LNC the runtime ran with (default: its owner record's, else 1). Never raises for an
    unreadable page or machine: counters are bookkeeping, never a reason for close or cleanup to fail.
    """
    machine = _current_instance(root)
    if machine is None:
        return False
    instance_id, per_device = machine
    lnc = lnc or page_lnc(stats_path) or 1
    try:
        with counters_lock(root):
            snapshot = read_stats(stats_path)
            if snapshot is None:
                return False
            state = read_counters(root, instance_id)
            for core in snapshot.cores:
                physical = core.core * lnc
                totals = state.core(physical)
                for name, value in core.status.items():
                    totals.status[name] = totals.status.get(name, 0) + value
                values = totals.values
                values["flop_count"] += core.flops
                values["inference_count"] += core.inferences
                values["model_load_count"] += core.model_loads
                values["nc_time_in_use"] += core.busy_ns // 1000
                for kind, peak in core.memory_peak.items():
                    totals.memory_peak[kind] = max(totals.memory_peak.get(kind, 0), peak)
            if snapshot.cores:
                device = snapshot.cores[0].core * lnc // per_device
                host = state.host_memory_peak.setdefault(device, dict.fromkeys(HOST_MEMORY_KINDS, 0))
                for kind, peak in snapshot.host_memory_peak.items():
                    host[kind] = max(host.get(kind, 0), peak)
            atomic_write_json(root / _FILE, state.to_json())
            stats_path.unlink(missing_ok=True)
            return True
    except OSError:
        return False


def reset_counters(root: Path) -> None:
    """Forget every accumulated counter (the driver module was reloaded)."""
    with counters_lock(root):
        (root / _FILE).unlink(missing_ok=True)
