"""The troubleshooting rules (the catalogue of ``docs/behaviour.md``, after the Neuron troubleshooting guide):
what is wrong with the machine, the driver, the legacy daemon and a process's ``NEURON_*`` environment, each
with its remedy.

:func:`diagnose` is the one place these rules live: the DriverStatus widget, neuron-top and ``nrt-lab doctor``
all render its findings. Every message the runtime would print is produced by the runtime's own code (the
driver gate by :func:`nrt_lab.runtime.driver_gate`, a malformed variable by the configuration parser, the busy
line by the allocator), so what a finding quotes is what ``nrt_lab.init()`` would say.

Severity is about the process asking (``pid``): "error" only when that process is broken or ``init()`` would
fail whatever other processes do (no driver, a malformed variable); cores held by other processes are a
"warning" (``init()`` *would* fail if this process called it) or "info", never a red error for a process that
merely looks at the machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from nrt_lab.driver import MIN_DRIVER_VERSION, format_core_ranges
from nrt_lab.errors import ConfigError
from nrt_lab.monitor.snapshot import MachineSnapshot, OwnerView, printable

if TYPE_CHECKING:
    from nrt_lab.runtime import Runtime, RuntimeConfig

# The runtime package is imported inside the functions that need it: it is heavy, and faces that only read
# snapshots (the Prometheus exporter, neuron-monitor) import nrt_lab.monitor and must start fast.

__all__ = [
    "Severity",
    "SEVERITIES",
    "Finding",
    "ConfigRow",
    "diagnose",
    "unreadable_machine",
    "environment_rows",
    "parse_environment",
    "describe_owner",
    "installed_frameworks",
    "mxnet_1_5_error",
    "neff_findings",
    "UPGRADE_DRIVER_VERSION",
]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
UPGRADE_DRIVER_VERSION = "2.24.7.0"  # the driver version remedies suggest (the newest that still supports Inf1)


@dataclass(frozen=True)
class Finding:
    """One troubleshooting finding: what is wrong (``detail`` quotes the runtime's message) and the remedy."""

    id: str
    severity: Severity
    title: str
    detail: str
    remedy: str
    ref: str = ""

    def to_json(self) -> dict[str, str]:
        """Plain JSON-able dict (``nrt-lab doctor --json``, the widget's state)."""
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ConfigRow:
    """One ``NEURON*`` variable of the environment checked: its value, a status and a note."""

    name: str
    value: str
    status: str  # ok, error, deprecated, warning, info
    note: str

    def to_json(self) -> dict[str, str]:
        """Plain JSON-able dict."""
        return asdict(self)


def _short(text: str, limit: int = 40) -> str:
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_owner(owner: OwnerView) -> str:
    """``Jupyter kernel K pid P (tag T, command) holds ncA-ncB``, control characters escaped."""
    kind = f"Jupyter kernel {printable(owner.kernel_id)}" if owner.kernel_id else "process"
    cores = format_core_ranges(owner.machine_cores, prefix="nc")
    return f"{kind} pid {owner.pid} (tag {printable(owner.tag)}, {_short(owner.command)}) holds {cores}"


def parse_environment(env: Mapping[str, str], pid: int | None = None) -> tuple[RuntimeConfig | None,
                                                                                dict[str, ConfigError]]:
    """Parse like ``init()`` does, but keep going after a bad variable so every problem is listed."""
    from nrt_lab.runtime import RuntimeConfig

    work = dict(env)
    errors: dict[str, ConfigError] = {}
    for _ in range(64):
        try:
            return RuntimeConfig.from_env(work, pid=os.getpid() if pid is None else pid), errors
        except ConfigError as exc:
            if exc.variable in errors or exc.variable not in work:
                return None, errors
            errors[exc.variable] = exc
            del work[exc.variable]
    return None, errors


def environment_rows(env: Mapping[str, str], snapshot: MachineSnapshot | None = None) -> list[ConfigRow]:
    """One row per ``NEURON*`` / ``AWS_NEURON*`` variable of ``env``: ok, error (the parser's message), deprecated…"""
    _config, errors = parse_environment(env)
    placement = _placement_error(_config, snapshot) if snapshot is not None else None
    from nrt_lab.runtime.config import (
        ASYNC_REMOVED_WARNING,
        KNOWN_VARIABLES,
        closest_known_variable,
        ncg_deprecation_warning,
    )

    rows: list[ConfigRow] = []
    for name in sorted(k for k in env if k.startswith(("NEURON", "AWS_NEURON"))):
        value = env[name]
        status, note = "ok", ""
        info = KNOWN_VARIABLES.get(name)
        if name in errors:
            status, note = "error", str(errors[name])
        elif name == "NEURON_RT_VISIBLE_CORES" and placement is not None:
            status, note = "error", placement[1]
        elif name == "NEURONCORE_GROUP_SIZES":
            status, note = "deprecated", ncg_deprecation_warning(printable(value))
        elif name == "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS" and value.strip() not in ("", "0"):
            status, note = "deprecated", ASYNC_REMOVED_WARNING
        elif info is not None and info.status in ("legacy", "deprecated", "removed"):
            status = "deprecated"
            note = f"{info.meaning} ({info.status}" + (f"; use {info.instead})" if info.instead else ")")
        elif name == "NEURON_RT_ENABLE_DGE_NOTIFICATIONS" and value.strip() not in ("", "0"):
            status, note = "warning", "risks NRT_EXEC_SW_NQ_OVERFLOW; 0 is the default"
        elif name.startswith("NEURON_RT_") and info is None:
            guess = closest_known_variable(name)
            status = "info"
            note = "not a variable this runtime reads" + (f" (did you mean {guess}?)" if guess else " (typo?)")
        rows.append(ConfigRow(name, printable(value), status, note))
    return rows


def _placement_error(config: RuntimeConfig | None, snapshot: MachineSnapshot) -> tuple[str, str] | None:
    """(finding id, the runtime's message) when the variables name cores this machine cannot give, else None."""
    from nrt_lab.runtime.allocation import NoCoresVisibleError, NotContiguousError, plan_request

    if config is None:
        return None
    try:
        plan_request(config, snapshot.instance)
    except NoCoresVisibleError as exc:
        return "config:visible-empty", str(exc)
    except NotContiguousError as exc:
        return "config:visible-gap", str(exc)
    except ConfigError as exc:
        return "config:visible-range", str(exc)
    return None


def unreadable_machine(error: str) -> Finding:
    """The finding for a state root that cannot be read at all (every other rule needs the machine)."""
    return Finding("machine", "error", "The emulated machine cannot be read", printable(error),
                   "fix or re-create it: nrt-lab machine destroy && nrt-lab machine create --instance trn1.32xlarge")


def diagnose(snapshot: MachineSnapshot, env: Mapping[str, str], *, pid: int | None = None,
             runtime: Runtime | None = None, frameworks: Mapping[str, str] | None = None) -> list[Finding]:
    """Every finding that applies to process ``pid`` (default: this one) with environment ``env`` on the machine
    of ``snapshot``; ``runtime`` is that process's live runtime, if any (default: this process's); ``frameworks``
    the installed Neuron framework distributions and versions (default: :func:`installed_frameworks`)."""
    if pid is None:
        pid = os.getpid()
        if runtime is None:
            from nrt_lab.runtime import get_runtime

            runtime = get_runtime()
    live = runtime is not None and not runtime.closed
    findings: list[Finding] = []
    findings.extend(_driver_findings(snapshot))
    findings.extend(_daemon_findings(snapshot))
    findings.extend(_framework_findings(installed_frameworks() if frameworks is None else frameworks))
    config, env_findings = _environment_findings(env, snapshot)
    findings.extend(env_findings)
    if live and runtime is not None and _neuron_env(env) != runtime.config.neuron_env:
        findings.append(Finding(
            "config:changed", "info", "NEURON_* variables changed since this process's init()", "",
            "they take effect at the next init: nrt_lab.close() then nrt_lab.init()", "docs/behaviour.md §0"))
    findings.extend(_ownership_findings(snapshot, config, pid, live))
    return findings


def _neuron_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith("NEURON")))


