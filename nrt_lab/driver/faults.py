"""Injected hardware faults: how they are stored in the state root and matched against executions.

A fault is ``faults/<id>.json`` (written atomically), aimed at one logical NeuronCore (``--core``, in the
machine's numbering) or at a whole device (``--device``: any of its cores). It is stored with the physical
cores it covers, so a runtime at another LNC on trn2 matches it too, and with the machine's instance id
(a re-provisioned machine ignores faults left from the previous one).

Matching is done by the process that owns the core, under ``faults/.lock``: every execution of one of its
models on a covered core is *seen* (``seen`` counts them across every process, in order), and the fault
*fires* on the seen execution number ``n`` (0-based) when ``n >= after`` and, with a probability ``p``,
when ``Random(f"{seed}/{n}").random() < p`` — so ``--after N`` means "the (N+1)-th execution on that core
fires" and a seeded fault fires on the same executions whatever the process. A fault fires ``count`` times,
then stays listed as ``spent`` until cleared. At most one fault fires per execution; another one that would
have fired on the same execution stays armed and is not counted as having seen it.

The per-execution cost when no fault concerns the process is at most one ``stat`` of ``faults/`` per
millisecond (a fault injected by another process is noticed within a millisecond; one injected by this
process at once): a runtime re-reads the directory only when its modification time changed (or is too recent
to be trusted at the file system's timestamp granularity).

What firing *does* (statuses, log lines, counters) is the runtime's business: :mod:`nrt_lab.runtime.faults`.
The machine-level ECC counters are :func:`hardware_counters` (neuron-monitor's ``neuron_hw_counters``).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import random
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nrt_lab.driver.counters import HARDWARE_COUNTERS, add_hardware_events, read_counters
from nrt_lab.driver.machine import Machine, physical_cores_of
from nrt_lab.driver.state import (
    StateError,
    append_state_text,
    atomic_write_json,
    list_state_dir,
    make_state_dir,
    open_state_file,
    read_machine,
    read_state_bytes,
    read_state_json,
    unlink_state_file,
    write_state_bytes,
)
from nrt_lab.hardware import InstanceSpec

__all__ = [
    "FAULT_KINDS",
    "HARDWARE_COUNTERS",
    "FaultError",
    "Fault",
    "FiredFault",
    "FaultWatcher",
    "validate_fault",
    "inject_fault",
    "list_faults",
    "clear_faults",
    "hardware_counters",
    "record_hardware_event",
    "write_kernel_line",
]

FAULT_KINDS = ("mem_ecc_corrected", "sram_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_uncorrected", "hbm_ue",
               "dma_abort", "hang", "nan")
_TRUST_MARGIN_NS = 50_000_000  # a directory mtime older than this (vs. our scan) cannot hide a later change
_MAX_HISTORY = 32
_RECHECK_NS = 1_000_000  # with nothing armed for us, stat faults/ at most once a millisecond
_local_changes = 0  # bumped by inject/clear in this process, so its own changes are seen at once


class FaultError(ValueError):
    """A fault request is invalid (the message says what is accepted); nothing was stored."""


@dataclass(frozen=True)
class Fault:
    """One injected fault and its progress."""

    id: str
    kind: str
    target: str  # "core" or "device"
    index: int  # machine-view logical core id, or device index
    instance_id: str
    physical_cores: tuple[int, ...]
    after: int = 0
    probability: float | None = None
    seed: int | None = None
    count: int = 1
    seen: int = 0
    fired: int = 0
    created: float = 0.0
    history: tuple[Mapping[str, Any], ...] = ()  # one entry per fire: pid, core, execution, time

    @property
    def active(self) -> bool:
        """True while it has fires left."""
        return self.fired < self.count

    @property
    def state(self) -> str:
        """``armed`` or ``spent``."""
        return "armed" if self.active else "spent"

    @property
    def target_label(self) -> str:
        """``nc4`` or ``nd2``."""
        return f"nc{self.index}" if self.target == "core" else f"nd{self.index}"

    def decides_to_fire(self, n: int) -> bool:
        """Whether the seen execution number ``n`` (0-based) fires: after the first ``after``, with ``probability``."""
        if n < self.after:
            return False
        if self.probability is None:
            return True
        return random.Random(f"{self.seed}/{n}").random() < self.probability

    def to_json(self) -> dict[str, Any]:
        """On-disk (and ``fault list --json``) form."""
        return {
            "id": self.id, "kind": self.kind, "target": self.target, "index": self.index,
            "instance_id": self.instance_id, "physical_cores": list(self.physical_cores), "after": self.after,
            "probability": self.probability, "seed": self.seed, "count": self.count, "seen": self.seen,
            "fired": self.fired, "state": self.state, "created": self.created,
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Parse a fault file strictly; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        kind = data["kind"]
        target = data["target"]
        if kind not in FAULT_KINDS or target not in ("core", "device"):
            raise ValueError(f"unknown kind {kind!r} or target {target!r}")
        probability = data.get("probability")
        seed = data.get("seed")
        history = data.get("history", [])
        return cls(
            id=str(data["id"]), kind=kind, target=target, index=int(data["index"]),
            instance_id=str(data["instance_id"]), physical_cores=tuple(int(c) for c in data["physical_cores"]),
            after=int(data.get("after", 0)), probability=None if probability is None else float(probability),
            seed=None if seed is None else int(seed), count=int(data.get("count", 1)), seen=int(data.get("seen", 0)),
            fired=int(data.get("fired", 0)), created=float(data.get("created", 0.0)),
            history=tuple(h for h in history if isinstance(h, dict)) if isinstance(history, list) else (),
        )


@dataclass(frozen=True)
class FiredFault:
    """A fault that fires on this execution, on runtime core ``core`` (instance-global, runtime's LNC)."""

    fault: Fault
    core: int
    execution: int  # the seen execution number it fired on (0-based)


_FAULT_LIMIT = 256 << 10  # bytes: a fault file with its bounded history is a few KB


def _faults_dir(root: Path) -> Path:
    path = root / "faults"
    with contextlib.suppress(FileExistsError):
        make_state_dir(path)
    return path


@contextlib.contextmanager
def _faults_lock(root: Path) -> Iterator[Path]:
    directory = _faults_dir(root)
    fd = open_state_file(directory / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield directory
    finally:
        os.close(fd)


def _read_fault(path: Path) -> Fault | None:
    """One fault file read safely (regular file, bounded); None when missing or not a fault."""
    try:
        return Fault.from_json(read_state_json(path, "fault file", limit=_FAULT_LIMIT))
    except (StateError, ValueError, KeyError, TypeError, OverflowError):
        return None


def _fault_files(directory: Path) -> list[Path]:
    try:
        names = list_state_dir(directory)
    except StateError:
        return []
    files = [directory / n for n in names if n.startswith("f") and n.endswith(".json") and n[1:-5].isascii()
             and n[1:-5].isdigit() and len(n) < 32]
    return sorted(files, key=lambda p: int(p.stem[1:]))


def _machine(root: Path) -> tuple[InstanceSpec, str]:
    """The machine's instance and id (provisioning the default on first use, like every tool)."""
    state = Machine(root).state()
    return state.instance, state.instance_id


def validate_fault(instance: InstanceSpec, *, kind: str, core: int | None = None, device: int | None = None,
                   after: int = 0, probability: float | None = None, seed: int | None = None,
                   count: int = 1) -> tuple[str, int, tuple[int, ...]]:
    """Check a request against ``instance``: (target, index, physical cores), or FaultError saying what is accepted."""
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; accepted: {', '.join(FAULT_KINDS)}")
    if (core is None) == (device is None):
        raise FaultError("give exactly one target: --core N (a NeuronCore) or --device N (any core of a device)")
    if core is not None:
        if isinstance(core, bool) or not isinstance(core, int) or not 0 <= core < instance.total_cores:
            raise FaultError(f"NeuronCore {core} does not exist on {instance.name}; accepted: --core 0 to "
                             f"{instance.total_cores - 1}")
        target, index, logical = "core", core, [core]
    else:
        assert device is not None
        if isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < instance.device_count:
            raise FaultError(f"Neuron device {device} does not exist on {instance.name}; accepted: --device 0 to "
                             f"{instance.device_count - 1}")
        target, index, logical = "device", device, list(instance.cores_of_device(device))
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise FaultError(f"--after {after} is invalid; accepted: a whole number of executions ≥ 0")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise FaultError(f"--count {count} is invalid; accepted: a whole number of fires ≥ 1")
    if probability is not None and (not isinstance(probability, (int, float)) or isinstance(probability, bool)
                                    or not math.isfinite(probability) or not 0.0 <= probability <= 1.0):
        raise FaultError(f"--probability {probability} is invalid; accepted: a number from 0 to 1")
    if seed is not None and probability is None:
        raise FaultError("--seed only applies with --probability P")
    return target, index, tuple(physical_cores_of(instance, logical))


def inject_fault(root: Path, *, kind: str, core: int | None = None, device: int | None = None, after: int = 0,
                 probability: float | None = None, seed: int | None = None, count: int = 1) -> Fault:
    """Validate and store a fault; FaultError (nothing stored) for a bad request."""
    instance, instance_id = _machine(root)
    target, index, physical = validate_fault(instance, kind=kind, core=core, device=device, after=after,
                                             probability=probability, seed=seed, count=count)
    if probability is not None and seed is None:
        seed = random.SystemRandom().randrange(2**31)
    with _faults_lock(root) as directory:
        seq_path = directory / ".seq"
        try:
            raw = read_state_bytes(seq_path, "fault sequence file", 64)
            last = int((raw or b"0").decode("ascii").strip() or 0)
        except (StateError, ValueError):
            last = 0
        last = max([last, *(int(p.stem[1:]) for p in _fault_files(directory))])
        fault = Fault(id=f"f{last + 1}", kind=kind, target=target, index=index, instance_id=instance_id,
                      physical_cores=physical, after=after,
                      probability=None if probability is None else float(probability), seed=seed, count=count,
                      created=time.time())
        write_state_bytes(seq_path, f"{last + 1}\n".encode("ascii"))
        atomic_write_json(directory / f"{fault.id}.json", fault.to_json())
    _note_local_change()
    return fault


def _note_local_change() -> None:
    global _local_changes
    _local_changes += 1


def list_faults(root: Path) -> list[Fault]:
    """Every stored fault of the current machine, oldest first (unreadable files are skipped)."""
    _instance, instance_id = _machine(root)
    faults = [_read_fault(p) for p in _fault_files(_faults_dir(root))]
    return [f for f in faults if f is not None and f.instance_id == instance_id]


def clear_faults(root: Path, fault_id: str | None = None) -> list[str]:
    """Delete one fault (FaultError if there is no such id) or all of them; returns the ids removed."""
    with _faults_lock(root) as directory:
        files = _fault_files(directory)
        _note_local_change()
        if fault_id is None:
            for path in files:
                unlink_state_file(path)
            return [p.stem for p in files]
        path = directory / f"{fault_id}.json"
        if path not in files:
            known = ", ".join(p.stem for p in files) or "none"
            raise FaultError(f"no fault {fault_id!r}; stored faults: {known}")
        unlink_state_file(path)
        return [fault_id]


class FaultWatcher:
    """The owner side of fault matching for one runtime: ``consume(cores)`` once per execution."""

    def __init__(self, root: Path, instance_id: str, physical: Mapping[int, Sequence[int]]) -> None:
        self.root = root
        self.directory = root / "faults"
        self._directory = str(self.directory)
        self._checked_ns = 0
        self._changes = -1
        self.instance_id = instance_id
        self.physical = {core: frozenset(cores) for core, cores in physical.items()}
        self._all_physical = frozenset().union(*self.physical.values()) if self.physical else frozenset()
        self._mtime: int | None = None
        self._trusted = False
        self._relevant: tuple[Path, ...] = ()

    def _rescan(self, mtime: int) -> None:
        started = time.time_ns()
        relevant: list[Path] = []
        for path in _fault_files(self.directory):
            fault = _read_fault(path)
            if (fault is not None and fault.active and fault.instance_id == self.instance_id
                    and self._all_physical.intersection(fault.physical_cores)):
                relevant.append(path)
        self._relevant = tuple(relevant)
        self._mtime = mtime
        self._trusted = mtime < started - _TRUST_MARGIN_NS

    def consume(self, cores: Sequence[int]) -> FiredFault | None:
        """Count one execution on ``cores`` (the model's cores) against every matching fault; the one that fires."""
        now = time.monotonic_ns()
        if (not self._relevant and self._trusted and now - self._checked_ns < _RECHECK_NS
                and self._changes == _local_changes):
            return None
        self._checked_ns = now
        self._changes = _local_changes
        try:
            mtime = os.stat(self._directory).st_mtime_ns
        except OSError:
            return None
        if mtime != self._mtime or not self._trusted:
            self._rescan(mtime)
        if not self._relevant:
            return None
        fired: FiredFault | None = None
        try:
            with _faults_lock(self.root):
                for path in self._relevant:
                    fault = _read_fault(path)
                    if fault is None or not fault.active:
                        continue
                    core = next((c for c in cores if self.physical.get(c, frozenset()).intersection(
                        fault.physical_cores)), None)
                    if core is None:
                        continue
                    n = fault.seen
                    fires = fault.decides_to_fire(n)
                    if fires and fired is not None:
                        continue  # one fault per execution: this one stays armed for the next
                    if fires:
                        entry = {"pid": os.getpid(), "core": core, "execution": n, "time": time.time()}
                        fault = replace(fault, seen=n + 1, fired=fault.fired + 1,
                                        history=(*fault.history, entry)[-_MAX_HISTORY:])
                        fired = FiredFault(fault, core, n)
                    else:
                        fault = replace(fault, seen=n + 1)
                    atomic_write_json(path, fault.to_json())
        except (OSError, StateError):
            return fired
        return fired


def hardware_counters(root: Path) -> dict[int, dict[str, int]]:
    """Per device, the ECC counters since driver load: mem_ecc_corrected, mem_ecc_uncorrected, sram_ecc_uncorrected,
    sram_ecc_corrected, mem_ecc_repairable_uncorrected (all devices, zeros included; {} if no machine)."""
    try:
        state = read_machine(root)
    except StateError:
        return {}
    if state is None:
        return {}
    stored = read_counters(root, state.instance_id).hardware
    return {dev.index: {name: stored.get(dev.index, {}).get(name, 0) for name in HARDWARE_COUNTERS}
            for dev in state.instance.devices}


def record_hardware_event(root: Path, instance_id: str, device: int, counters: Sequence[str]) -> None:
    """Add one to each named ECC counter of ``device`` (never raises for an unwritable state root)."""
    with contextlib.suppress(OSError):
        add_hardware_events(root, instance_id, device, counters)


def write_kernel_line(root: Path, message: str) -> None:
    """Append a kernel message (``... kernel: <message>``) to the emulated syslog ``log/syslog``."""
    stamp = time.strftime("%b %d %H:%M:%S")
    with contextlib.suppress(OSError):
        append_state_text(root / "log" / "syslog", f"{stamp} {socket.gethostname()} kernel: {message}\n")
