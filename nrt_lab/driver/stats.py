"""Per-process stats pages: fixed-layout shared-memory counters a runtime writes and monitors read.

Each runtime maps ``procs/<pid>.<token>.stats`` (next to its owner record) and updates plain counters on every
load, execution and tensor operation; ``neuron-monitor``, ``neuron-top`` and the widgets map the same file
read-only. A sequence counter (seqlock: odd while writing) lets a reader retry instead of seeing a torn
update, so a reader never blocks the writer and never reports nonsense.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_STATS_CORES",
    "LATENCY_RING",
    "OUTCOMES",
    "ERROR_KINDS",
    "DEVICE_MEMORY_KINDS",
    "HOST_MEMORY_KINDS",
    "SYSFS_STATUS_KINDS",
    "StatsPage",
    "StatsSnapshot",
    "CoreCounters",
    "read_stats",
]

MAX_STATS_CORES = 128
LATENCY_RING = 1024
_MAGIC = 0x5354_5441_5452_4E  # "NRTATS" — identifies a stats page
_VERSION = 1

# neuron-monitor execution_summary keys (SPEC §7.3), in this order.
OUTCOMES = ("completed", "completed_with_err", "completed_with_num_err", "timed_out", "incorrect_input",
            "failed_to_queue")
# neuron-monitor error_summary keys.
ERROR_KINDS = ("generic", "numerical", "transient", "model", "runtime", "hardware")
# neuroncore_memory_usage keys.
DEVICE_MEMORY_KINDS = ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors")
# usage_breakdown.host keys.
HOST_MEMORY_KINDS = ("application_memory", "constants", "dma_buffers", "tensors")
# sysfs neuron_core<i>/stats/status counters (SPEC §7.5).
SYSFS_STATUS_KINDS = ("success", "failure", "timeout", "exec_bad_input", "hw_error", "generic_error",
                      "resource_error", "resource_nc_error", "invalid_error", "unsupported_neff_version",
                      "oob_error", "infer_completed_with_error", "infer_completed_with_num_error",
                      "infer_failed_to_queue")

# The page is an array of little-endian u64 words (a memoryview cast to "Q": ~50 ns per store, which keeps
# the per-execution cost to about a microsecond). Word offsets:
_H_MAGIC, _H_VERSION, _H_CORES, _H_PID, _H_SEQ, _H_CREATED_US, _H_RING_NEXT = range(7)
_H_HOST = 7
_H_HOST_PEAK = _H_HOST + len(HOST_MEMORY_KINDS)
_HEADER_WORDS = 32
_C_CORE, _C_BUSY, _C_FLOPS, _C_RUNNING, _C_LOADS, _C_INFERENCES = range(6)
_C_OUTCOMES = 6
_C_ERRORS = _C_OUTCOMES + len(OUTCOMES)
_C_MEMORY = _C_ERRORS + len(ERROR_KINDS)
_C_MEMORY_PEAK = _C_MEMORY + len(DEVICE_MEMORY_KINDS)
_C_STATUS = _C_MEMORY_PEAK + len(DEVICE_MEMORY_KINDS)
_CORE_WORDS = 48
assert _C_STATUS + len(SYSFS_STATUS_KINDS) <= _CORE_WORDS
_RING_WORDS = 3
_CORES_AT = _HEADER_WORDS
_RING_AT = _CORES_AT + _CORE_WORDS * MAX_STATS_CORES
PAGE_WORDS = _RING_AT + _RING_WORDS * LATENCY_RING
PAGE_BYTES = PAGE_WORDS * 8


class StatsPage:
    """The writer side, owned by one runtime; every update is a few word stores under a process lock."""

    def __init__(self, path: Path, cores: Sequence[int]) -> None:
        if len(cores) > MAX_STATS_CORES:
            raise ValueError(f"a stats page holds at most {MAX_STATS_CORES} cores, got {len(cores)}")
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, PAGE_BYTES)
            self._map = mmap.mmap(fd, PAGE_BYTES)
        finally:
            os.close(fd)
        self._words = memoryview(self._map).cast("Q")
        self.base = {core: _CORES_AT + index * _CORE_WORDS for index, core in enumerate(cores)}
        self._lock = threading.Lock()
        w = self._words
        w[_H_VERSION] = _VERSION
        w[_H_CORES] = len(cores)
        w[_H_PID] = os.getpid()
        w[_H_CREATED_US] = int(time.time() * 1e6)
        for core, base in self.base.items():
            w[base + _C_CORE] = core
        w[_H_MAGIC] = _MAGIC  # last: readers ignore a page until it is complete
        self.enabled = True

    # ------------------------------------------------------------------ writing
    def record_execution(self, core: int, outcome: int, busy_ns: int, flops: int, total_ns: int,
                         device_ns: int, error_kind: int | None, status_kind: int) -> None:
        """Account one execution on ``core``: busy time, FLOPs, outcome, latency, sysfs status."""
        if not self.enabled:
            return
        base = self.base[core]
        w = self._words
        with self._lock:
            w[_H_SEQ] += 1
            w[base + _C_BUSY] += busy_ns
            w[base + _C_FLOPS] += flops
            w[base + _C_OUTCOMES + outcome] += 1
            w[base + _C_STATUS + status_kind] += 1
            w[base + _C_INFERENCES] += 1
            if error_kind is not None:
                w[base + _C_ERRORS + error_kind] += 1
            index = w[_H_RING_NEXT]
            at = _RING_AT + (index % LATENCY_RING) * _RING_WORDS
            w[at] = total_ns
            w[at + 1] = device_ns
            w[at + 2] = core
            w[_H_RING_NEXT] = index + 1
            w[_H_SEQ] += 1

    def set_running(self, core: int, since_ns: int) -> None:
        """Mark ``core`` busy since ``since_ns`` (0 = idle), so utilization counts a long execution live."""
        if self.enabled:
            self._words[self.base[core] + _C_RUNNING] = since_ns

    def record_failure(self, core: int | None, outcome: int | None, error_kind: int | None, status_kind: int) -> None:
        """Account a failed load or an execution rejected before it ran (bad input, queue full)."""
        if not self.enabled or not self.base:
            return
        base = self.base.get(core if core is not None else -1, next(iter(self.base.values())))
        w = self._words
        with self._lock:
            w[_H_SEQ] += 1
            if outcome is not None:
                w[base + _C_OUTCOMES + outcome] += 1
            if error_kind is not None:
                w[base + _C_ERRORS + error_kind] += 1
            w[base + _C_STATUS + status_kind] += 1
            w[_H_SEQ] += 1

    def _add(self, at: int, peak_at: int, delta: int) -> None:
        w = self._words
        with self._lock:
            w[_H_SEQ] += 1
            value = max(0, w[at] + delta)
            w[at] = value
            if value > w[peak_at]:
                w[peak_at] = value
            w[_H_SEQ] += 1

    def add_device_memory(self, core: int, kind: int, delta: int) -> None:
        """Add (or, negative, remove) device memory of one category on ``core``; peaks follow."""
        if self.enabled:
            base = self.base[core]
            self._add(base + _C_MEMORY + kind, base + _C_MEMORY_PEAK + kind, delta)

    def add_host_memory(self, kind: int, delta: int) -> None:
        """Add (or remove) host memory of one category."""
        if self.enabled:
            self._add(_H_HOST + kind, _H_HOST_PEAK + kind, delta)

    def count_model_load(self, core: int) -> None:
        """One more model loaded on ``core``."""
        if self.enabled:
            with self._lock:
                self._words[self.base[core] + _C_LOADS] += 1

    def close(self) -> None:
        """Unmap and delete the page (the process is releasing its cores)."""
        self.enabled = False
        with self._lock:
            self._words.release()
            self._map.close()
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class CoreCounters:
    """One core's counters as read from a page."""

    core: int
    busy_ns: int
    running_since_ns: int
    flops: int
    outcomes: dict[str, int]
    errors: dict[str, int]
    memory: dict[str, int]
    memory_peak: dict[str, int]
    status: dict[str, int]
    model_loads: int
    inferences: int


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of one page, with the monotonic time it was taken."""

    pid: int
    taken_ns: int
    created: float
    cores: tuple[CoreCounters, ...]
    host_memory: dict[str, int]
    host_memory_peak: dict[str, int]
    latencies: tuple[tuple[int, int, int], ...]  # (total_ns, device_ns, core), oldest first
    executions_total: int


def _named(values: Any, names: Sequence[str]) -> dict[str, int]:
    return {name: int(values[i]) for i, name in enumerate(names)}


def read_stats(path: Path, retries: int = 50) -> StatsSnapshot | None:
    """Copy a page consistently (retrying while a write is in flight); None if absent, foreign or torn."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size != PAGE_BYTES:
                return None
            view = mmap.mmap(fh.fileno(), PAGE_BYTES, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    try:
        for _ in range(retries):
            taken = time.monotonic_ns()
            raw = bytes(view)
            words = np.frombuffer(raw, dtype="<u8")
            if int(words[_H_MAGIC]) != _MAGIC or int(words[_H_VERSION]) != _VERSION:
                return None
            seq = int(words[_H_SEQ])
            if seq % 2 == 1 or int(np.frombuffer(view, dtype="<u8", count=_HEADER_WORDS)[_H_SEQ]) != seq:
                time.sleep(0)
                continue
            count = min(int(words[_H_CORES]), MAX_STATS_CORES)
            rows = words[_CORES_AT : _CORES_AT + count * _CORE_WORDS].reshape(count, _CORE_WORDS)
            ring = words[_RING_AT:].reshape(LATENCY_RING, _RING_WORDS)
            written = int(words[_H_RING_NEXT])
            order = [i % LATENCY_RING for i in range(max(0, written - LATENCY_RING), written)]
            return StatsSnapshot(
                pid=int(words[_H_PID]),
                taken_ns=taken,
                created=int(words[_H_CREATED_US]) / 1e6,
                cores=tuple(
                    CoreCounters(
                        core=int(r[_C_CORE]), busy_ns=int(r[_C_BUSY]), running_since_ns=int(r[_C_RUNNING]),
                        flops=int(r[_C_FLOPS]), outcomes=_named(r[_C_OUTCOMES:], OUTCOMES),
                        errors=_named(r[_C_ERRORS:], ERROR_KINDS), memory=_named(r[_C_MEMORY:], DEVICE_MEMORY_KINDS),
                        memory_peak=_named(r[_C_MEMORY_PEAK:], DEVICE_MEMORY_KINDS),
                        status=_named(r[_C_STATUS:], SYSFS_STATUS_KINDS), model_loads=int(r[_C_LOADS]),
                        inferences=int(r[_C_INFERENCES]),
                    )
                    for r in rows
                ),
                host_memory=_named(words[_H_HOST:], HOST_MEMORY_KINDS),
                host_memory_peak=_named(words[_H_HOST_PEAK:], HOST_MEMORY_KINDS),
                latencies=tuple((int(ring[i][0]), int(ring[i][1]), int(ring[i][2])) for i in order),
                executions_total=written,
            )
        return None
    finally:
        view.close()