def _driver_findings(snapshot: MachineSnapshot) -> list[Finding]:
    from nrt_lab.runtime import RUNTIME_VERSION, driver_gate

    driver = snapshot.driver
    findings: list[Finding] = []
    if snapshot.driver_error:
        return [Finding("driver:corrupt", "error", "driver.json is corrupted", printable(snapshot.driver_error),
                        "nrt-lab driver uninstall && nrt-lab driver install")]
    verdict = driver_gate(driver)
    if driver is None or driver.loaded is None:
        findings.append(Finding(
            "driver:missing", "error",
            "The Neuron driver is not installed" if driver is None else "The Neuron driver module is not loaded",
            verdict or "", "install the driver package: nrt-lab driver install (the real machine: install "
                           "aws-neuronx-dkms)", "troubleshooting 2, driver"))
    elif verdict is not None:
        findings.append(Finding(
            "driver:old", "error",
            f"The loaded driver {driver.loaded} is older than runtime {RUNTIME_VERSION} needs (≥ {MIN_DRIVER_VERSION})",
            verdict, f"upgrade: nrt-lab driver install --version {UPGRADE_DRIVER_VERSION} (then reload it once no "
                     "process owns a core)", "troubleshooting 2, driver"))
    if driver is not None and driver.reload_pending:
        users = "; ".join(describe_owner(o) for o in snapshot.owners if o.is_runtime) or "none"
        findings.append(Finding(
            "driver:reload", "warning",
            f"Driver {driver.installed} is installed but {driver.loaded or 'no module'} is loaded: reload pending",
            f"This Neuron Runtime (compatibility id: X) is not compatible with the installed aws-neuron-dkms package "
            f"(installed {driver.installed}, loaded {driver.loaded})",
            "stop every user of the driver (lsmod 'Used by' must be 0; Jupyter kernels too: nrt_lab.close() or "
            f"restart them), then nrt-lab driver reload (rmmod neuron; modprobe neuron). Users now: {users}",
            "troubleshooting 3"))
    if driver is not None and driver.loaded is not None and snapshot.instance.family.startswith("inf1") \
            and (driver.loaded.major, driver.loaded.minor) > (2, 24):
        findings.append(Finding(
            "driver:inf1", "warning", f"Driver {driver.loaded} no longer supports Inf1", "",
            f"pin the driver to 2.24.*: nrt-lab driver install --version {UPGRADE_DRIVER_VERSION}", "driver"))
    return findings


