"""Process actions every face offers: release this process's NeuronCores, terminate another runtime.

:func:`terminate` sends SIGTERM only to a process that provably is the runtime its owner record names. A record
is a file any local user with access to the state root could write, so the pid in it is checked against the
kernel: the record's liveness lock must be held *by that pid* (``/proc/locks``), the process must have started
before it published the record, its command line must be the record's, the record must be a runtime's (cores
and a runtime version), and it must not be this process. Anything else is refused with the reason.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import psutil

from nrt_lab.driver import format_core_ranges, open_machine
from nrt_lab.driver.locks import list_owner_files
from nrt_lab.driver.owners import OwnerRecord, command_line_of
from nrt_lab.monitor.snapshot import printable

__all__ = [
    "ActionRefused",
    "START_TIME_TOLERANCE_S",
    "TerminateTarget",
    "release",
    "verify_target",
    "terminate",
]

START_TIME_TOLERANCE_S = 2.0  # a record's start time may precede the process's by clock granularity at most
_PROC_LOCKS = Path("/proc/locks")


class ActionRefused(ValueError):
    """An action was refused (not an owner, this process, a record that does not match its process, ...)."""


@dataclass(frozen=True)
class TerminateTarget:
    """A verified runtime process: its record (cores in its own LNC view) and the path of that record."""

    record: OwnerRecord
    path: Path


def release() -> str:
    """``nrt_lab.close()`` in this process: frees its NeuronCores; returns what happened."""
    from nrt_lab.runtime import close, get_runtime

    runtime = get_runtime()
    if runtime is None or runtime.closed:
        return "This process holds no NeuronCore (no live runtime): nothing to release."
    cores = format_core_ranges(runtime.cores, prefix="nc")
    close()
    return f"Released this process's NeuronCores {cores} (nrt_lab.close())."


def _lock_holders(path: Path) -> set[int] | None:
    """Pids holding a FLOCK on ``path`` according to ``/proc/locks`` (None when it cannot be read)."""
    try:
        info = os.stat(path)
        text = _PROC_LOCKS.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    holders: set[int] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":  # a waiter's line reads "N: -> FLOCK ...": not a holder
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            same = (int(major, 16), int(minor, 16), int(inode)) == (os.major(info.st_dev), os.minor(info.st_dev),
                                                                    info.st_ino)
        except ValueError:
            continue
        if same:
            holders.add(pid)
    return holders


def verify_target(pid: int, root: Path | str | None = None, start_time: float | None = None) -> TerminateTarget:
    """The owner record of runtime ``pid``, after checking that the record and the process agree (see the module
    docstring); ``start_time`` must be the record's when given (the process selected earlier). Raises
    :class:`ActionRefused` naming the check that failed."""
    pid = int(pid)
    if pid == os.getpid():
        raise ActionRefused(f"Refused: pid {pid} is this process; release its NeuronCores instead of terminating it.")
    if pid <= 0:
        raise ActionRefused(f"Refused: pid {pid} is not a process id.")
    machine = open_machine(root)
    found = [(record, path) for record, path in list_owner_files(machine.root) if record.pid == pid]
    runtimes = [(record, path) for record, path in found if record.cores and record.runtime_version not in ("", "NA")]
    if not runtimes:
        what = "is not a Neuron runtime (it holds no NeuronCore)" if found else "does not own any NeuronCore"
        raise ActionRefused(f"Refused: pid {pid} {what} on this machine; only runtimes that own cores can be "
                            "terminated from here.")
    if start_time is not None:
        runtimes = [(record, path) for record, path in runtimes if record.start_time == start_time]
        if not runtimes:
            raise ActionRefused(f"Refused: pid {pid} no longer owns the NeuronCores it held when it was selected "
                                "(it ended or released them); nothing sent.")
    record, path = runtimes[0]
    holders = _lock_holders(path.with_suffix(".lock"))
    if holders is None:
        raise ActionRefused(f"Refused: cannot verify that pid {pid} holds its owner record's lock (no /proc/locks).")
    if pid not in holders:
        raise ActionRefused(f"Refused: the owner record naming pid {pid} is not held by pid {pid} "
                            f"(lock held by {', '.join(map(str, sorted(holders))) or 'nobody'}): a forged or "
                            "stale record; nothing sent.")
    try:
        process = psutil.Process(pid)
        created = process.create_time()
        command = command_line_of(process.cmdline())
    except psutil.NoSuchProcess:
        raise ActionRefused(f"Refused: pid {pid} has already exited.") from None
    except (psutil.Error, OSError) as exc:
        raise ActionRefused(f"Refused: cannot inspect pid {pid} ({exc}); nothing sent.") from None
    if created > record.start_time + START_TIME_TOLERANCE_S:
        raise ActionRefused(f"Refused: pid {pid} started after its owner record was written (a different process "
                            "now has that pid); nothing sent.")
    if command != record.command:
        raise ActionRefused(f"Refused: pid {pid} runs {printable(command[:60])!r}, not the command of its owner "
                            f"record {printable(record.command[:60])!r}; nothing sent.")
    return TerminateTarget(record, path)


def terminate(pid: int, root: Path | str | None = None, start_time: float | None = None) -> str:
    """Send SIGTERM to runtime ``pid`` once :func:`verify_target` agrees; returns what was done."""
    target = verify_target(pid, root, start_time)
    try:
        os.kill(target.record.pid, signal.SIGTERM)
    except ProcessLookupError:
        raise ActionRefused(f"Refused: pid {pid} has already exited.") from None
    except PermissionError:
        raise ActionRefused(f"Refused: not permitted to signal pid {pid}.") from None
    cores = format_core_ranges(target.record.cores, prefix="nc")
    return (f"Sent SIGTERM to pid {pid} ({printable(target.record.tag)}); its NeuronCores {cores} are freed when it "
            "exits.")
