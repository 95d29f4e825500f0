"""One background sampling thread: reads the machine, hands each due widget an :class:`Observation`.

The thread never talks to the front end: it only calls the widgets' ``_apply`` (which sets trait values).
A :class:`Sampler` serves one widget, or the three widgets of a dashboard (one thread for all of them): on each
tick it reads the machine once and updates only the widgets whose own period has elapsed and that are not
paused. Periods are at least :data:`MIN_PERIOD` seconds, so no widget changes more than 10 times a second.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nrt_lab.driver import DriverState, Machine, OwnerRecord, StateError, open_machine
from nrt_lab.hardware import InstanceSpec
from nrt_lab.monitor import MachineSnapshot, Monitor

__all__ = [
    "MIN_PERIOD",
    "MAX_PERIOD",
    "Observation",
    "Client",
    "Sampler",
    "current_kernel_id",
]

MIN_PERIOD = 0.1  # seconds: at most 10 updates per second per widget
MAX_PERIOD = 3600.0


@dataclass(frozen=True)
class Observation:
    """What one tick read: the instance, the driver, live owners (machine-view core ids), optional rates."""

    taken: float  # time.time()
    root: Path
    instance: InstanceSpec | None
    instance_id: str
    driver: DriverState | None
    driver_error: str  # a corrupted driver.json, else ""
    machine_error: str  # an unusable state root, else ""
    owners: tuple[OwnerRecord, ...]  # cores in the machine's logical ids
    snapshot: MachineSnapshot | None  # only when a due widget needs rates


class Client(Protocol):
    """What the sampler needs from a widget."""

    def _needs_snapshot(self) -> bool: ...

    def _due(self, now: float) -> bool: ...

    def _apply(self, observation: Observation | None, error: str = "") -> None: ...

    def _scheduled(self, now: float) -> None: ...

    def _next_due(self) -> float | None: ...


def current_kernel_id() -> str:
    """The Jupyter kernel id of this process ("" outside a running kernel), from the kernel's connection file.

    Looks only at an already running ``IPKernelApp``: importing ipykernel's application module here would
    replace the comm factory of a process that merely imported ipykernel.
    """
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    if kernelapp is None:
        return ""
    try:
        app_class = kernelapp.IPKernelApp
        if not app_class.initialized():
            return ""
        name = Path(str(app_class.instance().connection_file)).stem
    except Exception:  # noqa: BLE001 - an ipykernel without these names: no kernel id
        return ""
    return name[len("kernel-"):] if name.startswith("kernel-") else name


class Sampler:
    """One daemon thread reading the machine at ``root`` for its clients (widgets); ``stop()`` ends it."""

    def __init__(self, root: Path | str | None = None, name: str = "widget") -> None:
        self.root = Path(root) if root is not None else None
        self.name = name
        self._clients: list[Client] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._read_lock = threading.Lock()
        self._machine: Machine | None = None
        self._monitor: Monitor | None = None
        self.ticks = 0

    # ------------------------------------------------------------------ clients
    def attach(self, client: Client) -> None:
        """Serve ``client`` from now on."""
        if client not in self._clients:
            self._clients = [*self._clients, client]
        self.wake()

    def detach(self, client: Client) -> None:
        """Stop serving ``client``; the thread ends when no client is left."""
        self._clients = [c for c in self._clients if c is not client]
        if not self._clients:
            self.stop()
        else:
            self.wake()

    @property
    def clients(self) -> tuple[Client, ...]:
        """The widgets this sampler updates."""
        return tuple(self._clients)

    # ------------------------------------------------------------------ thread
    @property
    def alive(self) -> bool:
        """True while the sampling thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        """The sampling thread (None before the first start)."""
        return self._thread

    def start(self) -> None:
        """Start the thread (no-op while it runs)."""
        if self.alive:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"nrt_lab.widgets.{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait for it (up to ``timeout`` seconds)."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout)

    def wake(self) -> None:
        """Re-evaluate the schedule now (a period changed, a widget was resumed, or stop was asked)."""
        self._wake.set()

    # ------------------------------------------------------------------ reading
    def machine(self) -> Machine:
        """The machine handle (opened on first use)."""
        if self._machine is None:
            self._machine = open_machine(self.root)
        return self._machine

    def observe(self, need_snapshot: bool) -> Observation:
        """Read the machine once (thread-safe); never raises for a broken machine, it reports it."""
        with self._read_lock:
            now = time.time()
            try:
                machine = self.machine()
                state = machine.state()
            except (StateError, OSError) as exc:
                return Observation(now, self.root or Path("."), None, "", None, "", str(exc), (), None)
            driver_error = ""
            try:
                driver = machine.driver()
            except StateError as exc:
                driver, driver_error = None, str(exc)
            owners = tuple(machine.owners_in_machine_view())
            snapshot = None
            if need_snapshot:
                if self._monitor is None:
                    self._monitor = Monitor(machine.root)
                snapshot = self._monitor.sample()
            return Observation(now, machine.root, state.instance, state.instance_id, driver, driver_error, "",
                               owners, snapshot)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            now = time.monotonic()
            clients = self._clients
            due = [c for c in clients if c._due(now)]
            if due:
                observation: Observation | None = None
                error = ""
                try:
                    observation = self.observe(any(c._needs_snapshot() for c in due))
                except Exception as exc:  # noqa: BLE001 - a sampler must survive anything the machine does
                    error = f"{type(exc).__name__}: {exc}"
                for client in due:
                    if self._stopping.is_set():
                        break
                    with contextlib.suppress(Exception):
                        client._apply(observation, error)
                    client._scheduled(now)
                self.ticks += 1
            deadlines = [d for d in (c._next_due() for c in self._clients) if d is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            self._wake.wait(timeout)