def _daemon_findings(snapshot: MachineSnapshot) -> list[Finding]:
    """Runtime 1.x daemons holding devices (their owner records), and 2.x applications running beside them."""
    daemons = snapshot.daemon.daemons
    if not daemons:
        return []
    units = " ".join(sorted({f"neuron-rtd@{d.extra['instance']}" if d.extra.get("instance") else "neuron-rtd"
                             for d in daemons}))
    held = format_core_ranges([c for d in daemons for c in d.machine_cores], prefix="nc")
    findings = [Finding(
        "rtd", "warning", "neuron-rtd (Runtime 1.x) is running: running Runtime 2.x applications beside it is "
        "undefined", f"neuron-rtd {snapshot.daemon.text}; its NeuronCores {held} are busy for 2.x applications",
        f"stop it for Runtime 2.x applications: sudo systemctl stop {units} (here: nrt-lab systemctl stop {units}); "
        "leaving 1.x for good: also nrt-lab pkg remove aws-neuron-runtime; restart it only for 1.x applications",
        "docs/legacy.md")]
    beside = [o for o in snapshot.owners if o.is_runtime and not o.is_daemon]
    if beside:
        findings.append(Finding(
            "rtd:beside", "warning", "Runtime 1.x and 2.x run side by side",
            "2.x: " + "; ".join(describe_owner(o) for o in beside) + f" | 1.x: {snapshot.daemon.text}",
            "run one runtime at a time: move the 1.x applications to Runtime 2.x (nrt-lab migrate-check finds "
            f"what to change), then stop the daemon (nrt-lab systemctl stop {units})", "docs/legacy.md"))
    return findings


