"""Owner records: which process holds which NeuronCores, as tools and widgets see it.

The owner process writes ``procs/<pid>.json`` after it has taken its core locks; readers trust a record only
while its liveness lock is held (see :mod:`nrt_lab.driver.locks`), so a SIGKILLed owner disappears at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DAEMON_KIND", "OwnerRecord", "command_line_of", "process_command_line"]


def command_line_of(parts: Sequence[str]) -> str:
    """A command line as owner records store it and ``ps -o args`` shows it (control characters turned into spaces)."""
    return "".join(ch if ch.isprintable() else " " for ch in " ".join(parts))


def process_command_line() -> str:
    """This process's command line as owner records store it (see :func:`command_line_of`)."""
    try:
        raw = Path("/proc/self/cmdline").read_bytes()
        parts = [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]
    except OSError:
        parts = []
    return command_line_of(parts or [sys.executable, *sys.argv])


# ``extra["kind"]`` of the owner record a Runtime 1.x daemon (neuron-rtd) publishes for the devices it holds: the
# one way the 2.x side (init's warning, the driver's refusal, the monitor) learns that a daemon runs.
DAEMON_KIND = "neuron-rtd"


@dataclass(frozen=True)
class OwnerRecord:
    """One live process that owns NeuronCores (or, for ``neuron-ls -a``, merely has devices open)."""

    pid: int
    command: str  # full command line joined by spaces, as ``ps -o args`` prints it
    runtime_version: str  # e.g. "2.34.10.0"; "NA" for a process that is not a Neuron runtime
    cores: tuple[int, ...]  # instance-global NeuronCore ids (logical ids on trn2), sorted
    tag: str = ""  # NEURON_PROCESS_TAG, defaults to the pid as a string
    start_time: float = 0.0  # time.time() when the cores were claimed
    kernel_id: str = ""  # Jupyter kernel id when the owner is a Jupyter kernel
    lnc: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_daemon(self) -> bool:
        """Whether this owner is a Runtime 1.x daemon (neuron-rtd) rather than a 2.x application."""
        return self.extra.get("kind") == DAEMON_KIND

    def to_json(self) -> dict[str, object]:
        """Plain JSON-able dict (the on-disk format of procs/<pid>.json)."""
        return {
            "pid": self.pid,
            "command": self.command,
            "runtime_version": self.runtime_version,
            "cores": list(self.cores),
            "tag": self.tag,
            "start_time": self.start_time,
            "kernel_id": self.kernel_id,
            "lnc": self.lnc,
            "extra": dict(self.extra),
        }
