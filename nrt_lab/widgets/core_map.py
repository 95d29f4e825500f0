"""CoreMap: which process owns which NeuronCore, as a devices × cores grid and as the device topology.

Cores are coloured by owner process (a colour derived from pid and start time, so it never changes while the
process lives) and keyed in a legend with pid, ``NEURON_PROCESS_TAG``, command line and, for Jupyter kernels,
the kernel id. This kernel's cores are outlined. Two actions:

* **release** this kernel's cores: ``nrt_lab.close()`` in this process;
* **terminate** another owner: two steps, :meth:`CoreMap.request_terminate` (select) then
  :meth:`CoreMap.confirm_terminate` (confirm), which sends SIGTERM through :func:`nrt_lab.monitor.terminate`.
  Only current owners can be selected, never this process; the confirmation must name the same process (same
  pid and start time) that was selected, and the signal is sent only when the owner record, its lock holder,
  the process's start time and command line agree (a forged record is refused).

Record fields (command, tag, kernel id) come from other processes' files: they are shown with control
characters escaped (:func:`nrt_lab.monitor.printable`).
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from typing import Any, NoReturn

import traitlets

from nrt_lab.hardware import InstanceSpec, classify, grid_position
from nrt_lab.monitor import ActionRefused, OwnerView, printable, release, terminate
from nrt_lab.widgets._assets import CORE_MAP_JS, CSS, widget_esm
from nrt_lab.widgets._base import LiveWidget
from nrt_lab.widgets._palette import PALETTE
from nrt_lab.widgets._sampler import Observation, current_kernel_id
from nrt_lab.widgets._static import core_map_html, format_ranges
from nrt_lab.widgets.top_view import TopView

__all__ = ["CoreMap", "ActionRefused", "MESSAGE_TTL_S", "device_layout"]

MESSAGE_TTL_S = 10.0  # an action's outcome ("Released ...") is cleared this long after it was said


def device_layout(instance: InstanceSpec) -> tuple[str, list[list[float]], list[list[int]]]:
    """(topology kind, device positions in [0, 1]², links ``[a, b, wrap]``) for drawing the device graph."""
    table = [list(d.connected_to) for d in instance.devices]
    try:
        kind: str = classify(table)
    except ValueError:
        kind = "other"
    count = len(table)
    positions: list[list[float]]
    if kind == "torus":
        positions = [[col / 3.0, row / 3.0] for row, col in (grid_position(i) for i in range(count))]
    elif kind == "chain":
        positions = [[i / max(1, count - 1), 0.5] for i in range(count)]
    elif kind == "single":
        positions = [[0.5, 0.5]]
    else:  # ring (and anything unexpected): a circle
        positions = [
            [round(0.5 + 0.5 * math.sin(2 * math.pi * i / count), 4), round(0.5 - 0.5 * math.cos(2 * math.pi * i / count), 4)]
            for i in range(count)
        ]
    links: list[list[int]] = []
    for device in instance.devices:
        for other in device.connected_to:
            if device.index < other:
                wrap = 0
                if kind == "torus":
                    (r1, c1), (r2, c2) = grid_position(device.index), grid_position(other)
                    wrap = int(abs(r1 - r2) > 1 or abs(c1 - c2) > 1)
                links.append([device.index, other, wrap])
    return kind, positions, links


class CoreMap(LiveWidget):
    """Devices × cores grid coloured by owner, with legend, topology view, release and guarded terminate.

    ``CoreMap(root=None, period=1.0, autostart=True)``: ``root`` is the machine's state root (default: the
    usual resolution, ``NRT_LAB_ROOT`` first), ``period`` the seconds between reads (≥ 0.1).
    """

    _esm = widget_esm(CORE_MAP_JS)
    _css = CSS

    view = traitlets.Unicode("grid").tag(sync=True)  # "grid" or "topology"
    pending = traitlets.Dict().tag(sync=True)  # the owner selected for termination, awaiting confirmation
    message = traitlets.Unicode("").tag(sync=True)  # outcome of the last action
    # False in the Dashboard: TopView's grid already shows every core (owner colour as frame, utilization as
    # fill), so the core map shows only its legend, actions and topology there, not a second grid.
    show_grid = traitlets.Bool(True).tag(sync=True)

    _default_period = 1.0

    def __init__(self, *, root: Any = None, period: float | None = None, autostart: bool = True,
                 **kwargs: Any) -> None:
        self._pid = os.getpid()
        self._kernel_id = current_kernel_id()
        self._pending_record: OwnerView | None = None
        self._said_at: float | None = None
        super().__init__(root=root, period=period, autostart=autostart, **kwargs)
        self.on_msg(self._on_front_end_message)

    # ------------------------------------------------------------------ state
    def _build(self, observation: Observation) -> dict[str, Any]:
        instance = observation.instance
        if instance is None:
            return {"inst": None, "err": observation.machine_error or "the machine could not be read"}
        kind, positions, links = device_layout(instance)
        state: dict[str, Any] = {
            "inst": {
                "name": instance.name, "lnc": instance.lnc, "total": instance.total_cores, "kind": kind,
                "devices": [[d.first_core, d.core_count] for d in instance.devices], "pos": positions,
                "links": links, "version": instance.neuroncore_version,
                "mem": [d.memory_bytes for d in instance.devices],
            },
            "me": {"pid": self._pid, "kernel": self._kernel_id},
            "err": "",
        }
        self._expire(observation)
        owner_of: dict[int, int] = {}
        colors = PALETTE.assign((o.pid, o.start_time) for o in observation.owners)
        for owner in observation.owners:
            state[f"o{owner.pid}"] = {
                # A Runtime 1.x daemon is labelled as such on its cores (its tag is only its pid).
                "pid": owner.pid, "tag": "neuron-rtd" if owner.is_daemon else (printable(owner.tag) or str(owner.pid)),
                "cmd": printable(owner.command),
                "kernel": printable(owner.kernel_id), "rt": printable(owner.runtime_version),
                "start": owner.start_time, "color": colors[owner.pid],
                "cores": list(owner.machine_cores),
            }
            for core in owner.machine_cores:
                owner_of[core] = owner.pid
        for core in range(instance.total_cores):
            state[f"c{core}"] = owner_of.get(core, 0)
        snap = observation.snapshot
        if self.view == "topology" and snap is not None and observation.with_rates:
            # The topology view is live: each core's utilization (%, whole numbers) fills its square.
            util = [0.0] * instance.total_cores
            flops = [0.0] * instance.total_cores
            holders = [0] * instance.total_cores
            for rt in snap.runtimes:
                TopView._place(rt, instance, util, flops, holders)
            state["u"] = [round(u / instance.lnc) for u in util]
        return state

    def _needs_snapshot(self) -> bool:
        return self.view == "topology"  # utilization needs the stats pages; the grid view needs owners only

    @traitlets.observe("view")
    def _view_changed(self, change: Any) -> None:
        if change["new"] == "topology" and getattr(self, "_sampler", None) is not None:
            self._sampler.wake()

    def _static_html(self, state: Mapping[str, Any]) -> str:
        return core_map_html(state, grid=self.show_grid)

    def _plain(self, state: Mapping[str, Any]) -> str:
        inst = state.get("inst")
        if not inst:
            return f"CoreMap(error: {state.get('err', '')})"
        owners = [v for k, v in state.items() if k.startswith("o") and k[1:].isdigit()]
        total = int(inst["total"])
        owned = sum(1 for core in range(total) if state.get(f"c{core}"))
        mine = sum(len(o["cores"]) for o in owners if o["pid"] == self._pid)
        return (f"CoreMap({inst['name']} lnc={inst['lnc']}: {total} NeuronCores on {len(inst['devices'])} devices, "
                f"{inst['kind']} topology; {owned} owned by {len(owners)} process{'es' if len(owners) != 1 else ''}, "
                f"{total - owned} free; this kernel holds {mine})")

    # ------------------------------------------------------------------ reading helpers
    def owners(self) -> list[dict[str, Any]]:
        """The owners as shown in the legend (pid, tag, cmd, kernel, rt, start, color, cores), oldest first."""
        state = self.current_state()
        owners = [v for k, v in state.items() if k.startswith("o") and k[1:].isdigit()]
        return sorted(owners, key=lambda o: (o["start"], o["pid"]))

    def core_owners(self) -> dict[int, int]:
        """Core id -> owner pid (0 = free), as currently shown."""
        state = self.current_state()
        total = int((state.get("inst") or {}).get("total", 0))
        return {core: int(state.get(f"c{core}", 0)) for core in range(total)}

    def highlighted_cores(self) -> list[int]:
        """The cores drawn as this kernel's (owned by ``os.getpid()``)."""
        return [core for core, pid in self.core_owners().items() if pid == self._pid]

    # ------------------------------------------------------------------ actions
    def release_own_cores(self) -> str:
        """``nrt_lab.close()`` in this kernel: frees its NeuronCores; returns what happened."""
        text = release()
        self._say(text)
        self.refresh()
        return text

    def _current_owner(self, pid: int) -> OwnerView | None:
        for owner in self._sampler.observe(False).owners:
            if owner.pid == pid:
                return owner
        return None

    def request_terminate(self, pid: int) -> dict[str, Any]:
        """Step 1: select owner ``pid`` for termination; returns the pending selection (ActionRefused if not allowed)."""
        pid = int(pid)
        if pid == self._pid:
            self._refuse(f"Refused: pid {pid} is this kernel; use release_own_cores() instead of terminating it.")
        owner = self._current_owner(pid)
        if owner is None:
            self._refuse(f"Refused: pid {pid} does not own any NeuronCore on this machine; only owners can be "
                         "terminated from here.")
        assert owner is not None
        self._pending_record = owner
        pending = {
            "pid": owner.pid, "tag": printable(owner.tag), "cmd": printable(owner.command),
            "kernel": printable(owner.kernel_id), "cores": format_ranges(owner.machine_cores),
            "start": owner.start_time, "token": secrets.token_hex(4),
        }
        with self._nrt_lock:
            self.pending = pending
        self._say(f"Selected pid {owner.pid} ({pending['tag']}, cores {pending['cores']}) for termination: "
                  "confirm to send SIGTERM, or cancel.")
        return dict(pending)

    def confirm_terminate(self, pid: int, token: str | None = None) -> str:
        """Step 2: send SIGTERM to the selected owner ``pid`` (must match the pending selection and still own cores)."""
        pid = int(pid)
        record = self._pending_record
        pending = dict(self.pending)
        if record is None or not pending:
            self._refuse(f"Refused: no termination is pending; select pid {pid} first (request_terminate).")
        assert record is not None
        if record.pid != pid or (token is not None and token != pending.get("token")):
            self._refuse(f"Refused: pid {pid} is not the process selected for termination (pid {record.pid}).")
        try:
            text = terminate(pid, self._sampler.monitor.machine.root, start_time=record.start_time)
        except ActionRefused as exc:
            self._clear_pending()
            self._refuse(str(exc))
        self._clear_pending()
        self._say(text)
        return text

    def cancel_terminate(self) -> None:
        """Drop the pending termination selection."""
        had = self._pending_record
        self._clear_pending()
        if had is not None:
            self._say(f"Cancelled: pid {had.pid} will not be terminated.")

    def handle_action(self, content: Mapping[str, Any]) -> str:
        """Run an action sent by the front end (``release``, ``select``, ``confirm``, ``cancel``, ``refresh``)."""
        action = content.get("action")
        try:
            if action == "release":
                return self.release_own_cores()
            if action == "select":
                self.request_terminate(int(content["pid"]))
                return self.message
            if action == "confirm":
                return self.confirm_terminate(int(content["pid"]), content.get("token"))
            if action == "cancel":
                self.cancel_terminate()
                return self.message
            if action == "refresh":
                self.refresh()
                return ""
        except ActionRefused as exc:
            return str(exc)
        except (KeyError, TypeError, ValueError) as exc:
            self._say(f"Refused: malformed request {dict(content)!r} ({exc}).")
            return self.message
        return ""

    def _on_front_end_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, Mapping):
            self.handle_action(content)

    def _clear_pending(self) -> None:
        self._pending_record = None
        with self._nrt_lock:
            self.pending = {}

    def _say(self, text: str) -> None:
        with self._nrt_lock:
            self.message = text
            self._said_at = self._sampler.clock.monotonic()

    def _expire(self, observation: Observation) -> None:
        """Clear what went stale: a pending selection whose owner is gone, a message older than MESSAGE_TTL_S."""
        if self._pending_record is not None:
            key = (self._pending_record.pid, self._pending_record.start_time)
            if key not in {(o.pid, o.start_time) for o in observation.owners}:
                self._clear_pending()
                self._say(f"Pid {key[0]} no longer owns NeuronCores; nothing to terminate.")
                return
        if (self.message and not self.pending and self._said_at is not None
                and self._sampler.clock.monotonic() - self._said_at >= MESSAGE_TTL_S):
            self.message = ""
            self._said_at = None

    def _refuse(self, text: str) -> NoReturn:
        self._say(text)
        raise ActionRefused(text)