# Distributions of the Neuron MXNet integration and the versions that need Runtime 1.x (the seed's FAQ: "Neuron
# MXNet 1.5.1 does not support Neuron Runtime 2.x").
_MXNET_DISTRIBUTIONS = ("mxnet-neuron", "mxnet_neuron")


def installed_frameworks() -> dict[str, str]:
    """The Neuron framework distributions installed in this Python environment, with their versions."""
    from importlib import metadata

    found: dict[str, str] = {}
    for name in _MXNET_DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def mxnet_1_5_error(version: str) -> str | None:
    """Why Neuron MXNet ``version`` cannot run on Runtime 2.x (None when it can): 1.5.x needs neuron-rtd."""
    parts = version.split(".")
    if parts[:2] != ["1", "5"]:
        return None
    return (f"Neuron MXNet {version} (MXNet 1.5.1) does not support Neuron Runtime 2.x (libnrt.so): it talks only "
            "to the Runtime 1.x daemon neuron-rtd, and it is in maintenance mode")


def _framework_findings(frameworks: Mapping[str, str]) -> list[Finding]:
    findings: list[Finding] = []
    for name, version in sorted(frameworks.items()):
        error = mxnet_1_5_error(version) if name in _MXNET_DISTRIBUTIONS else None
        if error:
            findings.append(Finding(
                "framework:mxnet15", "error", f"{name} {version} cannot run on Neuron Runtime 2.x", error,
                "move to Neuron MXNet 1.8 (mx_neuron with aws-mx 1.8), which runs on Runtime 2.x; keep MXNet 1.5.1 "
                "only on a machine that still runs neuron-rtd (Runtime 1.x)", "docs/legacy.md"))
    return findings


def neff_findings(label: str, data: bytes, snapshot: MachineSnapshot | None = None) -> list[Finding]:
    """What the runtimes say about the NEFF whose first bytes are ``data`` (``label`` names it): too new for
    Runtime 2.x, too new for a running neuron-rtd, or loadable by both (a 1.x model needs no recompiling)."""
    from nrt_lab.errors import NrtError, NrtStatus
    from nrt_lab.neff import HEADER_SIZE, RUNTIME_1X_NEFF_VERSION, parse_neff_header

    try:
        header = parse_neff_header(data[:HEADER_SIZE])
    except NrtError as exc:
        if exc.status == NrtStatus.UNSUPPORTED_NEFF_VERSION:  # the runtime's own check and message
            return [Finding(
                "neff:version", "error", f"{label} is newer than Runtime 2.x loads", exc.message,
                "compile with the Neuron compiler of the same SDK release as the runtime", "docs/behaviour.md §8")]
        return [Finding("neff:invalid", "error", f"{label} is not a valid NEFF", exc.message,
                        "recompile the model (neuronx-cc) or check that the file is complete", "docs/behaviour.md §8")]
    major, minor = header.neff_version
    version = f"{major}.{minor}"
    old_max = RUNTIME_1X_NEFF_VERSION
    if header.neff_version > old_max:
        daemon = snapshot is not None and snapshot.daemon.running
        return [Finding(
            "neff:rtd", "warning" if daemon else "info",
            f"{label} is NEFF {version}: Runtime 2.x only" + (" (a neuron-rtd is running)" if daemon else ""),
            f"neuron-rtd loads NEFF <= {old_max[0]}.{old_max[1]} (load fails with 10: NEFF version mismatch "
            f"supported: {old_max[0]}.{old_max[1]} received: {version})",
            "run it with Runtime 2.x (in process: nrt_lab.init() and Model.load), not through the daemon",
            "docs/legacy.md")]
    return [Finding(
        "neff:both", "info", f"{label} is NEFF {version}: runs on Runtime 1.x and 2.x",
        "a model compiled for Runtime 1.x loads unchanged in Runtime 2.x",
        "no recompiling needed to migrate it to Runtime 2.x", "docs/legacy.md")]


