"""Typed, timestamped snapshots of everything running on the emulated machine (the read side).

A :class:`Monitor` reads every live runtime's stats page (``procs/*.stats``), owner record and loaded-model
list, plus system CPU and memory from psutil, and turns counters into rates: utilization = Δbusy / Δwall per
NeuronCore, FLOPS = Δflops / Δwall, latency percentiles over the executions that ended since the previous
sample. Processes that died disappear (their liveness lock is gone); a page caught mid-write is retried, and
anything unreadable degrades to :data:`NA` instead of raising, as nvitop's API does.

A :class:`MachineSnapshot` also carries every fact a face (tool or widget) needs about the machine itself: the
driver (or why driver.json could not be read), every live owner record with its cores in the machine's logical
view (computed once, here), the free cores and the largest free run, the legacy daemon, and what could not be
read. Faces read this instead of state files (see ``docs/architecture.md``). Time comes from a :class:`Clock`,
so tests advance a fake clock instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import psutil

from nrt_lab.driver import (
    DAEMON_KIND,
    DriverState,
    Machine,
    OwnerRecord,
    StateError,
    open_machine,
    physical_core_count,
)
from nrt_lab.driver.locks import OwnerCache, list_owner_files
from nrt_lab.driver.state import read_state_json
from nrt_lab.driver.stats import DEVICE_MEMORY_KINDS, ERROR_KINDS, HOST_MEMORY_KINDS, OUTCOMES, StatsReader
from nrt_lab.errors import printable
from nrt_lab.hardware import CatalogueError, InstanceSpec

__all__ = [
    "Clock",
    "SystemClock",
    "SYSTEM_CLOCK",
    "DaemonState",
    "OwnerView",
    "daemon_state",
    "read_daemon",
    "machine_view_cores",
    "printable",
    "OUTCOMES",
    "ERROR_KINDS",
    "DEVICE_MEMORY_KINDS",
    "HOST_MEMORY_KINDS",
    "NA",
    "NotApplicable",
    "PERCENTILES",
    "CoreSample",
    "ModelInfo",
    "RuntimeSnapshot",
    "SystemSnapshot",
    "MachineSnapshot",
    "Monitor",
    "snapshot",
    "percentiles",
    "get_view",
]

PERCENTILES = (0, 1, 25, 50, 75, 99, 100)


class Clock(Protocol):
    """Where the read side gets time: wall time for timestamps, monotonic time for periods, and a sleep."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock (``time.time``, ``time.monotonic``, ``time.sleep``)."""

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds of a clock that never goes back."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def machine_view_cores(instance: InstanceSpec, lnc: int, cores: Sequence[int]) -> tuple[int, ...]:
    """The machine's logical core ids behind ``cores`` numbered with LNC ``lnc`` (trn2 processes may choose).

    The one place this mapping is written: a process with LNC 2 on a machine seen with LNC 1 owns physical cores
    2i and 2i+1 for each of its cores i, which are machine cores 2i and 2i+1, and the other way round.
    """
    if lnc == instance.lnc:
        return tuple(sorted(set(cores)))
    physical = (p for core in cores for p in range(core * lnc, core * lnc + lnc))
    return tuple(sorted({p // instance.lnc for p in physical}))


@dataclass(frozen=True)
class OwnerView:
    """A live owner record: a runtime holding NeuronCores, or a tool that only opened the devices."""

    pid: int
    command: str
    runtime_version: str  # "NA" for a device user that is not a runtime (neuron-top, neuron-monitor)
    tag: str
    start_time: float  # time.time() when the record was published
    kernel_id: str  # the Jupyter kernel id, "" for other processes
    lnc: int  # the LNC the process numbers its cores with
    cores: tuple[int, ...]  # in the process's own LNC view
    machine_cores: tuple[int, ...]  # the same cores in the machine's logical view
    extra: Mapping[str, str] = field(default_factory=dict)  # the record's extra fields (framework, daemon kind)

    @property
    def is_runtime(self) -> bool:
        """True for a process holding NeuronCores (a device user without cores is not)."""
        return bool(self.cores)

    @property
    def is_daemon(self) -> bool:
        """Whether this owner is a Runtime 1.x daemon (neuron-rtd) rather than a 2.x application."""
        return self.extra.get("kind") == DAEMON_KIND


@dataclass(frozen=True)
class DaemonState:
    """The legacy neuron-rtd (runtime 1.x) daemons, from their owner records (``OwnerRecord.is_daemon``)."""

    running: bool = False
    pid: int = 0  # the first daemon's pid
    text: str = "not running"
    address: str = ""  # the first daemon's gRPC address as users write it (unix:/run/neuron.sock)
    daemons: tuple[OwnerView, ...] = ()  # every running daemon


def daemon_state(owners: Sequence[OwnerView]) -> DaemonState:
    """The daemons among ``owners`` (their records say ``kind: neuron-rtd``), described for people."""
    daemons = tuple(o for o in owners if o.is_daemon)
    if not daemons:
        return DaemonState()
    text = "; ".join(
        f"running (pid {d.pid}, {d.extra.get('address') or 'unix:/run/neuron.sock'}"
        + (f", instance {d.extra['instance']}" if d.extra.get("instance") else "")
        + f", {len(d.machine_cores)} NeuronCores)" for d in daemons)
    first = daemons[0]
    return DaemonState(True, first.pid, text, first.extra.get("address", ""), daemons)


def read_daemon(root: Path) -> DaemonState:
    """The legacy neuron-rtd daemons holding devices of the machine at ``root`` (from its owner records)."""
    views = []
    for record, _path in list_owner_files(root):
        views.append(OwnerView(
            pid=record.pid, command=record.command, runtime_version=record.runtime_version, tag=record.tag,
            start_time=record.start_time, kernel_id=record.kernel_id, lnc=record.lnc, cores=record.cores,
            machine_cores=record.cores, extra=dict(record.extra),
        ))
    return daemon_state(views)


class NotApplicable:
    """A printable "N/A" that stands for a value that could not be measured (never an exception)."""

    _instance: NotApplicable | None = None

    def __new__(cls) -> NotApplicable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "N/A"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return False

    def __format__(self, spec: str) -> str:
        # Keep only fill, alignment and width of a numeric spec like "6.2f": "N/A" has no precision or type.
        match = re.match(r"^((?:.?[<>=^])?)[+\- ]?#?0?(\d*)", spec)
        align, width = (match.group(1), match.group(2)) if match else ("", "")
        return format("N/A", f"{align.replace('=', '>') or '>'}{width}" if width else align.replace("=", ">"))


NA = NotApplicable()


@dataclass(frozen=True)
class CoreSample:
    """One NeuronCore owned by a runtime, over the last sampling period."""

    core: int
    device: int
    utilization: float  # percent, 0-100
    flops_per_s: float
    busy_ns: int
    flops: int
    inferences: int
    model_loads: int
    memory: Mapping[str, int]  # neuroncore_memory_usage categories, bytes
    memory_peak: Mapping[str, int]
    outcomes: Mapping[str, int]  # cumulative execution_summary counts
    errors: Mapping[str, int]  # cumulative error_summary counts
    status: Mapping[str, int]  # cumulative sysfs status counters
    running: bool


@dataclass(frozen=True)
class ModelInfo:
    """A model loaded by a runtime (from its ``.models`` list)."""

    name: str
    uuid: str
    model_id: int
    core: int
    device: int
    subgraphs: tuple[str, ...]
    memory: Mapping[str, int]
    flops_per_execution: int
    is_running: bool


@dataclass(frozen=True)
class RuntimeSnapshot:
    """One live runtime (process) and what it did since the previous sample."""

    pid: int
    tag: str
    command: str
    runtime_version: str
    kernel_id: str
    lnc: int
    start_time: float
    cores: tuple[CoreSample, ...]
    host_memory: Mapping[str, int]  # usage_breakdown.host categories, bytes
    models: tuple[ModelInfo, ...]
    execution_summary: Mapping[str, int]  # cumulative, summed over cores
    error_summary: Mapping[str, int]
    total_latency: Mapping[str, float] | None  # seconds per percentile key "p0".."p100", None without executions
    device_latency: Mapping[str, float] | None
    vcpu_user: float | NotApplicable  # percent of one CPU
    vcpu_system: float | NotApplicable
    period: float  # seconds covered by the rates
    error: str = ""

    @property
    def device_memory_total(self) -> int:
        """Bytes of device memory over every owned core."""
        return sum(sum(c.memory.values()) for c in self.cores)

    @property
    def host_memory_total(self) -> int:
        """Bytes of host memory accounted by the runtime."""
        return sum(self.host_memory.values())

    @property
    def flops_per_s(self) -> float:
        """FLOPS over every owned core."""
        return sum(c.flops_per_s for c in self.cores)


@dataclass(frozen=True)
class SystemSnapshot:
    """Host CPU and memory (psutil), over the last sampling period."""

    vcpu_count: int
    average_usage: Mapping[str, float]  # user, nice, system, idle, io_wait, irq, soft_irq (percent)
    per_cpu_usage: Mapping[str, Mapping[str, float]]
    context_switch_count: int
    memory_total_bytes: int
    memory_used_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int
    timestamp: float = 0.0  # the clock's time() when it was read (a Monitor reads it at most every system_interval)
    period: float = 0.0  # seconds its CPU rates cover (0: since boot, the first reading)


@dataclass(frozen=True)
class MachineSnapshot:
    """The whole machine at ``timestamp`` (the clock's time()): instance, driver, owners, runtimes, system.

    ``runtimes`` holds the stats of every live runtime (empty when the sample was taken without them);
    ``owners`` every live owner record, device users included; ``free`` the machine-view cores no owner holds;
    ``errors`` what could not be read (``driver_error`` is the driver's, when driver.json is unreadable);
    ``period`` the seconds since the previous full sample (0 for the first); ``system`` may be a reading up to
    ``Monitor.system_interval`` old (its own ``timestamp`` and ``period`` say which).
    """

    timestamp: float
    instance: InstanceSpec
    instance_id: str
    driver: DriverState | None
    runtimes: tuple[RuntimeSnapshot, ...]
    system: SystemSnapshot
    period: float
    root: Path = Path(".")
    owners: tuple[OwnerView, ...] = ()
    driver_error: str = ""
    daemon: DaemonState = DaemonState()
    errors: tuple[str, ...] = ()

    @property
    def runtime_owners(self) -> tuple[OwnerView, ...]:
        """The owners holding NeuronCores (device users left out)."""
        return tuple(o for o in self.owners if o.is_runtime)

    @property
    def free(self) -> tuple[bool, ...]:
        """Per machine-view core: True when no live owner holds it."""
        held = {c for o in self.owners for c in o.machine_cores}
        return tuple(core not in held for core in range(self.instance.total_cores))

    @property
    def free_cores(self) -> tuple[int, ...]:
        """The machine-view cores nobody holds."""
        return tuple(core for core, is_free in enumerate(self.free) if is_free)

    @property
    def largest_free_run(self) -> int:
        """The longest run of free cores (what the busy line reports as ``Available``)."""
        # The allocator's own rule, imported late: the runtime package is heavy to import.
        from nrt_lab.runtime.allocation import largest_free_run

        return largest_free_run(self.free)

    def owner_of(self) -> dict[int, OwnerView]:
        """Machine-view core id -> the owner record holding it."""
        return {core: o for o in self.owners for core in o.machine_cores}

    def core_owner(self) -> dict[int, RuntimeSnapshot]:
        """Machine-view logical core id -> the runtime owning it (runtimes with another LNC are mapped)."""
        owners: dict[int, RuntimeSnapshot] = {}
        for rt in self.runtimes:
            for core in machine_view_cores(self.instance, rt.lnc, [c.core for c in rt.cores]):
                owners[core] = rt
        return owners


def percentiles(values_ns: np.ndarray[Any, Any]) -> dict[str, float] | None:
    """neuron-monitor's latency percentiles (p0 … p100) in seconds; None when there were no executions."""
    if values_ns.size == 0:
        return None
    # np.percentile's linear method, computed directly: ~3x cheaper on the small arrays a period holds, which
    # matters to neuron-monitor (two calls per runtime per report).
    ordered = np.sort(values_ns.astype(np.float64))
    position = (ordered.size - 1) * _PERCENTILE_FRACTIONS
    low = position.astype(np.intp)
    high = np.minimum(low + 1, ordered.size - 1)
    points = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return {f"p{p}": float(v) / 1e9 for p, v in zip(PERCENTILES, points, strict=True)}


_PERCENTILE_FRACTIONS = np.asarray(PERCENTILES, dtype=np.float64) / 100.0
_PERCENTILE_KEYS = tuple(f"p{p}" for p in PERCENTILES)


def _latency_percentiles(rows: np.ndarray[Any, Any]) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """:func:`percentiles` of the total and device latency columns of ``rows`` (stats page latency rows): the
    same linear interpolation, in plain Python for the few executions of a short period (cheaper than arrays)."""
    if rows.size == 0:
        return None, None
    if rows.shape[0] > _SMALL:
        return percentiles(rows[:, 1]), percentiles(rows[:, 2])
    return _picked(sorted(rows[:, 1].tolist())), _picked(sorted(rows[:, 2].tolist()))


def _picked(ordered: list[int]) -> dict[str, float]:
    """The PERCENTILES of sorted ``ordered`` nanoseconds, in seconds, as :func:`percentiles` computes them."""
    last = len(ordered) - 1
    found: dict[str, float] = {}
    for key, fraction in _PERCENTILE_PAIRS:
        position = last * fraction
        low = int(position)
        high = min(low + 1, last)
        found[key] = (ordered[low] + (ordered[high] - ordered[low]) * (position - low)) / 1e9
    return found


_SMALL = 256  # executions in a period below which percentiles are computed without arrays
_PERCENTILE_PAIRS = tuple(zip(_PERCENTILE_KEYS, _PERCENTILE_FRACTIONS.tolist(), strict=True))


_CPU_FIELDS = (("user", "user"), ("nice", "nice"), ("system", "system"), ("idle", "idle"),
               ("io_wait", "iowait"), ("irq", "irq"), ("soft_irq", "softirq"))


def _cpu_percentages(before: Any, after: Any) -> dict[str, float]:
    deltas = {name: max(0.0, getattr(after, attr, 0.0) - getattr(before, attr, 0.0)) for name, attr in _CPU_FIELDS}
    total = sum(max(0.0, a - b) for a, b in zip(after, before, strict=True)) or 1.0
    return {name: 100.0 * value / total for name, value in deltas.items()}


@dataclass
class _Previous:
    taken_ns: int
    # Per core: the counters of the last sample, its busy time then (running time included), and its CoreSample
    # when the core was idle over the whole period: reused while the counters stay the same objects and nothing
    # runs (every rate stays 0, every other field is the same).
    cores: dict[int, tuple[Any, int, CoreSample | None]]
    cpu_user: float
    cpu_system: float
    models: tuple[Any, frozenset[int], tuple[ModelInfo, ...]] | None = None  # list, running cores -> ModelInfo


@dataclass
class Monitor:
    """A sampler that remembers the previous counters so each :meth:`sample` reports rates over its period.

    ``clock`` gives the snapshots' timestamps and the system CPU periods (default: the real clock).
    What does not change between samples is not rebuilt: a stats page is mapped once and only its changed core
    blocks and new latency entries are copied, an idle core keeps its CoreSample, a process keeps its
    ``/proc/<pid>/stat`` descriptor, and the host CPU/memory reading is reused for ``system_interval`` seconds.
    """

    root: Path | None = None
    _machine: Machine | None = field(default=None, repr=False)
    _previous: dict[tuple[int, float], _Previous] = field(default_factory=dict, repr=False)
    _system_cpu: tuple[Any, list[Any], float] | None = field(default=None, repr=False)
    _last_system: tuple[SystemSnapshot, float] | None = field(default=None, repr=False)
    _owners: OwnerCache = field(default_factory=OwnerCache, repr=False)  # records parsed once, lock files kept open
    _pages: dict[tuple[int, float], StatsReader] = field(default_factory=dict, repr=False)  # mapped once per runtime
    _files: dict[Path, tuple[tuple[int, int, int], Any]] = field(default_factory=dict, repr=False)
    _processes: dict[tuple[int, float], _CpuTimes] = field(default_factory=dict, repr=False)
    _sampled_at: float | None = field(default=None, repr=False)
    _owner_views: dict[tuple[int, float], tuple[OwnerRecord, InstanceSpec, OwnerView]] = field(
        default_factory=dict, repr=False)  # each owner's view, while its parsed record and the instance stay  # the clock's monotonic() at the last full sample
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, kw_only=True)
    # Host CPU and memory are read from /proc at most this often (seconds of ``clock``) by :meth:`sample`; faster
    # samples reuse the last reading, which carries its own ``timestamp`` and ``period``. A 10 Hz widget then
    # pays for them twice a second; a tool sampling every second or slower reads them every time.
    system_interval: float = field(default=0.5, kw_only=True)

    @property
    def machine(self) -> Machine:
        """The machine being watched (opened on first use)."""
        if self._machine is None:
            self._machine = open_machine(self.root)
        return self._machine

    def sample(self, tag_filter: str | None = None, *, runtimes: bool = True) -> MachineSnapshot:
        """Read the machine, every live owner and runtime (only tags matching the regex ``tag_filter``) and the
        system; with ``runtimes=False`` no stats page is read and the system reading of the last full sample is
        reused (a cheap read for views that show owners, not rates). Raises StateError for an unusable root."""
        machine = self.machine
        state = self._unless_unchanged(machine.root / "machine.json", machine.state)
        errors: list[str] = []
        driver_error = ""
        try:
            driver = self._unless_unchanged(machine.root / "driver.json", lambda: machine.driver(state))
        except StateError as exc:
            driver, driver_error = None, str(exc)
            errors.append(driver_error)
        pattern = re.compile(tag_filter) if tag_filter else None
        now = self.clock.time()
        found: list[RuntimeSnapshot] = []
        owners: list[OwnerView] = []
        seen: set[tuple[int, float]] = set()
        views: dict[tuple[int, float], tuple[OwnerRecord, InstanceSpec, OwnerView]] = {}
        for record, path in list_owner_files(machine.root, self._owners):
            key = (record.pid, record.start_time)
            kept = self._owner_views.get(key)
            if kept is not None and kept[0] is record and kept[1] is state.instance:
                view = kept[2]  # the same parsed record on the same machine: the same view
            else:
                view = OwnerView(
                    pid=record.pid, command=record.command, runtime_version=record.runtime_version, tag=record.tag,
                    start_time=record.start_time, kernel_id=record.kernel_id, lnc=record.lnc, cores=record.cores,
                    machine_cores=machine_view_cores(state.instance, record.lnc, record.cores),
                    extra=dict(record.extra),
                )
            views[key] = (record, state.instance, view)
            owners.append(view)
            if not runtimes or not record.cores:  # a tool that only opened the devices: no runtime
                continue
            if pattern is not None and not pattern.search(record.tag):
                continue
            seen.add(key)
            found.append(self._runtime(record, path, state.instance, key))
            if found[-1].error:
                errors.append(f"pid {record.pid}: {found[-1].error}")
        self._owner_views = views  # owners that went away are forgotten
        if runtimes:
            for stale in set(self._previous) - seen:
                del self._previous[stale]
            for stale in set(self._pages) - seen:
                self._pages.pop(stale).close()
            for stale in set(self._processes) - seen:
                self._processes.pop(stale).close()
            monotonic = self.clock.monotonic()
            last = self._last_system
            # (A first reading's CPU rates cover the time since boot: the next sample reads again, so two samples
            # ``interval`` apart, as neuron-top --once takes them, get host rates over that interval.)
            if (last is None or last[1] <= 0 or self._system_cpu is None
                    or monotonic - self._system_cpu[2] >= self.system_interval):
                system, _ = self._system()
            else:
                system = last[0]
            # Seconds since the previous full sample: what the runtimes' rates cover too.
            period = 0.0 if self._sampled_at is None else max(0.0, monotonic - self._sampled_at)
            self._sampled_at = monotonic
        else:
            system, period = self._last_system or (_EMPTY_SYSTEM, 0.0)
        return MachineSnapshot(
            now, state.instance, state.instance_id, driver, tuple(found), system, period, root=machine.root,
            owners=tuple(owners), driver_error=driver_error, daemon=daemon_state(owners), errors=tuple(errors),
        )

    def _unless_unchanged(self, path: Path, read: Callable[[], _T]) -> _T:
        """``read()``'s result, reused while ``path`` keeps its inode, size and modification time: state files are
        replaced whole (atomic rename), so an unchanged signature means unchanged contents. Polling readers (a
        monitor every second) then parse machine.json, driver.json and model lists only when they change."""
        try:
            st = os.stat(path, follow_symlinks=False)
            signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            signature = (0, 0, 0)  # absent (a runtime without models): cached too, until the file appears
        except OSError:
            self._files.pop(path, None)
            return read()
        cached = self._files.get(path)
        if cached is not None and cached[0] == signature:
            return cast(_T, cached[1])
        value = read()
        self._files[path] = (signature, value)
        if len(self._files) > _FILE_CACHE_LIMIT:  # runtimes come and go: forget the oldest entries
            for stale in list(self._files)[: len(self._files) - _FILE_CACHE_LIMIT]:
                del self._files[stale]
        return value

    def _runtime(self, record: OwnerRecord, path: Path, instance: InstanceSpec,
                 key: tuple[int, float]) -> RuntimeSnapshot:
        try:
            lnc_view = get_view(instance, record.lnc)
        except CatalogueError:
            lnc_view = None
        reader = self._pages.get(key)
        if reader is None:
            reader = StatsReader.open(path.with_suffix(".stats"), physical_core_count(instance))
            if reader is not None:
                self._pages[key] = reader
        page = reader.read(history=False) if reader is not None else None  # only the new executions
        if page is not None and lnc_view is not None and any(c.core >= lnc_view.total_cores for c in page.cores):
            page = None  # a damaged page naming cores this instance does not have: show it, never index with it
        cpu_user: float | NotApplicable = NA
        cpu_system: float | NotApplicable = NA
        try:
            process = self._processes.get(key)
            if process is None:
                process = self._processes[key] = _CpuTimes(record.pid)
            user_s, system_s = process.read()
        except (psutil.Error, OSError, ValueError, IndexError):
            gone = self._processes.pop(key, None)
            if gone is not None:
                gone.close()
            user_s = system_s = -1.0
        if page is None or lnc_view is None:
            return RuntimeSnapshot(
                record.pid, record.tag, record.command, record.runtime_version, record.kernel_id, record.lnc,
                record.start_time, (), {}, (), dict.fromkeys(OUTCOMES, 0), dict.fromkeys(ERROR_KINDS, 0), None, None,
                NA, NA, 0.0, error="stats page unreadable",
            )
        previous = self._previous.get(key)
        created_ns = int((page.created - (time.time() - time.monotonic())) * 1e9)
        since_ns = previous.taken_ns if previous else created_ns
        period_ns = max(1, page.taken_ns - since_ns)
        models_path = path.with_suffix(".models")
        models = self._unless_unchanged(models_path, lambda: _read_models(models_path))
        cores: list[CoreSample] = []
        kept = previous.cores if previous else {}
        now: dict[int, tuple[Any, int, CoreSample | None]] = {}
        running_cores: set[int] = set()
        for c in page.cores:
            last = kept.get(c.core)
            if c.running_since_ns:
                running_cores.add(c.core)
            elif last is not None and last[0] is c and last[2] is not None:
                # The reader handed back the same counters (nothing changed on this core) and the last sample
                # already saw it idle: the same CoreSample again.
                now[c.core] = last
                cores.append(last[2])
                continue
            busy = c.busy_ns + (max(0, page.taken_ns - c.running_since_ns) if c.running_since_ns else 0)
            utilization = min(100.0, max(0.0, 100.0 * (busy - (last[1] if last else 0)) / period_ns))
            flops_per_s = max(0, c.flops - (last[0].flops if last else 0)) / (period_ns / 1e9)
            sample = CoreSample(
                core=c.core, device=lnc_view.device_of_core(c.core), utilization=utilization,
                flops_per_s=flops_per_s, busy_ns=c.busy_ns, flops=c.flops,
                inferences=c.inferences, model_loads=c.model_loads, memory=c.memory, memory_peak=c.memory_peak,
                outcomes=c.outcomes, errors=c.errors, status=c.status, running=bool(c.running_since_ns),
            )
            idle = utilization == 0.0 and flops_per_s == 0.0 and not c.running_since_ns
            now[c.core] = (c, busy, sample if idle else None)
            cores.append(sample)
        running = frozenset(running_cores)
        if previous is not None and previous.models is not None and previous.models[0] is models and (
                previous.models[1] == running):
            model_infos = previous.models[2]
        else:
            model_infos = tuple(
                ModelInfo(m["name"], m["uuid"], m["model_id"], m["core"], m["neuron_device_index"],
                          tuple(m["subgraphs"]), m["memory"], m["flops_per_execution"], m["core"] in running)
                for m in models
            )
        recent = page.new_latencies  # the executions recorded since the previous sample
        total_latency, device_latency = _latency_percentiles(recent)
        if user_s >= 0 and previous is not None and previous.cpu_user >= 0:
            seconds = period_ns / 1e9
            cpu_user = max(0.0, 100.0 * (user_s - previous.cpu_user) / seconds)
            cpu_system = max(0.0, 100.0 * (system_s - previous.cpu_system) / seconds)
        self._previous[key] = _Previous(page.taken_ns, now, user_s, system_s, (models, running, model_infos))
        return RuntimeSnapshot(
            pid=record.pid, tag=record.tag, command=record.command, runtime_version=record.runtime_version,
            kernel_id=record.kernel_id, lnc=record.lnc, start_time=record.start_time, cores=tuple(cores),
            host_memory=page.host_memory, models=model_infos,
            execution_summary=page.outcome_totals, error_summary=page.error_totals,
            total_latency=total_latency, device_latency=device_latency,
            vcpu_user=cpu_user, vcpu_system=cpu_system, period=period_ns / 1e9,
        )

    def sample_system(self) -> tuple[SystemSnapshot, float]:
        """Host CPU and memory only (no runtime is read), and the seconds its CPU rates cover (0 the first time)."""
        return self._system()

    def _system(self) -> tuple[SystemSnapshot, float]:
        now = self.clock.monotonic()
        total = psutil.cpu_times()
        per_cpu = psutil.cpu_times(percpu=True)
        previous = self._system_cpu
        self._system_cpu = (total, per_cpu, now)
        if previous is None:
            base_total, base_per, period = total.__class__(*([0.0] * len(total))), None, 0.0
        else:
            base_total, base_per, period = previous[0], previous[1], now - previous[2]
        average = _cpu_percentages(base_total, total)
        per = {
            str(i): _cpu_percentages(base_per[i] if base_per else cpu.__class__(*([0.0] * len(cpu))), cpu)
            for i, cpu in enumerate(per_cpu)
        }
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        system = SystemSnapshot(
            vcpu_count=len(per_cpu), average_usage=average, per_cpu_usage=per,
            context_switch_count=int(psutil.cpu_stats().ctx_switches), memory_total_bytes=int(memory.total),
            memory_used_bytes=int(memory.total - memory.available), swap_total_bytes=int(swap.total),
            swap_used_bytes=int(swap.used), timestamp=self.clock.time(), period=period,
        )
        self._last_system = (system, period)
        return system, period


_EMPTY_SYSTEM = SystemSnapshot(0, {}, {}, 0, 0, 0, 0, 0)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class _CpuTimes:
    """One process's user and system CPU seconds, read through a kept descriptor of ``/proc/<pid>/stat`` (Linux;
    psutil elsewhere): one pread per sample instead of an open, a read and a close. The descriptor stays bound
    to the process it was opened for, so a reused pid never reads someone else's times."""

    def __init__(self, pid: int) -> None:
        self._fd = -1
        self._process: psutil.Process | None = None
        try:
            self._fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            self._process = psutil.Process(pid)  # no procfs: psutil's portable way (raises for a dead pid)

    def read(self) -> tuple[float, float]:
        """(user, system) CPU seconds; raises OSError or psutil.Error when the process is gone."""
        if self._process is not None:
            times = self._process.cpu_times()
            return float(times.user), float(times.system)
        data = os.pread(self._fd, 1024, 0)
        # Fields after the command (which may hold spaces and parentheses): state, ppid, … utime is the 14th
        # field of the line, stime the 15th (proc(5)), in clock ticks.
        fields = data[data.rindex(b")") + 2:].split(b" ", 13)
        return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to close with
            self.close()


_T = TypeVar("_T")
_FILE_CACHE_LIMIT = 256
_MODELS_LIMIT = 4 << 20  # a loaded-model list is a few KB per model
_views: dict[tuple[str, int], InstanceSpec] = {}


def get_view(instance: InstanceSpec, lnc: int) -> InstanceSpec:
    """The instance as seen with logical NeuronCore size ``lnc`` (cached)."""
    if lnc == instance.lnc:
        return instance
    from nrt_lab.hardware import get_instance

    key = (instance.name, lnc)
    if key not in _views:
        _views[key] = get_instance(instance.name, lnc)
    return _views[key]


def _read_models(path: Path) -> list[dict[str, Any]]:
    """A runtime's loaded-model list, read like every state file (regular file, bounded); [] when unreadable."""
    try:
        data = read_state_json(path, "loaded-model list", limit=_MODELS_LIMIT)
        models = data["models"] if data is not None else []
        return [m for m in models if isinstance(m, dict) and {"name", "uuid", "model_id", "core"} <= m.keys()]
    except (StateError, OSError, KeyError, TypeError):
        return []


def snapshot(root: Path | str | None = None, interval: float = 0.0, clock: Clock | None = None) -> MachineSnapshot:
    """One snapshot; with ``interval`` > 0, rates cover that many seconds (two samples, ``clock.sleep`` between),
    else each runtime's life."""
    monitor = Monitor(Path(root) if root is not None else None, clock=clock or SYSTEM_CLOCK)
    if interval > 0:
        monitor.sample()
        monitor.clock.sleep(interval)
    return monitor.sample()

