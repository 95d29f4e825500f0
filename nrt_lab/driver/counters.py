"""Machine-level counters that outlive processes: sysfs status totals "since driver load" and ECC counters.

The real driver keeps these in kernel memory: a process's counters are added to the device's totals, they
survive the process (however it ends) and vanish when the module is reloaded. Here they live in
``<root>/counters.bin``, a fixed-layout file of little-endian 64-bit words (a header naming the instance id, one
block per physical NeuronCore, one per device) updated **in place** under an exclusive flock on
``locks/counters.lock``: a close reads and writes only the blocks of its own cores (one ``pread`` and one
``pwrite``), so its cost does not grow with the machine's history. Readers take the lock shared to see the
accumulator and the pages it was folded from as one consistent state:

* a runtime *folds* its stats page into the accumulator when it closes (``fold_stats_page``, called from
  ``close``) and ``remove_stale_records`` folds the page a dead process left behind (a page survives SIGKILL);
  the page is deleted inside the same critical section, so a reader never counts it twice;
* injected hardware faults add to the per-device ECC counters (``add_hardware_events``);
* ``reset_counters`` (driver reload) deletes the file (a header for another instance id reads as zeros).

Counters are kept per **physical** NeuronCore (a logical core at LNC ``L`` is charged to its first physical
core ``c*L``), so processes running at different LNCs on trn2 add up and any logical view can be derived.
The file records the instance id: re-provisioning (a new instance id) starts from zero with nothing deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nrt_lab.driver.state import (
    StateError,
    open_state_file,
    read_machine,
    read_state_bytes,
    read_state_json,
    unlink_state_file,
)
from nrt_lab.driver.stats import (
    DEVICE_MEMORY_KINDS,
    HOST_MEMORY_KINDS,
    MAX_PHYSICAL_CORES,
    SYSFS_STATUS_KINDS,
    read_page_totals,
)

__all__ = [
    "HARDWARE_COUNTERS",
    "CORE_VALUES",
    "MAX_DEVICES",
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
MAX_DEVICES = 64  # the most devices an instance has

_FILE = "counters.bin"
_LEGACY_FILE = "counters.json"  # the JSON accumulator of earlier versions: removed on reset
_MAGIC = 0x4E52_5443_4E54_5231  # "NRTCNTR1"
_VERSION = 1
_HEADER_WORDS = 16  # magic, version, id length, instance id (up to 64 bytes), reserved
_ID_BYTES = 64
_STATUS_AT = 0
_VALUES_AT = _STATUS_AT + len(SYSFS_STATUS_KINDS)
_PEAK_AT = _VALUES_AT + len(CORE_VALUES)
_CORE_WORDS = _PEAK_AT + len(DEVICE_MEMORY_KINDS)
_HW_AT = 0
_HOST_AT = len(HARDWARE_COUNTERS)
_DEVICE_WORDS = _HOST_AT + len(HOST_MEMORY_KINDS)
_CORES_AT = _HEADER_WORDS
_DEVICES_AT = _CORES_AT + MAX_PHYSICAL_CORES * _CORE_WORDS
_TOTAL_WORDS = _DEVICES_AT + MAX_DEVICES * _DEVICE_WORDS
_FILE_BYTES = _TOTAL_WORDS * 8


@dataclass
class CoreTotals:
    """Accumulated counters of one physical NeuronCore."""

    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SYSFS_STATUS_KINDS, 0))
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CORE_VALUES, 0))
    memory_peak: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DEVICE_MEMORY_KINDS, 0))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able form (for reports and debugging)."""
        return {"status": self.status, "values": self.values, "memory_peak": self.memory_peak}


@dataclass
class MachineCounters:
    """Everything in the counters file, for one instance id (empty for another machine)."""

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
        """Plain JSON-able form (object keys are strings), for reports and debugging."""
        return {
            "instance_id": self.instance_id,
            "cores": {str(k): v.to_json() for k, v in sorted(self.cores.items())},
            "hardware": {str(k): v for k, v in sorted(self.hardware.items())},
            "host_memory_peak": {str(k): v for k, v in sorted(self.host_memory_peak.items())},
        }


def _header(instance_id: str) -> bytes:
    raw = instance_id.encode("utf-8")[:_ID_BYTES]
    words = np.zeros(_HEADER_WORDS, dtype="<u8")
    words[0], words[1], words[2] = _MAGIC, _VERSION, len(raw)
    buffer = bytearray(words.tobytes())
    buffer[24 : 24 + len(raw)] = raw
    return bytes(buffer)


