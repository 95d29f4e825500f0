"""One background sampling thread: reads the machine, hands each due widget an :class:`Observation`.

The thread never talks to the front end: it only calls the widgets' ``_apply`` (which sets trait values).
A :class:`Sampler` serves one widget, or the three widgets of a dashboard (one thread for all of them): on each
tick it reads the machine once and updates only the widgets whose own period has elapsed and that are not
paused. Periods are at least :data:`MIN_PERIOD` seconds, so no widget changes more than 10 times a second.
Time comes from a :class:`~nrt_lab.monitor.Clock` (default: the real clock): tests pass a fake one and call
:meth:`Sampler.tick` themselves instead of sleeping.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nrt_lab.hardware import InstanceSpec
from nrt_lab.monitor import SYSTEM_CLOCK, Clock, DriverState, MachineSnapshot, Monitor, OwnerView

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
    """What one tick read: the machine snapshot (None when the state root is unusable, see ``machine_error``);
    its ``runtimes`` (rates) are filled only when a due widget needs them (``with_rates``)."""

    taken: float  # the clock's time()
    root: Path
    snapshot: MachineSnapshot | None
    machine_error: str  # an unusable state root, else ""
    with_rates: bool = False

    @property
    def instance(self) -> InstanceSpec | None:
        """The instance (None when the machine could not be read)."""
        return None if self.snapshot is None else self.snapshot.instance

    @property
    def driver(self) -> DriverState | None:
        """The driver (None: not installed, unreadable, or no machine)."""
        return None if self.snapshot is None else self.snapshot.driver

    @property
    def owners(self) -> tuple[OwnerView, ...]:
        """Live runtimes holding cores (machine-view core ids in ``machine_cores``)."""
        return () if self.snapshot is None else self.snapshot.runtime_owners


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

    def __init__(self, root: Path | str | None = None, name: str = "widget", clock: Clock | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.name = name
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._clients: list[Client] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._read_lock = threading.Lock()
        self._ticked = threading.Condition()
        self._monitor = Monitor(self.root, clock=self.clock)
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
    @property
    def monitor(self) -> Monitor:
        """The read-side monitor this sampler reads through."""
        return self._monitor

    def observe(self, need_snapshot: bool) -> Observation:
        """Read the machine once (thread-safe); never raises for a broken machine, it reports it."""
        with self._read_lock:
            now = self.clock.time()
            try:
                snap = self._monitor.sample(runtimes=need_snapshot)
            except Exception as exc:  # noqa: BLE001 - an unusable root or a corrupted file: shown, never raised
                return Observation(now, self.root or Path("."), None, str(exc) or type(exc).__name__)
            return Observation(now, snap.root, snap, "", need_snapshot)

    def tick(self) -> float | None:
        """One scheduling step at the clock's monotonic time: read the machine once for every due client and
        update them; returns the seconds until the next client is due (None: none is)."""
        now = self.clock.monotonic()
        due = [c for c in self._clients if c._due(now)]
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
            with self._ticked:
                self.ticks += 1
                self._ticked.notify_all()
        deadlines = [d for d in (c._next_due() for c in self._clients) if d is not None]
        return max(0.0, min(deadlines) - self.clock.monotonic()) if deadlines else None

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds after a tick (checked now and after every tick) or ``timeout`` real
        seconds pass; returns the last value of ``predicate()``. Lets callers wait on updates without sleeping."""
        with self._ticked:
            return self._ticked.wait_for(predicate, timeout)

    def wait_ticks(self, count: int, timeout: float) -> bool:
        """Block until :attr:`ticks` reaches ``count`` or ``timeout`` real seconds pass; True if it was reached."""
        return self.wait_for(lambda: self.ticks >= count, timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            timeout = self.tick()
            self._wake.wait(timeout)
