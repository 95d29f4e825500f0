"""DriverStatus: the emulated driver, the runtime's verdict on it, the 1.x daemon, this kernel's NEURON_* settings,
and the troubleshooting findings that apply right now, each with its remedy.

The rules are :func:`nrt_lab.monitor.diagnose`'s (the same findings ``nrt-lab doctor`` prints); this widget only
lays them out. Every message quoted is the runtime's own (driver gate, configuration parser, allocator).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import traitlets

from nrt_lab.monitor import (
    MIN_DRIVER_VERSION,
    SEVERITIES,
    MachineSnapshot,
    diagnose,
    environment_rows,
    format_core_ranges,
    parse_environment,
    printable,
    unreadable_machine,
)
from nrt_lab.runtime import RUNTIME_VERSION, Runtime, driver_gate, get_runtime
from nrt_lab.widgets._assets import CSS, DRIVER_STATUS_JS, widget_esm
from nrt_lab.widgets._base import LiveWidget
from nrt_lab.widgets._sampler import Observation
from nrt_lab.widgets._static import driver_status_html

__all__ = ["DriverStatus", "verdict_of"]


def verdict_of(state: Mapping[str, Any]) -> dict[str, str]:
    """The header's one line: ``level`` (error, warning or calm) and ``text``, about this kernel only.

    :func:`diagnose` grades each finding for this process ("error" only when this kernel is broken; cores held by
    others are "info", or "warning" when this kernel's own ``init()`` would fail), so the header is red only for
    an error, amber for a warning, and neutral otherwise — other kernels owning cores is not this kernel's fault.
    """
    findings = [f for f in state.get("findings") or [] if isinstance(f, Mapping)]
    errors = sum(1 for f in findings if f.get("severity") == "error")
    warnings = sum(1 for f in findings if f.get("severity") == "warning")
    if errors or not (state.get("gate") or {}).get("ok"):
        count = max(1, errors)
        return {"level": "error", "text": f"{count} problem{'s' if count != 1 else ''} for this kernel"}
    if warnings:
        return {"level": "warning", "text": f"{warnings} warning{'s' if warnings != 1 else ''} for this kernel"}
    notes = sum(1 for f in findings if f.get("severity") == "info")
    return {"level": "calm", "text": "OK for this kernel" + (f" ({notes} note{'s' if notes != 1 else ''})"
                                                            if notes else "")}


class DriverStatus(LiveWidget):
    """Driver package and versions, runtime gate verdict, neuron-rtd, NEURON_* config and docs/behaviour.md §9 findings.

    ``DriverStatus(root=None, period=2.0, autostart=True, env=None)``: ``env`` is the environment to check
    (default: this kernel's ``os.environ``, re-read on every update).
    """

    _esm = widget_esm(DRIVER_STATUS_JS)
    _css = CSS

    # True: only the one-line verdict (a header, as in the Dashboard); "Details" opens the tables.
    collapsed = traitlets.Bool(False).tag(sync=True)
    _default_period = 2.0
    _layout_keys = ()

    def _prepare(self, kwargs: dict[str, Any]) -> None:
        env = kwargs.pop("env", None)
        self._env: Mapping[str, str] | None = None if env is None else dict(env)
        self._pid = os.getpid()

    def set_environment(self, env: Mapping[str, str] | None) -> None:
        """Check ``env`` instead of ``os.environ`` from now on (None: back to ``os.environ``)."""
        self._env = None if env is None else dict(env)
        self.refresh()

    def findings(self) -> list[dict[str, str]]:
        """The troubleshooting findings currently shown (id, severity, title, detail, remedy, ref)."""
        return [dict(f) for f in self.current_state().get("findings", [])]

    def _build(self, observation: Observation) -> dict[str, Any]:
        env = dict(os.environ) if self._env is None else dict(self._env)
        snap = observation.snapshot
        runtime = get_runtime()
        live = runtime is not None and not runtime.closed
        state: dict[str, Any] = {
            "runtime_version": RUNTIME_VERSION,
            "runtime": self._runtime_line(runtime if live else None),
            "err": observation.machine_error,
        }
        if snap is None:
            state.update(instance="?", driver={"package": "aws-neuronx-dkms", "installed": "", "loaded": "",
                                               "reload_pending": False},
                         gate={"ok": False, "message": observation.machine_error, "minimum": str(MIN_DRIVER_VERSION)},
                         daemon={"running": False, "pid": 0, "text": "not running"},
                         config=[r.to_json() for r in environment_rows(env)], effective=self._effective(env, None),
                         findings=[unreadable_machine(observation.machine_error).to_json()])
            state["verdict"] = verdict_of(state)
            return state
        instance, driver = snap.instance, snap.driver
        verdict = snap.driver_error or driver_gate(driver)
        state.update(
            instance=f"{instance.name} (lnc {instance.lnc}, {instance.total_cores} NeuronCores on "
                     f"{len(instance.devices)} devices)",
            driver={
                "package": driver.package if driver else "aws-neuronx-dkms",
                "installed": str(driver.installed) if driver else "",
                "loaded": str(driver.loaded) if driver and driver.loaded is not None else "",
                "reload_pending": bool(driver and driver.reload_pending),
            },
            gate={"ok": verdict is None, "message": verdict or "", "minimum": str(MIN_DRIVER_VERSION)},
            daemon={"running": snap.daemon.running, "pid": snap.daemon.pid, "text": snap.daemon.text},
            config=[r.to_json() for r in environment_rows(env, snap)],
            effective=self._effective(env, snap),
            findings=[f.to_json() for f in diagnose(snap, env, pid=self._pid, runtime=runtime if live else None)],
        )
        state["verdict"] = verdict_of(state)
        return state

    @staticmethod
    def _runtime_line(runtime: Runtime | None) -> dict[str, Any]:
        if runtime is None:
            return {"live": False, "text": "no live runtime (nrt_lab.init() not called, or closed)"}
        return {"live": True, "text": f"runtime live: owns {format_core_ranges(runtime.cores, prefix='nc')} "
                                      f"(tag {printable(runtime.tag)}, lnc {runtime.lnc})"}

    @staticmethod
    def _effective(env: Mapping[str, str], snap: MachineSnapshot | None) -> dict[str, str]:
        config, _errors = parse_environment(env)
        if config is None:
            return {"cores requested": "(configuration invalid)"}
        if config.visible_cores is not None:
            cores = f"NEURON_RT_VISIBLE_CORES={config.visible_cores.raw}"
        elif config.num_cores:
            cores = f"any {config.num_cores} contiguous free (NEURON_RT_NUM_CORES)"
        else:
            cores = "all (default)"
        default_timeout = snap.instance.exec_timeout_default_s if snap is not None else None
        timeout = config.exec_timeout_s if config.exec_timeout_s is not None else default_timeout
        return {"cores requested": printable(cores), "process tag": printable(config.process_tag),
                "log level": config.log.describe(),
                "exec timeout": f"{timeout:g} s" if timeout is not None else "?",
                "lnc": str(config.lnc) if config.lnc is not None else "instance default"}

    def _static_html(self, state: Mapping[str, Any]) -> str:
        return driver_status_html(state)

    def _plain(self, state: Mapping[str, Any]) -> str:
        driver = state.get("driver") or {}
        gate = state.get("gate") or {}
        findings = state.get("findings") or []
        counts = {s: sum(1 for f in findings if f.get("severity") == s) for s in SEVERITIES}
        installed = driver.get("installed") or "not installed"
        loaded = driver.get("loaded") or "not loaded"
        return (f"DriverStatus({driver.get('package', 'aws-neuronx-dkms')} installed {installed}, loaded {loaded}; "
                f"runtime {state.get('runtime_version')} {'OK' if gate.get('ok') else 'FAILS'}; "
                f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes)")

    def handle_action(self, content: Mapping[str, Any]) -> None:
        """Front-end requests: ``{"action": "refresh"}``."""
        if content.get("action") == "refresh":
            self.refresh()

    def __init__(self, *, root: Any = None, period: float | None = None, autostart: bool = True,
                 env: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(root=root, period=period, autostart=autostart, env=env, **kwargs)
        self.on_msg(lambda _w, content, _b: self.handle_action(content) if isinstance(content, Mapping) else None)

