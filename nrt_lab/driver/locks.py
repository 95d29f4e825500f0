"""NeuronCore ownership on the emulated driver: one lock per physical core, held by the owning process.

Each physical core is one byte of ``locks/cores.lock``, locked with an open-file-description (OFD) record lock.
Why OFD locks: like flock, the kernel drops them when the process dies, however it dies (SIGKILL included), so
cores are freed at once with nothing to clean up; unlike per-process POSIX locks, closing another descriptor of
the file in the same process (a reader, a widget) never drops them. And a claim of N contiguous cores is one
``fcntl`` on one descriptor whatever N, so claiming 128 cores costs about what claiming 2 does.

Core locks are only ever *tried* by allocators holding ``locks/alloc.lock``, so a reader (neuron-ls, a widget)
can never make an allocation fail; readers learn ownership from the owner records in ``procs/`` whose liveness
lock they probe with a shared flock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nrt_lab.driver.counters import fold_stats_page
from nrt_lab.driver.owners import OwnerRecord
from nrt_lab.driver.state import (
    StateError,
    atomic_write_json,
    list_state_dir,
    open_state_file,
    read_state_json,
    remove_stale_temp_files,
    unlink_state_file,
)

__all__ = [
    "allocation_lock",
    "CoreClaim",
    "try_claim",
    "probe_free",
    "held_cores",
    "list_owners",
    "OwnerCache",
    "list_owner_files",
    "open_devices",
    "owner_is_live",
    "read_owner_record",
    "remove_stale_records",
    "OWNER_FILE_SUFFIXES",
]

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
# The files beside an owner's liveness lock ``procs/<pid>.<token>.lock``: record, stats page, loaded models.
OWNER_FILE_SUFFIXES = (".json", ".stats", ".models")
_live_fds: set[int] = set()
_live_fds_guard = threading.Lock()


def _track(fd: int) -> int:
    with _live_fds_guard:
        _live_fds.add(fd)
    return fd


def _untrack_close(fd: int) -> None:
    with _live_fds_guard:
        _live_fds.discard(fd)
    os.close(fd)


def _close_inherited_fds_in_child() -> None:
    """A forked child must not keep its parent's cores alive after the parent exits."""
    with contextlib.suppress(Exception):
        for fd in list(_live_fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        _live_fds.clear()


os.register_at_fork(after_in_child=_close_inherited_fds_in_child)


_RECORD_LIMIT = 64 << 10  # bytes: an owner record is a few hundred bytes


_CORES_LOCK = "cores.lock"
# struct flock (Linux, 64-bit off_t): l_type, l_whence, l_start, l_len, l_pid (+ padding the kernel ignores).
_FLOCK = struct.Struct("hhqqi4x")


def _flock_arg(kind: int, start: int, length: int) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, start, length, 0)


