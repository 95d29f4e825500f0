"""Per-process stats pages: fixed-layout shared-memory counters a runtime writes and monitors read.

Each runtime maps ``procs/<pid>.<token>.stats`` (next to its owner record) and updates plain counters on every
load, execution and tensor operation; ``neuron-monitor``, ``neuron-top`` and the widgets map the same file
read-only. A sequence counter (seqlock: odd while writing) lets a reader retry instead of seeing a torn
update, so a reader never blocks the writer and never reports nonsense.
"""

from __future__ import annotations

import contextlib
import mmap
import operator
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nrt_lab.driver.state import StateError, open_state_file, unlink_state_file

__all__ = [
    "MAX_STATS_CORES",
    "MAX_PHYSICAL_CORES",
    "LATENCY_RING",
    "OUTCOMES",
    "ERROR_KINDS",
    "DEVICE_MEMORY_KINDS",
    "HOST_MEMORY_KINDS",
    "SYSFS_STATUS_KINDS",
    "StatsPage",
    "StatsSnapshot",
    "CoreCounters",
    "StatsReader",
    "read_stats",
    "PageTotals",
    "read_page_totals",
    "page_bytes",
]

MAX_STATS_CORES = 128
_READ_PATIENCE_S = 0.25  # how long a reader keeps trying to copy a block a busy writer keeps changing
MAX_PHYSICAL_CORES = 512  # the most NeuronCores an instance has (64 devices × 8 cores): larger ids are corruption
_MAX_PID = 1 << 22  # the kernel's largest pid_max
LATENCY_RING = 256  # per core
_MAGIC = 0x5354_5441_5452_4E  # "NRTATS" — identifies a stats page
_VERSION = 2

# neuron-monitor execution_summary keys (docs/behaviour.md §7), in this order.
OUTCOMES = ("completed", "completed_with_err", "completed_with_num_err", "timed_out", "incorrect_input",
            "failed_to_queue")
# neuron-monitor error_summary keys.
ERROR_KINDS = ("generic", "numerical", "transient", "model", "runtime", "hardware")
# neuroncore_memory_usage keys.
DEVICE_MEMORY_KINDS = ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors")
# usage_breakdown.host keys.
HOST_MEMORY_KINDS = ("application_memory", "constants", "dma_buffers", "tensors")
# sysfs neuron_core<i>/stats/status counters (docs/behaviour.md §7).
SYSFS_STATUS_KINDS = ("success", "failure", "timeout", "exec_bad_input", "hw_error", "generic_error",
                      "resource_error", "resource_nc_error", "invalid_error", "unsupported_neff_version",
                      "oob_error", "infer_completed_with_error", "infer_completed_with_num_error",
                      "infer_failed_to_queue")

# The page is an array of little-endian u64 words (a memoryview cast to "Q": ~50 ns per store). Each core has
# its own block with its own sequence counter, lock and latency ring, so executions on different cores never
# contend and an execution costs about a microsecond of bookkeeping. Word offsets:
_H_MAGIC, _H_VERSION, _H_CORES, _H_PID, _H_SEQ, _H_CREATED_US = range(6)
_H_HOST = 8
_H_HOST_PEAK = _H_HOST + len(HOST_MEMORY_KINDS)
_HEADER_WORDS = 32
_C_CORE, _C_SEQ, _C_BUSY, _C_FLOPS, _C_RUNNING, _C_LOADS, _C_INFERENCES, _C_RING_NEXT = range(8)
_C_OUTCOMES = 8
_C_ERRORS = _C_OUTCOMES + len(OUTCOMES)
_C_MEMORY = _C_ERRORS + len(ERROR_KINDS)
_C_MEMORY_PEAK = _C_MEMORY + len(DEVICE_MEMORY_KINDS)
_C_STATUS = _C_MEMORY_PEAK + len(DEVICE_MEMORY_KINDS)
# Executions are accounted without any stats lock: only the thread holding the core's execution lock writes the
# execution words, under their own sequence counter (_C_XSEQ). Failures recorded outside an execution (bad input,
# failed loads) go to separate arrays under the stats lock and _C_SEQ; readers add the two.
_C_XSEQ = _C_STATUS + len(SYSFS_STATUS_KINDS)
_C_FAIL_OUTCOMES = _C_XSEQ + 1
_C_FAIL_ERRORS = _C_FAIL_OUTCOMES + len(OUTCOMES)
_C_FAIL_STATUS = _C_FAIL_ERRORS + len(ERROR_KINDS)
_C_RING = 96
assert _C_FAIL_STATUS + len(SYSFS_STATUS_KINDS) <= _C_RING
_RING_WORDS = 3  # total_ns, device_ns, end time (monotonic µs)
_CORE_WORDS = _C_RING + _RING_WORDS * LATENCY_RING
_CORES_AT = _HEADER_WORDS
_NO_LATENCIES = np.zeros((0, 4), dtype=np.int64)
_NO_LATENCIES.setflags(write=False)
assert LATENCY_RING & (LATENCY_RING - 1) == 0  # a power of two: ring positions are taken with a mask
_TRIPLE = np.arange(_RING_WORDS)
_END = operator.itemgetter(0)
_ODD = (1).__and__  # v & 1, as a C callable for map()
_MAX_RING_POSITION = 1 << 62  # more executions than any page can count: flipped bytes


