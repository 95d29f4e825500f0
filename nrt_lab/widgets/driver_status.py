"""DriverStatus: the emulated driver, the runtime's verdict on it, the 1.x daemon, this kernel's NEURON_* settings,
and the troubleshooting findings of SPEC §9 that apply right now, each with its remedy.

Every message that the runtime would print is quoted exactly (the driver gate's text comes from
:func:`nrt_lab.runtime.driver_gate`; a malformed variable's text from :class:`nrt_lab.runtime.ConfigError`), so
what the widget shows is what ``nrt_lab.init()`` would say.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nrt_lab.driver import MIN_DRIVER_VERSION, OwnerRecord
from nrt_lab.runtime import RUNTIME_VERSION, ConfigError, RuntimeConfig, driver_gate, get_runtime
from nrt_lab.runtime.allocation import largest_free_run
from nrt_lab.widgets._assets import COMMON_JS, CSS, DRIVER_STATUS_JS
from nrt_lab.widgets._base import LiveWidget
from nrt_lab.widgets._sampler import Observation
from nrt_lab.widgets._static import driver_status_html, format_ranges, short

__all__ = ["DriverStatus", "Finding", "daemon_state", "check_environment"]

Finding = dict[str, str]  # id, severity (error|warning|info), title, symptom, remedy, ref

BUSY_PREFIX = "NeuronCore(s) not available - Requested:"
NOT_CONTIGUOUS = "Neuron cores are not contiguous"

# Variables the runtime documents (SPEC §1); anything else NEURON_RT_* is probably a typo.
_KNOWN = {
    "NEURON_RT_VISIBLE_CORES", "NEURON_RT_NUM_CORES", "NEURON_RT_LOG_LEVEL", "NEURON_RT_LOG_LOCATION",
    "NEURON_RT_EXEC_TIMEOUT", "NEURON_RT_VALIDATE_HASH", "NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS",
    "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", "NEURON_RT_ALLOW_LEGACY_NEFF", "NEURON_RT_STOCHASTIC_ROUNDING_EN",
    "NEURON_RT_STOCHASTIC_ROUNDING_SEED", "NEURON_RT_RESET_CORES", "NEURON_RT_NUMERICAL_ERRORS_VERBOSITY",
    "NEURON_RT_ENABLE_DGE_NOTIFICATIONS", "NEURON_RT_DBG_DUMP_INPUTS_ON_ERR", "NEURON_RT_DEBUG_MEMLOG_MAX_SIZE",
    "NEURON_RT_CONTIGUOUS_SCRATCHPAD", "NEURON_RT_ENABLE_DEVICE_MEMORY_OOM_LOG", "NEURON_RT_ROOT_COMM_ID",
    "NEURON_RT_ONE_THREAD_PER_CORE", "NEURON_RT_RANKS_PER_NETWORK_PROXY",
    "NEURON_RT_LOW_LATENCY_TASKS_CPU_AFFINITY", "NEURON_RT_LOCAL_CORE_DUMP_DIRECTORY",
    "NEURON_RT_S3_CORE_DUMP_PREFIX", "NEURON_RT_DEBUG_STREAM_BUFFER_SIZE", "NEURON_RT_VIRTUAL_CORE_SIZE",
    "NEURON_LOGICAL_NC_CONFIG", "NEURONCORE_GROUP_SIZES", "NEURON_PROCESS_TAG", "NEURON_FAIL_ON_NAN",
    "NEURON_SCRATCHPAD_PAGE_SIZE",
}
_KNOWN_PREFIXES = ("NEURON_RT_LOG_LEVEL_", "NEURON_RT_LOG_LOCATION_", "NEURON_RT_PROFILE_BUF_",
                   "NEURON_RT_INSPECT_", "NEURON_RT_ULTRASERVER_")


def _finding(fid: str, severity: str, title: str, remedy: str, symptom: str = "", ref: str = "") -> Finding:
    return {"id": fid, "severity": severity, "title": title, "symptom": symptom, "remedy": remedy, "ref": ref}


def daemon_state(root: Path) -> dict[str, Any]:
    """The legacy neuron-rtd (runtime 1.x) daemon as seen in ``<root>/rtd/``: running, stale or not running."""
    rtd = root / "rtd"
    try:
        entries = sorted(rtd.iterdir()) if rtd.is_dir() else []
    except OSError:
        entries = []
    pid_files = [p for p in entries if p.suffix == ".pid"]
    sockets = [p for p in entries if p.suffix in (".sock", ".socket") or p.is_socket()]
    for pid_file in pid_files:
        try:
            pid = int(pid_file.read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return {"running": False, "pid": pid, "text": f"not running (stale pid file {pid_file.name}, pid {pid})"}
        except PermissionError:
            pass
        where = f", socket {sockets[0].name}" if sockets else ""
        return {"running": True, "pid": pid, "text": f"running (pid {pid}{where})"}
    return {"running": False, "pid": 0, "text": "not running"}


def _parse_all(env: Mapping[str, str]) -> tuple[RuntimeConfig | None, dict[str, ConfigError]]:
    """Parse like init() does, but keep going after a bad variable so every problem is listed."""
    work = dict(env)
    errors: dict[str, ConfigError] = {}
    for _ in range(64):
        try:
            return RuntimeConfig.from_env(work, pid=os.getpid()), errors
        except ConfigError as exc:
            if exc.variable in errors or exc.variable not in work:
                return None, errors
            errors[exc.variable] = exc
            del work[exc.variable]
    return None, errors


def check_environment(env: Mapping[str, str], total_cores: int | None, instance_family: str = "",
                      instance_name: str = "") -> tuple[list[dict[str, str]], list[Finding], RuntimeConfig | None]:
    """(config table rows, findings, parsed config) for the NEURON* variables of ``env``."""
    names = sorted(k for k in env if k.startswith(("NEURON", "AWS_NEURON")))
    config, errors = _parse_all(env)
    rows: list[dict[str, str]] = []
    findings: list[Finding] = []
    for name in names:
        value = env[name]
        status, note = "ok", ""
        if name in errors:
            status, note = "error", str(errors[name])
        elif name == "NEURONCORE_GROUP_SIZES":
            status, note = "deprecated", ("NeuronCore groups have no effect since Neuron 1.20 and are ignored; use "
                                          "NEURON_RT_VISIBLE_CORES or NEURON_RT_NUM_CORES")
        elif name == "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS" and value.strip() not in ("", "0"):
            status, note = "deprecated", "removed in Neuron SDK 2.32: setting it only logs a WARNING"
        elif name == "NEURON_RT_VIRTUAL_CORE_SIZE":
            status, note = "deprecated", "legacy name of NEURON_LOGICAL_NC_CONFIG"
        elif name == "NEURON_RT_ENABLE_DGE_NOTIFICATIONS" and value.strip() not in ("", "0"):
            status, note = "warning", "risks NRT_EXEC_SW_NQ_OVERFLOW (SPEC §9.13); 0 is the default"
        elif name.startswith("NEURON_RT_") and name not in _KNOWN and not name.startswith(_KNOWN_PREFIXES):
            status, note = "info", "not a variable this runtime reads (typo?)"
        rows.append({"name": name, "value": value, "status": status, "note": note})

    for name, exc in errors.items():
        findings.append(_finding(
            f"config:{name}", "error", f"{name} is malformed: init() fails with NRT_FAILURE",
            f"fix or unset {name} (accepted: {exc.accepted}), then nrt_lab.close() and nrt_lab.init()",
            symptom=str(exc), ref="SPEC §0, §1.5"))
    if config is not None and config.visible_cores is not None and total_cores is not None:
        visible = config.visible_cores
        beyond = [c for c in visible.cores if c >= total_cores]
        if not visible.cores:
            findings.append(_finding(
                "config:visible-empty", "error", "NEURON_RT_VISIBLE_CORES is empty: no NeuronCore is visible",
                "unset it or name the cores to use, e.g. NEURON_RT_VISIBLE_CORES=0-1",
                symptom="NEURON_RT_VISIBLE_CORES is empty: no NeuronCore is visible to this process", ref="SPEC §0"))
        elif beyond:
            exc = ConfigError("NEURON_RT_VISIBLE_CORES", visible.raw,
                              f"NeuronCore {beyond[0]} does not exist on {instance_name} ({total_cores} NeuronCores)",
                              f"ids and ranges between 0 and {total_cores - 1}")
            rows = [dict(r, status="error", note=str(exc)) if r["name"] == "NEURON_RT_VISIBLE_CORES" else r
                    for r in rows]
            findings.append(_finding(
                "config:visible-range", "error", "NEURON_RT_VISIBLE_CORES names cores this instance does not have",
                f"use ids between 0 and {total_cores - 1}", symptom=str(exc), ref="SPEC §0, §9.12"))
        elif not visible.contiguous:
            rows = [dict(r, status="error", note=NOT_CONTIGUOUS) if r["name"] == "NEURON_RT_VISIBLE_CORES" else r
                    for r in rows]
            findings.append(_finding(
                "config:visible-gap", "error", "NEURON_RT_VISIBLE_CORES has a gap: init() fails",
                "name one contiguous run of cores (e.g. 3-5 instead of 3,5,6)", symptom=NOT_CONTIGUOUS,
                ref="SPEC §1.1, containers"))
    if config is not None and config.ncg is not None:
        conflict = ""
        if config.num_cores:
            conflict = (f"NEURONCORE_GROUP_SIZES={config.ncg.raw} cannot be combined with NEURON_RT_NUM_CORES="
                        f"{config.num_cores}; unset NEURONCORE_GROUP_SIZES")
        elif config.visible_cores is not None and config.ncg.total > len(config.visible_cores.cores):
            conflict = (f"NEURONCORE_GROUP_SIZES={config.ncg.raw} needs {config.ncg.total} NeuronCores but "
                        f"NEURON_RT_VISIBLE_CORES={config.visible_cores.raw} makes {len(config.visible_cores.cores)} "
                        "visible; unset NEURONCORE_GROUP_SIZES or make its total ≤ the visible cores")
        findings.append(_finding(
            "config:ncg", "error" if conflict else "warning",
            "NEURONCORE_GROUP_SIZES (NCG) is set: deprecated since Neuron 1.20, ignored by runtime 2.x"
            + (" — and it conflicts with the allocation variables, so init() fails" if conflict else ""),
            "unset NEURONCORE_GROUP_SIZES; choose cores with NEURON_RT_VISIBLE_CORES or NEURON_RT_NUM_CORES "
            "(one process per group of cores)",
            symptom=conflict or (f"NEURONCORE_GROUP_SIZES={config.ncg.raw} is deprecated (no effect since Neuron "
                                 "1.20) and is ignored; use NEURON_RT_VISIBLE_CORES or NEURON_RT_NUM_CORES to "
                                 "choose NeuronCores instead"),
            ref="SPEC §0, §1.1, §5 (NCG)"))
    if config is not None and config.async_inflight_set:
        findings.append(_finding(
            "config:async", "warning", "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS was removed (SDK 2.32)",
            "unset it; use nrt_lab's asynchronous execution API", ref="SPEC §0, §1.3"))
    if config is not None and config.lnc is not None and instance_family and not instance_family.startswith("trn2") \
            and config.lnc != 1:
        findings.append(_finding(
            "config:lnc", "error", f"NEURON_LOGICAL_NC_CONFIG={config.lnc} on an instance without logical NeuronCores",
            "unset NEURON_LOGICAL_NC_CONFIG (only trn2 accepts 2)", ref="SPEC §1.1"))
    for row in rows:
        if row["name"] == "NEURON_RT_ENABLE_DGE_NOTIFICATIONS" and row["status"] == "warning":
            findings.append(_finding(
                "config:dge", "warning", "DGE notifications are enabled",
                "set NEURON_RT_ENABLE_DGE_NOTIFICATIONS to 0 if executions fail with NRT_EXEC_SW_NQ_OVERFLOW",
                symptom="Failure: NRT_EXEC_SW_NQ_OVERFLOW in nrt_execute()", ref="SPEC §9.13"))
    return rows, findings, config


def _who(owner: OwnerRecord) -> str:
    kind = f"Jupyter kernel {owner.kernel_id}" if owner.kernel_id else "process"
    return f"{kind} pid {owner.pid} (tag {owner.tag}, {short(owner.command, 40)}) holds {format_ranges(owner.cores)}"


class DriverStatus(LiveWidget):
    """Driver package and versions, runtime gate verdict, neuron-rtd, NEURON_* config and SPEC §9 findings.

    ``DriverStatus(root=None, period=2.0, autostart=True, env=None)``: ``env`` is the environment to check
    (default: this kernel's ``os.environ``, re-read on every update).
    """

    _esm = COMMON_JS + DRIVER_STATUS_JS
    _css = CSS
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

    def findings(self) -> list[Finding]:
        """The troubleshooting findings currently shown (severity, title, symptom, remedy, ref)."""
        return [dict(f) for f in self.current_state().get("findings", [])]

    def _build(self, observation: Observation) -> dict[str, Any]:
        env = dict(os.environ) if self._env is None else dict(self._env)
        instance = observation.instance
        driver = observation.driver
        verdict = observation.machine_error or observation.driver_error or driver_gate(driver)
        state: dict[str, Any] = {
            "instance": "?" if instance is None else f"{instance.name} (lnc {instance.lnc}, {instance.total_cores} "
                                                      f"NeuronCores on {len(instance.devices)} devices)",
            "driver": {
                "package": driver.package if driver else "aws-neuronx-dkms",
                "installed": str(driver.installed) if driver else "",
                "loaded": str(driver.loaded) if driver and driver.loaded is not None else "",
                "reload_pending": bool(driver and driver.reload_pending),
            },
            "gate": {"ok": verdict is None, "message": verdict or "", "minimum": str(MIN_DRIVER_VERSION)},
            "runtime_version": RUNTIME_VERSION,
            "daemon": daemon_state(observation.root),
            "err": observation.machine_error,
        }
        findings: list[Finding] = []
        if observation.machine_error:
            findings.append(_finding("machine", "error", "The emulated machine cannot be read",
                                     "fix or re-create it: nrt-lab machine destroy && nrt-lab machine create --instance "
                                     "trn1.32xlarge", symptom=observation.machine_error))
        # --- the driver (SPEC §5, §9.2, §9.3)
        if observation.machine_error:
            pass  # the driver cannot be judged without a machine
        elif observation.driver_error:
            findings.append(_finding("driver:corrupt", "error", "driver.json is corrupted",
                                     "nrt-lab driver uninstall && nrt-lab driver install",
                                     symptom=observation.driver_error))
        elif driver is None or driver.loaded is None:
            findings.append(_finding(
                "driver:missing", "error",
                "The Neuron driver is not installed" if driver is None else "The Neuron driver module is not loaded",
                "install the driver package: nrt-lab driver install (the real machine: install aws-neuronx-dkms)",
                symptom=verdict or "", ref="SPEC §5, §9.2"))
        elif verdict is not None:
            findings.append(_finding(
                "driver:old", "error", f"The loaded driver {driver.loaded} is older than the runtime needs "
                                       f"(≥ {MIN_DRIVER_VERSION})",
                "upgrade: nrt-lab driver install --version 2.24.7.0 (then reload it once no process owns a core)",
                symptom=verdict, ref="SPEC §5, §9.2"))
        if driver is not None and driver.reload_pending and not observation.driver_error:
            users = "; ".join(_who(o) for o in observation.owners) or "none"
            findings.append(_finding(
                "driver:reload", "warning",
                f"Driver {driver.installed} is installed but {driver.loaded or 'no module'} is loaded: reload pending",
                "stop every user of the driver (lsmod 'Used by' must be 0; Jupyter kernels too: nrt_lab.close() or "
                f"restart them), then nrt-lab driver reload (rmmod neuron; modprobe neuron). Users now: {users}",
                symptom=f"This Neuron Runtime (compatibility id: X) is not compatible with the installed "
                        f"aws-neuron-dkms package (installed {driver.installed}, loaded {driver.loaded})",
                ref="SPEC §5, §9.3"))
        if instance is not None and driver is not None and driver.loaded is not None \
                and instance.family.startswith("inf1") and (driver.loaded.major, driver.loaded.minor) > (2, 24):
            findings.append(_finding(
                "driver:inf1", "warning", f"Driver {driver.loaded} no longer supports Inf1",
                "pin the driver to 2.24.*: nrt-lab driver install --version 2.24.7.0", ref="SPEC §5"))
        # --- the legacy daemon
        if state["daemon"]["running"]:
            findings.append(_finding(
                "rtd", "warning", "neuron-rtd (runtime 1.x) is running: running libnrt beside it is undefined",
                "stop neuron-rtd for libnrt applications (restart it only for 1.x applications)",
                ref="SPEC §5, LIBNRT"))
        # --- this kernel's environment
        total = instance.total_cores if instance is not None else None
        rows, env_findings, config = check_environment(
            env, total, instance.family if instance else "", instance.name if instance else "")
        findings.extend(env_findings)
        state["config"] = rows
        runtime = get_runtime()
        live = runtime is not None and not runtime.closed
        if live:
            assert runtime is not None
            state["runtime"] = {"live": True, "text": f"runtime live: owns {format_ranges(runtime.cores)} "
                                                      f"(tag {runtime.tag}, lnc {runtime.lnc})"}
            if tuple(sorted((k, v) for k, v in env.items() if k.startswith("NEURON"))) != runtime.config.neuron_env:
                findings.append(_finding(
                    "config:changed", "info", "NEURON_* variables changed since this kernel's init()",
                    "they take effect at the next init: nrt_lab.close() then nrt_lab.init()", ref="SPEC §0"))
        else:
            state["runtime"] = {"live": False, "text": "no live runtime (nrt_lab.init() not called, or closed)"}
        state["effective"] = self._effective(config, instance.exec_timeout_default_s if instance else None)
        # --- ownership (SPEC §9.4)
        if instance is not None:
            findings.extend(self._ownership_findings(observation, config, live))
        state["findings"] = findings
        return state

    def _effective(self, config: RuntimeConfig | None, default_timeout: int | None) -> dict[str, str]:
        if config is None:
            return {"cores requested": "(configuration invalid)"}
        if config.visible_cores is not None:
            cores = f"NEURON_RT_VISIBLE_CORES={config.visible_cores.raw}"
        elif config.num_cores:
            cores = f"any {config.num_cores} contiguous free (NEURON_RT_NUM_CORES)"
        else:
            cores = "all (default)"
        timeout = config.exec_timeout_s if config.exec_timeout_s is not None else default_timeout
        return {"cores requested": cores, "process tag": config.process_tag,
                "log level": config.log.describe(),
                "exec timeout": f"{timeout:g} s" if timeout is not None else "?",
                "lnc": str(config.lnc) if config.lnc is not None else "instance default"}

    def _ownership_findings(self, observation: Observation, config: RuntimeConfig | None, live: bool) -> list[Finding]:
        instance = observation.instance
        assert instance is not None
        total = instance.total_cores
        findings: list[Finding] = []
        others = [o for o in observation.owners if o.pid != self._pid]
        mine = [o for o in observation.owners if o.pid == self._pid]
        if mine and sum(len(o.cores) for o in mine) >= total and total > 1:
            findings.append(_finding(
                "cores:all-mine", "warning", f"This kernel holds all {total} NeuronCores: no other process or "
                                             "notebook can start a runtime",
                "call nrt_lab.close() when done (or CoreMap's Release), or set NEURON_RT_NUM_CORES / "
                "NEURON_RT_VISIBLE_CORES before nrt_lab.init() to take only what you need", ref="SPEC §0, §9.4"))
        if live or config is None or not others:
            for other in others:
                if other.kernel_id:
                    findings.append(_finding(
                        f"cores:kernel:{other.pid}", "info", f"Another Jupyter kernel holds NeuronCores: {_who(other)}",
                        "nrt_lab.close() in that notebook (or restart its kernel) to free them", ref="SPEC §9.3, §9.4"))
            return findings
        busy = {c for o in others for c in o.cores}
        free = [c not in busy for c in range(total)]
        message = ""
        blockers: list[OwnerRecord] = []
        if config.visible_cores is not None:
            wanted = [c for c in config.visible_cores.cores if c < total]
            if wanted and len(wanted) == len(config.visible_cores.cores) and config.visible_cores.contiguous:
                blockers = [o for o in others if set(o.cores) & set(wanted)]
                if blockers:
                    message = f"{BUSY_PREFIX}nc{wanted[0]}-nc{wanted[-1]} Available:{largest_free_run(free)}"
        elif config.num_cores:
            if largest_free_run(free) < config.num_cores:
                blockers = others
                message = f"{BUSY_PREFIX}{config.num_cores} Available:{largest_free_run(free)}"
        else:
            blockers = others
            message = f"{BUSY_PREFIX}nc0-nc{total - 1} Available:{largest_free_run(free)}"
        if message:
            who = "; ".join(_who(o) for o in blockers)
            findings.append(_finding(
                "cores:busy", "error", "nrt_lab.init() in this kernel would fail: NeuronCores are held by another "
                                       f"process or kernel ({who})",
                "stop the other process or kernel (nrt_lab.close() there, or CoreMap's Terminate), or ask for free "
                "cores with NEURON_RT_NUM_CORES / NEURON_RT_VISIBLE_CORES",
                symptom=message, ref="SPEC §1.5, §9.4"))
        return findings

    def _static_html(self, state: Mapping[str, Any]) -> str:
        return driver_status_html(state)

    def _plain(self, state: Mapping[str, Any]) -> str:
        driver = state.get("driver") or {}
        gate = state.get("gate") or {}
        findings = state.get("findings") or []
        counts = {s: sum(1 for f in findings if f.get("severity") == s) for s in ("error", "warning", "info")}
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