def _parse(data: bytes | None, instance_id: str) -> MachineCounters:
    """The counters in a file's bytes (zeros when absent, malformed or another machine's)."""
    counters = MachineCounters(instance_id)
    if data is None or len(data) != _FILE_BYTES or data[: _HEADER_WORDS * 8] != _header(instance_id):
        return counters
    words: np.ndarray[Any, Any] = np.frombuffer(data, dtype="<u8")
    cores = words[_CORES_AT:_DEVICES_AT].reshape(MAX_PHYSICAL_CORES, _CORE_WORDS)
    for physical in np.flatnonzero(cores.any(axis=1)).tolist():
        block = cores[physical].tolist()
        counters.cores[physical] = CoreTotals(
            status=dict(zip(SYSFS_STATUS_KINDS, block[_STATUS_AT:_VALUES_AT], strict=True)),
            values=dict(zip(CORE_VALUES, block[_VALUES_AT:_PEAK_AT], strict=True)),
            memory_peak=dict(zip(DEVICE_MEMORY_KINDS, block[_PEAK_AT:_CORE_WORDS], strict=True)),
        )
    devices = words[_DEVICES_AT:_TOTAL_WORDS].reshape(MAX_DEVICES, _DEVICE_WORDS)
    for device in np.flatnonzero(devices.any(axis=1)).tolist():
        block = devices[device].tolist()
        hardware = block[_HW_AT:_HOST_AT]
        host = block[_HOST_AT:_DEVICE_WORDS]
        if any(hardware):
            counters.hardware[device] = dict(zip(HARDWARE_COUNTERS, hardware, strict=True))
        if any(host):
            counters.host_memory_peak[device] = dict(zip(HOST_MEMORY_KINDS, host, strict=True))
    return counters