def page_bytes(core_count: int) -> int:
    """Size of a page for ``core_count`` cores."""
    return (_HEADER_WORDS + _CORE_WORDS * core_count) * 8


class StatsPage:
    """The writer side, owned by one runtime.

    ``record_execution`` and ``set_running`` must be called by the thread that holds the core's execution lock
    (a core runs one execution at a time, so they take no lock of their own: the hot path stays cheap); every
    other update takes the page's per-core lock.
    """

    def __init__(self, path: Path, cores: Sequence[int]) -> None:
        if not 0 < len(cores) <= MAX_STATS_CORES:
            raise ValueError(f"a stats page holds 1 to {MAX_STATS_CORES} cores, got {len(cores)}")
        self.path = path
        size = page_bytes(len(cores))
        fd = open_state_file(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._words = memoryview(self._map).cast("Q")
        self.base = {core: _CORES_AT + index * _CORE_WORDS for index, core in enumerate(cores)}
        self._locks = {core: threading.Lock() for core in cores}
        self._host_lock = threading.Lock()
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
        b = self.base[core]
        w = self._words
        xseq = b + _C_XSEQ
        w[xseq] += 1  # odd while writing
        w[b + 2] += busy_ns  # _C_BUSY
        w[b + 3] += flops  # _C_FLOPS
        w[b + 4] = 0  # _C_RUNNING: idle again
        w[b + 6] += 1  # _C_INFERENCES
        w[b + _C_OUTCOMES + outcome] += 1
        w[b + _C_STATUS + status_kind] += 1
        if error_kind is not None:
            w[b + _C_ERRORS + error_kind] += 1
        index = w[b + 7]  # _C_RING_NEXT
        at = b + _C_RING + (index % LATENCY_RING) * _RING_WORDS
        w[at] = total_ns
        w[at + 1] = device_ns
        w[at + 2] = time.monotonic_ns() // 1000
        w[b + 7] = index + 1
        w[xseq] += 1

    def set_running(self, core: int, since_ns: int) -> None:
        """Mark ``core`` busy since ``since_ns`` (monotonic; 0 = idle) so utilization counts a long run live."""
        if self.enabled:
            self._words[self.base[core] + _C_RUNNING] = since_ns

    def record_failure(self, core: int | None, outcome: int | None, error_kind: int | None, status_kind: int) -> None:
        """Account a failed load or an execution rejected before it ran (bad input, queue full)."""
        if not self.enabled:
            return
        key = core if core in self.base else next(iter(self.base))
        b = self.base[key]
        w = self._words
        with self._locks[key]:
            w[b + _C_SEQ] += 1
            if outcome is not None:
                w[b + _C_FAIL_OUTCOMES + outcome] += 1
            if error_kind is not None:
                w[b + _C_FAIL_ERRORS + error_kind] += 1
            w[b + _C_FAIL_STATUS + status_kind] += 1
            w[b + _C_SEQ] += 1

    def add_device_memory(self, core: int, kind: int, delta: int) -> None:
        """Add (or, negative, remove) device memory of one category on ``core``; peaks follow."""
        if not self.enabled:
            return
        b = self.base[core]
        w = self._words
        with self._locks[core]:
            w[b + _C_SEQ] += 1
            value = max(0, w[b + _C_MEMORY + kind] + delta)
            w[b + _C_MEMORY + kind] = value
            if value > w[b + _C_MEMORY_PEAK + kind]:
                w[b + _C_MEMORY_PEAK + kind] = value
            w[b + _C_SEQ] += 1

    def add_host_memory(self, kind: int, delta: int) -> None:
        """Add (or remove) host memory of one category."""
        if not self.enabled:
            return
        w = self._words
        with self._host_lock:
            w[_H_SEQ] += 1
            value = max(0, w[_H_HOST + kind] + delta)
            w[_H_HOST + kind] = value
            if value > w[_H_HOST_PEAK + kind]:
                w[_H_HOST_PEAK + kind] = value
            w[_H_SEQ] += 1

    def count_model_load(self, core: int) -> None:
        """One more model loaded on ``core``."""
        if self.enabled:
            b = self.base[core]
            with self._locks[core]:
                self._words[b + _C_SEQ] += 1
                self._words[b + _C_LOADS] += 1
                self._words[b + _C_SEQ] += 1

    def close(self) -> None:
        """Unmap and delete the page (the process is releasing its cores)."""
        self.enabled = False
        with self._host_lock:
            for lock in self._locks.values():
                lock.acquire()
            try:
                self._words.release()
                self._map.close()
            finally:
                for lock in self._locks.values():
                    lock.release()
        with contextlib.suppress(OSError, StateError):  # the page is bookkeeping: closing never fails over it
            unlink_state_file(self.path)


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
    ring_position: int = 0  # executions recorded in the latency ring so far (the next entry's number)


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of one page, with the monotonic time it was taken."""

    pid: int
    taken_ns: int
    created: float
    cores: tuple[CoreCounters, ...]
    host_memory: dict[str, int]
    host_memory_peak: dict[str, int]
    latencies: np.ndarray[Any, Any]  # rows (end_us monotonic, total_ns, device_ns, core), oldest first; last 256/core
    executions_total: int
    outcome_totals: dict[str, int] = field(default_factory=dict)  # execution_summary over every core of the page
    error_totals: dict[str, int] = field(default_factory=dict)  # error_summary over every core
    # The rows of ``latencies`` recorded since the reader's previous read of the page (all of them on its first).
    new_latencies: np.ndarray[Any, Any] = field(default_factory=lambda: _NO_LATENCIES)


def _summed(words: Sequence[int], executed_at: int, failed_at: int, names: Sequence[str]) -> dict[str, int]:
    """A counter vector: what executions recorded plus what was recorded outside executions."""
    return {name: words[executed_at + i] + words[failed_at + i] for i, name in enumerate(names)}


def _core_counters(r: Sequence[int]) -> CoreCounters:
    """One block's counter words (as a list) as a CoreCounters."""
    return CoreCounters(
        core=r[_C_CORE], busy_ns=r[_C_BUSY], running_since_ns=r[_C_RUNNING], flops=r[_C_FLOPS],
        outcomes=_summed(r, _C_OUTCOMES, _C_FAIL_OUTCOMES, OUTCOMES),
        errors=_summed(r, _C_ERRORS, _C_FAIL_ERRORS, ERROR_KINDS),
        memory=dict(zip(DEVICE_MEMORY_KINDS, r[_C_MEMORY:_C_MEMORY + len(DEVICE_MEMORY_KINDS)], strict=True)),
        memory_peak=dict(zip(DEVICE_MEMORY_KINDS, r[_C_MEMORY_PEAK:_C_MEMORY_PEAK + len(DEVICE_MEMORY_KINDS)],
                             strict=True)),
        status=_summed(r, _C_STATUS, _C_FAIL_STATUS, SYSFS_STATUS_KINDS), model_loads=r[_C_LOADS],
        inferences=r[_C_INFERENCES], ring_position=r[_C_RING_NEXT],
    )


def _stable_copy(view: mmap.mmap, start: int, count: int, seq_words: Sequence[int],
                 retries: int, deadline: float | None = None) -> np.ndarray[Any, Any] | None:
    """Copy ``count`` words at ``start`` under their sequence words (a seqlock read): the sequence words are read
    before the copy (all even: no write in flight) and again after it (unchanged: no write happened meanwhile).
    Word reads go through a memoryview and the copy is one slice of the map, so an attempt takes well under a
    microsecond and succeeds between the writes of a busy core."""
    words = memoryview(view).cast("Q")
    try:
        at = [start + i for i in seq_words]
        # At least ``retries`` attempts and, until ``deadline`` (one per page read, so a damaged page whose
        # sequence words stay odd costs one patience period, not one per core): on a loaded machine a reader
        # descheduled in the middle of its copy sees a busy writer's update every time for a while.
        if deadline is None:
            deadline = time.monotonic() + _READ_PATIENCE_S
        attempt = 0
        while attempt < retries or time.monotonic() < deadline:
            attempt += 1
            before = [words[i] for i in at]
            if not any(v & 1 for v in before):
                data = view[start * 8:(start + count) * 8]
                if [words[i] for i in at] == before:
                    return np.frombuffer(data, dtype="<u8")
            time.sleep(0 if attempt % 64 else 0.0005)  # now and then give a writer's burst time to end
        return None
    finally:
        words.release()


def _open_page(path: Path) -> tuple[int, int] | None:
    """(descriptor, size) of the page at ``path`` when it is a regular file of a possible page size (never through
    a link, never a FIFO); None otherwise. The caller closes the descriptor."""
    try:
        fd = open_state_file(path, os.O_RDONLY)
    except (OSError, StateError):
        return None
    try:
        size = os.fstat(fd).st_size
    except OSError:
        size = -1
    if _HEADER_WORDS * 8 <= size <= page_bytes(MAX_STATS_CORES):
        return fd, size
    os.close(fd)
    return None


class StatsReader:
    """A reader's mapping of one page, kept open across reads: a monitor sampling 16 runtimes every second maps
    each page once, not once per sample, and each read copies only what moved since the previous one (core
    blocks whose sequence or running words changed, ring entries past the previous ring position); unchanged
    blocks keep their CoreCounters objects.

    Only a regular file of exactly a page's size is mapped (a FIFO or a link is never opened for reading); a page
    whose core ids are not distinct ids below ``core_limit`` (pass the instance's core count when known), or whose
    pid is impossible, is corrupted and read as None, never turned into an exception.
    """

    def __init__(self, fd: int, view: mmap.mmap, size: int, core_limit: int) -> None:
        self._fd = fd  # kept open so each read can check the file was not truncated under the mapping (SIGBUS)
        # What the last read saw, reused for what did not change since: every block's counter words, the
        # CoreCounters per block, the page's summaries, each ring's position (where the new executions start).
        count = (size // 8 - _HEADER_WORDS) // _CORE_WORDS  # the page's core count, known from its size
        self._count = count if 0 < count <= MAX_STATS_CORES and page_bytes(count) == size else 0
        # Each block's sequence words and ring position, as strided slices of the page's words (one C call each).
        end = _CORES_AT + self._count * _CORE_WORDS
        self._seq_words = slice(_CORES_AT + _C_SEQ, end, _CORE_WORDS)
        self._xseq_words = slice(_CORES_AT + _C_XSEQ, end, _CORE_WORDS)
        self._ring_next_words = slice(_CORES_AT + _C_RING_NEXT, end, _CORE_WORDS)
        self._running_words = slice(_CORES_AT + _C_RUNNING, end, _CORE_WORDS)
        self._marks: list[int] = []  # per block at its last copy: sequence word, execution sequence word, running
        self._counter_spans = [((_CORES_AT + i * _CORE_WORDS) * 8, (_CORES_AT + i * _CORE_WORDS + _C_RING) * 8)
                               for i in range(self._count)]
        self._ring_at = [_CORES_AT + i * _CORE_WORDS + _C_RING for i in range(self._count)]
        self._blocks: list[bytes] | None = None
        self._counters: dict[int, CoreCounters] = {}
        self._totals: tuple[dict[str, int], dict[str, int]] = (dict.fromkeys(OUTCOMES, 0),
                                                               dict.fromkeys(ERROR_KINDS, 0))
        self._written: list[int] = []
        self._view = view
        self._size = size
        self._core_limit = core_limit

    @classmethod
    def open(cls, path: Path, core_limit: int = MAX_PHYSICAL_CORES) -> StatsReader | None:
        """Map the page at ``path`` read-only; None when it is absent or not a page-sized regular file."""
        opened = _open_page(path)
        if opened is None:
            return None
        fd, size = opened
        try:
            return cls(fd, mmap.mmap(fd, size, access=mmap.ACCESS_READ), size, core_limit)
        except (OSError, ValueError):
            os.close(fd)
            return None

    def close(self) -> None:
        """Unmap the page and close its file (idempotent)."""
        if not self._view.closed:
            self._view.close()
            os.close(self._fd)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to close with
            self.close()

    def __enter__(self) -> StatsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, retries: int = 1000, *, history: bool = True) -> StatsSnapshot | None:
        """Copy the page consistently (each block retried while a write is in flight); None if foreign, torn or
        corrupted. ``new_latencies`` holds the executions recorded since this reader's previous read;
        ``history=False`` leaves ``latencies`` (every kept ring entry) empty, for a poller that only wants the new
        ones (a monitor's percentiles) and so copies a few ring entries per read instead of every ring."""
        view, size, count = self._view, self._size, self._count
        try:
            if view.closed or os.fstat(self._fd).st_size != size:
                return None  # closed, or truncated since it was mapped: reading it would fault
        except OSError:
            return None
        if count <= 0:
            return None  # no whole number of core blocks fits this size: not a page
        taken = time.monotonic_ns()
        patience = time.monotonic() + _READ_PATIENCE_S  # for every block of this page together
        # The header and every block's counter words are copied under their seqlocks (sequence words read before
        # and after the copies); the header or a block a writer touched meanwhile is copied again on its own.
        # The latency rings are copied without a lock, only the entries a read needs, after the counters: an
        # entry is kept if it was written before the counters copy (below the ring position that copy saw) and
        # not yet overwritten by the ring position read after the entries were copied.
        mapped = memoryview(view).cast("Q")
        try:
            header_seq = mapped[_H_SEQ]
            before = mapped[self._seq_words].tolist() + mapped[self._xseq_words].tolist()
            header = mapped[:_HEADER_WORDS].tolist()
            last, marks = self._blocks, self._marks
            if last is None:
                blocks = [view[a:b] for a, b in self._counter_spans]  # bytes: each a small memcpy
            else:
                # Every write to a block's counters happens under one of its sequence words, except the running
                # word (one word, stored alone): a block whose sequence words and running word are what they
                # were at the last copy holds what that copy holds, and is not copied again.
                running = mapped[self._running_words].tolist()
                blocks = [last[i] if before[i] == marks[i] and before[count + i] == marks[count + i]
                          and running[i] == marks[2 * count + i] else view[a:b]
                          for i, (a, b) in enumerate(self._counter_spans)]
            after = mapped[self._seq_words].tolist() + mapped[self._xseq_words].tolist()
            if header_seq != mapped[_H_SEQ] or header_seq & 1:
                copied = _stable_copy(view, 0, _HEADER_WORDS, (_H_SEQ,), retries, patience)
                if copied is None:
                    return None
                header = copied.tolist()
            if (header[_H_MAGIC] != _MAGIC or header[_H_VERSION] != _VERSION or header[_H_CORES] != count
                    or not 0 < header[_H_PID] < _MAX_PID):
                return None
            if before != after or any(map(_ODD, before)):
                for index in range(count):
                    pair = (before[index], before[count + index])
                    if pair == (after[index], after[count + index]) and not (pair[0] & 1 or pair[1] & 1):
                        continue
                    block = _stable_copy(view, _CORES_AT + index * _CORE_WORDS, _C_RING, (_C_SEQ, _C_XSEQ),
                                         retries, patience)
                    if block is None:
                        return None
                    blocks[index] = block.tobytes()
                    before[index] = -1  # copied under other sequence values than these: copy it next time
            # Counters: a block whose bytes equal the last read's keeps its CoreCounters (most cores of a page
            # did nothing since the last read); the others are converted, and checked.
            changed = [i for i in range(count) if last is None or blocks[i] != last[i]]
            counters = dict(self._counters)
            for index in changed:
                counters[index] = _core_counters(memoryview(blocks[index]).cast("Q").tolist())
            if changed:
                core_ids = [counters[index].core for index in range(count)]
                if max(core_ids) >= self._core_limit or len(set(core_ids)) != count:
                    return None  # flipped bytes: a core that cannot exist, or the same core twice
            written = [counters[index].ring_position for index in range(count)]
            if max(written) >= _MAX_RING_POSITION:
                return None  # flipped bytes: more executions than a page can have counted
            previous = self._written or [0] * count
            # The ring entries to copy, per core: every entry still in the ring (history), or those past the
            # previous read's ring position.
            lows = [max(0 if history else p, w - LATENCY_RING) for w, p in zip(written, previous, strict=True)]
            wanted = [index for index in range(count) if written[index] > lows[index]]
            found: list[tuple[int, int, int, int, int, int]] = []
            entries: np.ndarray[Any, Any] | None = None
            if wanted and history:
                live = np.frombuffer(view, dtype="<u8")
                numbers = np.concatenate([np.arange(lows[i], written[i], dtype=np.int64) for i in wanted])
                cores_of = np.repeat(np.asarray(wanted, dtype=np.int64), [written[i] - lows[i] for i in wanted])
                at = _CORES_AT + _C_RING + cores_of * _CORE_WORDS + (numbers & (LATENCY_RING - 1)) * _RING_WORDS
                entries = live[at[:, None] + _TRIPLE]  # fancy indexing: a copy
                del live  # a live export would keep the map from closing
            else:
                # A few entries per core (those of the last period): word by word beats array set-up.
                for index in wanted:
                    ring_at, core = self._ring_at[index], counters[index].core
                    for number in range(lows[index], written[index]):
                        word = ring_at + (number & (LATENCY_RING - 1)) * _RING_WORDS
                        found.append((mapped[word + 2], mapped[word], mapped[word + 1], core, number, index))
            ring_next_after = mapped[self._ring_next_words].tolist()
        finally:
            mapped.release()
        first = {i: max(0, ring_next_after[i] + 1 - LATENCY_RING, written[i] - LATENCY_RING) for i in wanted}
        latencies = new = _NO_LATENCIES
        if entries is not None:
            counts = [written[i] - lows[i] for i in wanted]
            kept = numbers >= np.repeat(np.asarray([first[i] for i in wanted], dtype=np.int64), counts)
            rows = np.empty((numbers.size, 4), dtype=np.int64)
            rows[:, 0] = entries[:, 2]
            rows[:, 1] = entries[:, 0]
            rows[:, 2] = entries[:, 1]
            rows[:, 3] = np.asarray([counters[i].core for i in wanted], dtype=np.int64)[
                np.repeat(np.arange(len(wanted)), counts)]
            is_new = numbers >= np.repeat(np.asarray([previous[i] for i in wanted], dtype=np.int64), counts)
            if not kept.all():
                rows, is_new = rows[kept], is_new[kept]
            order = np.argsort(rows[:, 0], kind="stable")
            latencies = rows[order]
            latencies.setflags(write=False)  # a snapshot is a value
            new = latencies if is_new.all() else latencies[is_new[order]]
        elif found:
            found = [row for row in found if row[4] >= first[row[5]]]  # not overwritten while copied
            found.sort(key=_END)
            new = np.array([row[:4] for row in found], dtype=np.uint64).reshape(-1, 4).astype(np.int64)
        new.setflags(write=False)
        # The page's execution and error summaries, moved by what the changed blocks added.
        outcomes, errors = self._totals
        if changed:
            outcomes, errors = dict(outcomes), dict(errors)
            for index in changed:
                old = self._counters.get(index)
                for kind, value in counters[index].outcomes.items():
                    outcomes[kind] = outcomes.get(kind, 0) + value - (old.outcomes[kind] if old else 0)
                for kind, value in counters[index].errors.items():
                    errors[kind] = errors.get(kind, 0) + value - (old.errors[kind] if old else 0)
            self._totals = (outcomes, errors)
        self._blocks, self._counters, self._written = blocks, counters, written
        self._marks = before + [counters[index].running_since_ns for index in range(count)]
        host = header[_H_HOST:_H_HOST + len(HOST_MEMORY_KINDS)]
        host_peak = header[_H_HOST_PEAK:_H_HOST_PEAK + len(HOST_MEMORY_KINDS)]
        return StatsSnapshot(
            pid=header[_H_PID], taken_ns=taken, created=header[_H_CREATED_US] / 1e6,
            cores=tuple(counters[index] for index in range(count)),
            host_memory=dict(zip(HOST_MEMORY_KINDS, host, strict=True)),
            host_memory_peak=dict(zip(HOST_MEMORY_KINDS, host_peak, strict=True)),
            latencies=latencies, executions_total=sum(written), outcome_totals=outcomes, error_totals=errors,
            new_latencies=new,
        )


def read_stats(path: Path, retries: int = 1000, core_limit: int = MAX_PHYSICAL_CORES) -> StatsSnapshot | None:
    """One consistent copy of the page at ``path`` (see :class:`StatsReader`); None if absent, foreign, torn or
    corrupted."""
    reader = StatsReader.open(path, core_limit)
    if reader is None:
        return None
    with reader:
        return reader.read(retries)


@dataclass(frozen=True)
class PageTotals:
    """A quiescent page's cumulative counters as arrays (one row per core), for folding into machine totals.

    Columns follow SYSFS_STATUS_KINDS, DEVICE_MEMORY_KINDS and HOST_MEMORY_KINDS.
    """

    cores: np.ndarray[Any, Any]  # (n,) instance-global core ids at the runtime's LNC
    status: np.ndarray[Any, Any]  # (n, len(SYSFS_STATUS_KINDS))
    flops: np.ndarray[Any, Any]  # (n,)
    inferences: np.ndarray[Any, Any]  # (n,)
    model_loads: np.ndarray[Any, Any]  # (n,)
    busy_ns: np.ndarray[Any, Any]  # (n,)
    memory_peak: np.ndarray[Any, Any]  # (n, len(DEVICE_MEMORY_KINDS))
    host_memory_peak: np.ndarray[Any, Any]  # (len(HOST_MEMORY_KINDS),)


def read_page_totals(path: Path, core_limit: int = MAX_PHYSICAL_CORES) -> PageTotals | None:
    """The counters of a page nobody writes any more (its runtime closed or died), read in one vectorized copy.

    Same checks as :func:`read_stats` (regular file, exact size, magic, version, pid, distinct core ids below
    ``core_limit``); None when the page is absent or corrupted. Without a writer there is nothing to retry, so
    the per-core sequence counters are not consulted: a page left mid-update by a SIGKILL is folded as it is.
    """
    opened = _open_page(path)
    if opened is None:
        return None
    fd, size = opened
    try:
        data = os.pread(fd, size, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    words: np.ndarray[Any, Any] = np.frombuffer(data, dtype="<u8")
    count = int(words[_H_CORES]) if len(words) > _H_CORES else 0
    if (int(words[_H_MAGIC]) != _MAGIC or int(words[_H_VERSION]) != _VERSION or not 0 < count <= MAX_STATS_CORES
            or size != page_bytes(count) or not 0 < int(words[_H_PID]) < _MAX_PID):
        return None
    blocks = words[_CORES_AT:].reshape(count, _CORE_WORDS).astype(np.int64)
    cores = blocks[:, _C_CORE]
    if int(cores.min()) < 0 or int(cores.max()) >= core_limit or len(np.unique(cores)) != count:
        return None
    n_status = len(SYSFS_STATUS_KINDS)
    n_memory = len(DEVICE_MEMORY_KINDS)
    return PageTotals(
        cores=cores,
        status=blocks[:, _C_STATUS:_C_STATUS + n_status] + blocks[:, _C_FAIL_STATUS:_C_FAIL_STATUS + n_status],
        flops=blocks[:, _C_FLOPS], inferences=blocks[:, _C_INFERENCES], model_loads=blocks[:, _C_LOADS],
        busy_ns=blocks[:, _C_BUSY], memory_peak=blocks[:, _C_MEMORY_PEAK:_C_MEMORY_PEAK + n_memory],
        host_memory_peak=words[_H_HOST_PEAK:_H_HOST_PEAK + len(HOST_MEMORY_KINDS)].astype(np.int64),
    )