def _environment_findings(env: Mapping[str, str], snapshot: MachineSnapshot) -> tuple[RuntimeConfig | None,
                                                                                       list[Finding]]:
    config, errors = parse_environment(env)
    findings: list[Finding] = []
    for name, exc in errors.items():
        findings.append(Finding(
            f"config:{name}", "error", f"{name} is malformed: init() fails with NRT_FAILURE", str(exc),
            f"fix or unset {name} (accepted: {exc.accepted}), then nrt_lab.close() and nrt_lab.init()",
            "docs/behaviour.md §0, §1"))
    placement = _placement_error(config, snapshot)
    if placement is not None:
        fid, message = placement
        remedy = {
            "config:visible-empty": "unset it or name the cores to use, e.g. NEURON_RT_VISIBLE_CORES=0-1",
            "config:visible-gap": "name one contiguous run of cores (e.g. 3-5 instead of 3,5,6)",
            "config:visible-range": f"use ids between 0 and {snapshot.instance.total_cores - 1}",
        }[fid]
        title = {
            "config:visible-empty": "NEURON_RT_VISIBLE_CORES is empty: no NeuronCore is visible",
            "config:visible-gap": "NEURON_RT_VISIBLE_CORES has a gap: init() fails",
            "config:visible-range": "NEURON_RT_VISIBLE_CORES names cores this instance does not have",
        }[fid]
        findings.append(Finding(fid, "error", title, message, remedy, "docs/behaviour.md §0; troubleshooting 12"))
    if config is not None and config.ncg is not None:
        findings.append(_ncg_finding(config))
    if config is not None and config.async_inflight_set:
        from nrt_lab.runtime.config import ASYNC_REMOVED_WARNING

        findings.append(Finding(
            "config:async", "warning", "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS was removed (SDK 2.32)",
            ASYNC_REMOVED_WARNING,
            "unset it; use nrt_lab's asynchronous execution API", "docs/behaviour.md §0"))
    instance = snapshot.instance
    if config is not None and config.lnc is not None and config.lnc != 1 and not instance.family.startswith("trn2"):
        findings.append(Finding(
            "config:lnc", "error", f"NEURON_LOGICAL_NC_CONFIG={config.lnc} on an instance without logical NeuronCores",
            f"{instance.name} has no logical NeuronCores", "unset NEURON_LOGICAL_NC_CONFIG (only trn2 accepts 2)",
            "docs/behaviour.md §1"))
    if env.get("NEURON_RT_ENABLE_DGE_NOTIFICATIONS", "0").strip() not in ("", "0"):
        findings.append(Finding(
            "config:dge", "warning", "DGE notifications are enabled",
            "Failure: NRT_EXEC_SW_NQ_OVERFLOW in nrt_execute()",
            "set NEURON_RT_ENABLE_DGE_NOTIFICATIONS to 0 if executions fail with NRT_EXEC_SW_NQ_OVERFLOW",
            "troubleshooting 13"))
    if config is not None:
        findings.extend(_log_findings(config))
    return config, findings


def _ncg_finding(config: RuntimeConfig) -> Finding:
    """NEURONCORE_GROUP_SIZES set: the runtime's deprecation WARNING, or its conflict error when init() fails."""
    from nrt_lab.runtime.config import ncg_conflict, ncg_deprecation_warning

    assert config.ncg is not None
    conflict = ncg_conflict(config, mxnet=False)
    return Finding(
        "config:ncg", "error" if conflict else "warning",
        "NEURONCORE_GROUP_SIZES (NCG) is set: deprecated since Neuron 1.20, ignored by runtime 2.x"
        + (" — and it conflicts with the allocation variables, so init() fails" if conflict else ""),
        conflict or ncg_deprecation_warning(printable(config.ncg.raw)),
        "unset NEURONCORE_GROUP_SIZES; choose cores with NEURON_RT_VISIBLE_CORES or NEURON_RT_NUM_CORES "
        "(one process per group of cores)", "docs/behaviour.md §0 (NCG)")