@contextlib.contextmanager
def counters_lock(root: Path, shared: bool = False) -> Iterator[None]:
    """Hold ``locks/counters.lock``: exclusive to update the counters, shared to read them consistently."""
    fd = open_state_file(root / "locks" / "counters.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_counters(root: Path, instance_id: str) -> MachineCounters:
    """The accumulated counters of machine ``instance_id`` (zero when absent, unreadable or another machine's)."""
    try:
        data = read_state_bytes(root / _FILE, "counters file", _FILE_BYTES)
    except StateError:
        data = None
    return _parse(data, instance_id)


class _Store:
    """The counters file opened for an in-place update (caller holds the exclusive counters lock)."""

    def __init__(self, root: Path, instance_id: str) -> None:
        self.fd = open_state_file(root / _FILE, os.O_RDWR | os.O_CREAT)
        header = _header(instance_id)
        if os.fstat(self.fd).st_size != _FILE_BYTES or os.pread(self.fd, len(header), 0) != header:
            # Absent, torn, or another machine's: start from zero for this instance.
            os.ftruncate(self.fd, 0)
            os.ftruncate(self.fd, _FILE_BYTES)
            os.pwrite(self.fd, header, 0)

    def read_array(self, first_word: int, count: int) -> np.ndarray[Any, Any]:
        """``count`` words from ``first_word`` as a writable uint64 array."""
        data = os.pread(self.fd, count * 8, first_word * 8)
        words: np.ndarray[Any, Any] = np.frombuffer(data, dtype="<u8").copy()
        return words

    def write_array(self, first_word: int, words: np.ndarray[Any, Any]) -> None:
        """Store an array of words from ``first_word`` in one write."""
        os.pwrite(self.fd, np.ascontiguousarray(words, dtype="<u8").tobytes(), first_word * 8)

    def close(self) -> None:
        """Close the file."""
        os.close(self.fd)


@contextlib.contextmanager
def _store(root: Path, instance_id: str) -> Iterator[_Store]:
    with counters_lock(root):
        store = _Store(root, instance_id)
        try:
            yield store
        finally:
            store.close()


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
    if not 0 <= device < MAX_DEVICES:
        raise ValueError(f"Neuron device {device} does not exist; accepted: 0 to {MAX_DEVICES - 1}")
    with _store(root, instance_id) as store:
        at = _DEVICES_AT + device * _DEVICE_WORDS + _HW_AT
        block = store.read_array(at, len(HARDWARE_COUNTERS))
        for name in counters:
            block[HARDWARE_COUNTERS.index(name)] += np.uint64(1)
        store.write_array(at, block)


def add_core_values(root: Path, instance_id: str, physical_cores: Sequence[int], values: Mapping[str, int]) -> None:
    """Add ``values`` (names of CORE_VALUES) to each of ``physical_cores`` (e.g. a reset request per core)."""
    unknown = [name for name in values if name not in CORE_VALUES]
    if unknown:
        raise ValueError(f"unknown core values {unknown}; accepted: {', '.join(CORE_VALUES)}")
    cores = np.array(sorted({c for c in physical_cores if 0 <= c < MAX_PHYSICAL_CORES}), dtype=np.int64)
    if not cores.size:
        return
    with _store(root, instance_id) as store:
        first = int(cores[0])
        at = _CORES_AT + first * _CORE_WORDS
        blocks = store.read_array(at, (int(cores[-1]) - first + 1) * _CORE_WORDS).reshape(-1, _CORE_WORDS)
        for name, delta in values.items():
            blocks[cores - first, _VALUES_AT + CORE_VALUES.index(name)] += np.uint64(max(int(delta), 0))
        store.write_array(at, blocks)


def page_lnc(stats_path: Path) -> int | None:
    """The LNC recorded in the owner record beside a stats page (None if unknown)."""
    try:
        data = read_state_json(stats_path.with_suffix(".json"), "owner record", limit=64 << 10)
    except StateError:
        return None
    lnc = data.get("lnc") if data is not None else None
    return lnc if isinstance(lnc, int) and lnc in (1, 2) else None


def fold_stats_page(root: Path, stats_path: Path, lnc: int | None = None, *, instance_id: str | None = None,
                    per_device: int | None = None) -> bool:
    """Add a runtime's stats page to the machine's totals and delete the page; False when nothing was folded.

    ``lnc`` is the LNC the runtime ran with (default: its owner record's, else 1); ``instance_id`` and
    ``per_device`` (physical cores per device) spare reading machine.json when the caller knows them. Only the
    blocks of the page's cores are read and written. Never raises for an unreadable page or machine: counters
    are bookkeeping, never a reason for close or cleanup to fail.
    """
    if instance_id is None or per_device is None:
        machine = _current_instance(root)
        if machine is None:
            return False
        instance_id, per_device = machine
    lnc = lnc or page_lnc(stats_path) or 1
    try:
        with counters_lock(root):
            page = read_page_totals(stats_path)
            if page is None:
                return False
            physical = page.cores * lnc
            keep = physical < MAX_PHYSICAL_CORES
            store = _Store(root, instance_id)
            try:
                if keep.any():
                    first, last = int(physical[keep].min()), int(physical[keep].max())
                    at = _CORES_AT + first * _CORE_WORDS
                    blocks = store.read_array(at, (last - first + 1) * _CORE_WORDS).reshape(-1, _CORE_WORDS)
                    rows = physical[keep] - first
                    status = _STATUS_AT + np.arange(len(SYSFS_STATUS_KINDS))
                    blocks[np.ix_(rows, status)] += page.status[keep].astype(np.uint64)
                    values = _VALUES_AT
                    for name, column in (("flop_count", page.flops), ("inference_count", page.inferences),
                                         ("model_load_count", page.model_loads),
                                         ("nc_time_in_use", page.busy_ns // 1000)):
                        blocks[rows, values + CORE_VALUES.index(name)] += column[keep].astype(np.uint64)
                    peak = _PEAK_AT + np.arange(len(DEVICE_MEMORY_KINDS))
                    blocks[np.ix_(rows, peak)] = np.maximum(blocks[np.ix_(rows, peak)],
                                                            page.memory_peak[keep].astype(np.uint64))
                    store.write_array(at, blocks)
                    device = int(physical[0]) // max(per_device, 1)
                    if 0 <= device < MAX_DEVICES and page.host_memory_peak.any():
                        host_at = _DEVICES_AT + device * _DEVICE_WORDS + _HOST_AT
                        host = store.read_array(host_at, len(HOST_MEMORY_KINDS))
                        store.write_array(host_at, np.maximum(host, page.host_memory_peak.astype(np.uint64)))
            finally:
                store.close()
            unlink_state_file(stats_path)
            return True
    except (OSError, StateError):
        return False


def reset_counters(root: Path) -> None:
    """Forget every accumulated counter (the driver module was reloaded)."""
    with counters_lock(root):
        unlink_state_file(root / _FILE)
        unlink_state_file(root / _LEGACY_FILE)