def _runs(cores: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs of ``cores`` as (first, count)."""
    runs: list[tuple[int, int]] = []
    for core in sorted(set(cores)):
        if runs and runs[-1][0] + runs[-1][1] == core:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((core, 1))
    return runs


def _open_cores_lock(root: Path) -> int:
    return _track(open_state_file(root / "locks" / _CORES_LOCK, _OPEN_FLAGS))


@contextlib.contextmanager
def allocation_lock(root: Path) -> Iterator[None]:
    """Serialize every allocation and machine change, so racing processes never both fail or both win."""
    fd = _track(open_state_file(root / "locks" / "alloc.lock", _OPEN_FLAGS))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        _untrack_close(fd)


@dataclass
class CoreClaim:
    """The physical cores one process holds, plus its owner record and liveness lock."""

    root: Path
    physical_cores: tuple[int, ...]
    _cores_fd: int | None = field(default=None, repr=False)  # holds the cores' locks until closed
    record_path: Path | None = None
    _record_lock_fd: int | None = field(default=None, repr=False)

    def publish(self, record: OwnerRecord) -> None:
        """Write procs/<pid>.<token>.json and hold its liveness lock, so tools can name this owner."""
        token = secrets.token_hex(4)
        stem = f"{record.pid}.{token}"
        fd = _track(open_state_file(self.root / "procs" / f"{stem}.lock", _OPEN_FLAGS))
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._record_lock_fd = fd
        self.record_path = self.root / "procs" / f"{stem}.json"
        atomic_write_json(self.record_path, record.to_json())

    def release(self) -> None:
        """Give every core back and withdraw the owner record and the files beside it (idempotent)."""
        if self.record_path is not None:
            # The liveness lock goes last: while it exists nobody treats the other files as orphans.
            for suffix in OWNER_FILE_SUFFIXES:
                unlink_state_file(self.record_path.with_suffix(suffix))
            unlink_state_file(self.record_path.with_suffix(".lock"))
            self.record_path = None
        if self._record_lock_fd is not None:
            _untrack_close(self._record_lock_fd)
            self._record_lock_fd = None
        if self._cores_fd is not None:
            _untrack_close(self._cores_fd)  # the kernel drops every core lock of this descriptor
            self._cores_fd = None


def try_claim(root: Path, physical_cores: Sequence[int]) -> CoreClaim | None:
    """All-or-nothing: lock every core in ``physical_cores`` or none (caller holds the allocation lock).

    One descriptor holds the claim; each contiguous run of cores is one non-blocking OFD write lock.
    """
    fd = _open_cores_lock(root)
    try:
        for first, count in _runs(physical_cores):
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock_arg(fcntl.F_WRLCK, first, count))
    except OSError as exc:
        _untrack_close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None  # a core is held by another process
        raise
    except BaseException:
        _untrack_close(fd)
        raise
    return CoreClaim(root=root, physical_cores=tuple(physical_cores), _cores_fd=fd)


def probe_free(root: Path, physical_core_count: int) -> list[bool]:
    """Which physical cores are free right now (caller holds the allocation lock, so nobody races us).

    Asks the kernel for a lock conflicting with a range, marks it, and asks again for the parts of the range on
    either side of it: a few calls per owner, not one per core.
    """
    free = [True] * physical_core_count
    fd = _open_cores_lock(root)
    try:
        pending = [(0, physical_core_count)] if physical_core_count > 0 else []
        while pending:
            start, end = pending.pop()
            answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock_arg(fcntl.F_WRLCK, start, end - start))
            kind, _whence, held_start, held_length, _pid = _FLOCK.unpack(answer)
            if kind == fcntl.F_UNLCK:
                continue
            held_from = max(held_start, start)
            held_to = end if held_length == 0 else min(held_start + held_length, end)
            if held_to <= held_from:  # cannot happen (the lock conflicts with the range); never loop on it
                continue
            for core in range(held_from, held_to):
                free[core] = False
            if start < held_from:
                pending.append((start, held_from))
            if held_to < end:
                pending.append((held_to, end))
    finally:
        _untrack_close(fd)
    return free


def held_cores(root: Path, physical_core_count: int) -> list[int]:
    """Physical cores some live process holds (caller holds the allocation lock)."""
    return [core for core, is_free in enumerate(probe_free(root, physical_core_count)) if not is_free]


def owner_is_live(path: Path) -> bool:
    """True while the process behind an owner file (``.json``, ``.stats``, ``.models``) holds its liveness lock.

    The kernel drops that lock when the process dies, so this is the liveness test readers rely on; probing it
    with a shared lock never disturbs the owner. A missing lock, or anything but a regular file there, is dead.
    """
    try:
        fd = open_state_file(path.with_suffix(".lock"), os.O_RDONLY)
    except (OSError, StateError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _parse_record(data: object) -> OwnerRecord | None:
    if not isinstance(data, dict):
        return None
    try:
        cores = data["cores"]
        extra = data.get("extra", {})
        if not isinstance(cores, list) or not all(isinstance(c, int) for c in cores) or not isinstance(extra, dict):
            return None
        return OwnerRecord(
            pid=int(data["pid"]),
            command=str(data["command"]),
            runtime_version=str(data["runtime_version"]),
            cores=tuple(cores),
            tag=str(data.get("tag", "")),
            start_time=float(data.get("start_time", 0.0)),
            kernel_id=str(data.get("kernel_id", "")),
            lnc=int(data.get("lnc", 1)),
            extra={str(k): str(v) for k, v in extra.items()},
        )
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def read_owner_record(json_path: Path) -> OwnerRecord | None:
    """One owner record, read safely (regular file, bounded size); None when missing, unusable or malformed."""
    try:
        return _parse_record(read_state_json(json_path, "owner record", limit=_RECORD_LIMIT))
    except StateError:
        return None


class OwnerCache:
    """What a polling reader (a monitor sampling every second) keeps between listings of ``procs/``: each
    record parsed once (a record is written once, under a name no other process uses) and each liveness lock
    file kept open, so a liveness probe is one ``flock`` call instead of a walk from the root, an open and a close.
    """

    def __init__(self) -> None:
        self.records: dict[str, OwnerRecord] = {}
        self._lock_fds: dict[str, int] = {}

    def is_live(self, name: str, json_path: Path) -> bool:
        """:func:`owner_is_live` for the record ``name``, through a kept descriptor of its lock file."""
        fd = self._lock_fds.get(name)
        if fd is None:
            try:
                fd = open_state_file(json_path.with_suffix(".lock"), os.O_RDONLY)
            except (OSError, StateError):
                return False
            self._lock_fds[name] = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            pass
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self.forget(name)  # its owner is gone: never ask again
        return False

    def forget(self, name: str) -> None:
        """Drop what is kept for the record ``name`` (it vanished or its owner died)."""
        self.records.pop(name, None)
        fd = self._lock_fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def keep_only(self, names: set[str]) -> None:
        """Forget every record not in ``names``."""
        for gone in (self.records.keys() | self._lock_fds.keys()) - names:
            self.forget(gone)

    def close(self) -> None:
        """Close every kept descriptor."""
        self.keep_only(set())

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to close with
            self.close()


def list_owner_files(root: Path, cache: OwnerCache | None = None) -> list[tuple[OwnerRecord, Path]]:
    """Every live owner record with the path of its JSON file (its stats page is the same path + ``.stats``);
    a polling reader passes an :class:`OwnerCache` to parse each record once and probe liveness cheaply."""
    found: list[tuple[OwnerRecord, Path]] = []
    procs = root / "procs"
    try:
        names = list_state_dir(procs)
    except (OSError, StateError):
        return found
    if cache is not None:
        cache.keep_only({name for name in names if name.endswith(".json")})
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        json_path = procs / name
        if not (cache.is_live(name, json_path) if cache is not None else owner_is_live(json_path)):
            continue
        record = cache.records.get(name) if cache is not None else None
        if record is None:
            record = read_owner_record(json_path)
            if record is not None and cache is not None:
                cache.records[name] = record
        if record is not None:
            found.append((record, json_path))
    found.sort(key=lambda item: (item[0].pid, item[0].start_time))
    return found


def list_owners(root: Path, *, include_device_users: bool = False) -> list[OwnerRecord]:
    """Live runtimes owning cores, sorted by pid (with ``include_device_users`` also tools that merely opened
    the devices, as ``neuron-ls -a`` lists them); dead or unreadable records are skipped, never raised."""
    return [record for record, _path in list_owner_files(root) if include_device_users or record.cores]


def open_devices(root: Path, command: str, tag: str = "") -> CoreClaim:
    """Register this process as a device user without claiming cores (neuron-top, neuron-monitor do this).

    Like a tool that opens ``/dev/neuron*`` on real hardware, it shows in ``neuron-ls -a`` with runtime version
    ``NA`` until it exits (or calls ``release()`` on the returned handle).
    """
    import time as _time

    record = OwnerRecord(pid=os.getpid(), command=command, runtime_version="NA", cores=(), tag=tag or str(os.getpid()),
                         start_time=_time.time())
    claim = CoreClaim(root=root, physical_cores=())
    with allocation_lock(root):
        claim.publish(record)
    return claim


def _lock_is_free(lock_path: Path) -> bool | None:
    """Whether nobody holds an owner's liveness lock; None when the lock file vanished (its owner closed)."""
    try:
        fd = open_state_file(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except StateError:
        return True  # a link or a FIFO planted as a lock: no process can hold it, remove it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def remove_stale_records(root: Path) -> int:
    """Delete records of processes that died and temp files of writers that died (caller holds the allocation
    lock); returns how many records were removed.

    Race-safe: a runtime closing at the same moment deletes its own files without the allocation lock, so a
    file listed here may be gone when it is opened; a missing file is skipped, never an error.
    """
    removed = 0
    procs = root / "procs"
    names = list_state_dir(procs)
    for name in names:
        if not name.endswith(".lock") or name.startswith("."):
            continue
        lock_path = procs / name
        if not _lock_is_free(lock_path):
            continue
        fold_stats_page(root, lock_path.with_suffix(".stats"))  # a dead owner's counts stay in sysfs totals
        for suffix in OWNER_FILE_SUFFIXES:
            unlink_state_file(lock_path.with_suffix(suffix))
        unlink_state_file(lock_path)
        removed += 1
    present = set(list_state_dir(procs))
    for name in sorted(present):
        stem, dot, suffix = name.rpartition(".")
        if name.startswith(".") or not dot or f".{suffix}" not in OWNER_FILE_SUFFIXES:
            continue
        owner = ".".join(stem.split(".")[:2])
        if f"{owner}.lock" in present:
            continue
        orphan = procs / name
        if suffix == "stats":
            fold_stats_page(root, orphan)
        if unlink_state_file(orphan):
            removed += 1
    for directory in (root, procs, root / "faults"):
        remove_stale_temp_files(directory)
    return removed