def _log_findings(config: RuntimeConfig) -> list[Finding]:
    """Log settings that hide what a user will look for (errors on the console, the syslog)."""
    findings: list[Finding] = []
    if config.log.default_level is not None and config.log.default_level.name == "QUIET":
        findings.append(Finding(
            "log:quiet", "warning", "NEURON_RT_LOG_LEVEL=QUIET: the runtime prints nothing, errors included",
            "failures (busy cores, a missing driver, a bad NEFF) only show as status codes",
            "unset NEURON_RT_LOG_LEVEL (default: INFO to syslog, ERROR to the console) or set ERROR",
            "docs/behaviour.md §0 (log destinations), §4"))
    return findings


def _ownership_findings(snapshot: MachineSnapshot, config: RuntimeConfig | None, pid: int,
                        live: bool) -> list[Finding]:
    total = snapshot.instance.total_cores
    findings: list[Finding] = []
    runtimes = snapshot.runtime_owners
    others = [o for o in runtimes if o.pid != pid]
    mine = [o for o in runtimes if o.pid == pid]
    if mine and sum(len(o.machine_cores) for o in mine) >= total > 1:
        findings.append(Finding(
            "cores:all-mine", "warning",
            f"This process holds all {total} NeuronCores: no other process or notebook can start a runtime", "",
            "call nrt_lab.close() when done (or CoreMap's Release), or set NEURON_RT_NUM_CORES / "
            "NEURON_RT_VISIBLE_CORES before nrt_lab.init() to take only what you need",
            "docs/behaviour.md §0; troubleshooting 4"))
    for other in others:
        findings.append(Finding(
            f"cores:held:{other.pid}", "info",
            f"{'Another Jupyter kernel' if other.kernel_id else 'Another process'} holds NeuronCores: "
            f"{describe_owner(other)}", "",
            "nrt_lab.close() in that process (or restart its kernel, or CoreMap's Terminate) to free them",
            "troubleshooting 4"))
    if live or config is None or not others:
        return findings
    busy = _busy_line(config, snapshot, others)
    if busy is not None:
        message, blockers = busy
        who = "; ".join(describe_owner(o) for o in blockers)
        findings.append(Finding(
            "cores:busy", "warning",
            f"nrt_lab.init() in this process would fail with these variables: {who}",
            message,
            "stop the other process or kernel (nrt_lab.close() there, or CoreMap's Terminate), or ask for free "
            "cores with NEURON_RT_NUM_CORES / NEURON_RT_VISIBLE_CORES", "docs/behaviour.md §0; troubleshooting 4"))
    return findings


def _busy_line(config: RuntimeConfig, snapshot: MachineSnapshot,
               others: Sequence[OwnerView]) -> tuple[str, list[OwnerView]] | None:
    """The allocator's exact busy line and the owners in the way, when init() would fail, else None."""
    from nrt_lab.runtime.allocation import (
        CoresBusyError,
        NoCoresVisibleError,
        NotContiguousError,
        largest_free_run,
        plan_request,
    )

    try:
        request = plan_request(config, snapshot.instance)
    except (ConfigError, NoCoresVisibleError, NotContiguousError):
        return None  # reported as a configuration error
    free = snapshot.free
    available = largest_free_run(free)
    if request.cores is not None:
        wanted = set(request.cores)
        blockers = [o for o in others if wanted & set(o.machine_cores)]
    else:
        blockers = list(others) if available < request.count else []
    if not blockers:
        return None
    return str(CoresBusyError(request.describe(), available)), blockers
