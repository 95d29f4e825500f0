"""The runtime's life cycle: ``init`` claims NeuronCores as libnrt's ``nrt_init`` does, ``close`` releases them.

A process has at most one live runtime (like libnrt and nrtpy); threads of the process share its cores.
``close()`` followed by ``init()`` re-reads the environment, as Ray's reused worker processes rely on.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from nrt_lab.driver import (
    MIN_DRIVER_VERSION,
    CoreClaim,
    DriverState,
    Machine,
    MachineState,
    OwnerRecord,
    StateError,
    format_core_ranges,
    open_machine,
)
from nrt_lab.driver.counters import add_core_values, fold_stats_page
from nrt_lab.driver.machine import physical_cores_of
from nrt_lab.driver.owners import process_command_line
from nrt_lab.driver.stats import MAX_STATS_CORES, StatsPage
from nrt_lab.errors import ConfigError, NrtError, NrtStatus
from nrt_lab.hardware import InstanceSpec
from nrt_lab.runtime.allocation import (
    CoresBusyError,
    NoCoresVisibleError,
    NotContiguousError,
    allocate,
    plan_request,
)
from nrt_lab.runtime.config import ASYNC_REMOVED_WARNING, RuntimeConfig, ncg_conflict, ncg_deprecation_warning
from nrt_lab.runtime.faults import FaultHook
from nrt_lab.runtime.logging import LogSettings, NrtLogger, parse_log_settings
from nrt_lab.runtime.memory import MICROCODE_BYTES_PER_PHYSICAL_NC, DeviceMemory
from nrt_lab.runtime.version import RUNTIME_VERSION

__all__ = [
    "Framework",
    "OwnerIdentity",
    "Runtime",
    "init",
    "close",
    "get_runtime",
    "require_runtime",
    "total_nc_count",
    "visible_nc_count",
    "DRIVER_MISSING_MESSAGE",
    "DRIVER_TOO_OLD_MESSAGE",
    "driver_gate",
]


DRIVER_MISSING_MESSAGE = (
    "Unable to determine Neuron Driver version. Please check aws-neuron-dkms package is installed."
)
DRIVER_TOO_OLD_MESSAGE = (
    "This runtime requires Neuron Driver version 2.0 or greater. Please upgrade aws-neuron-dkms package."
)


class Framework(enum.IntEnum):
    """``nrt_framework_type_t`` (docs/behaviour.md §3)."""

    INVALID = 0
    NO_FW = 1
    TF = 2
    PYTORCH = 3
    MXNET = 4
    PRECHECK = 5


def _jupyter_kernel_id() -> str:
    """The Jupyter kernel id when this process is a running ipykernel, so widgets can name the notebook.

    Only looks at an already running kernel app: importing or instantiating one here would replace the comm
    machinery of a process that merely imported ipykernel (as test runners do).
    """
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    if kernelapp is None:
        return ""
    app_class = getattr(kernelapp, "IPKernelApp", None)
    try:
        if app_class is None or not app_class.initialized():
            return ""
        connection_file = str(app_class.instance().connection_file or "")
    except (AttributeError, RuntimeError, TypeError):
        return ""
    name = Path(connection_file).stem
    return name[len("kernel-") :] if name.startswith("kernel-") else name


@dataclass(frozen=True)
class OwnerIdentity:
    """Who the owner record says holds the cores, for a process that is not a plain libnrt application: the
    Runtime 1.x daemon claims its devices through this same ownership but publishes its own command line, 1.x
    runtime version and ``extra`` (``{"kind": "neuron-rtd", ...}``, docs/architecture.md)."""

    command: str
    runtime_version: str
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Runtime:
    """A live (or closed) runtime: the cores it owns, its configuration and its logger."""

    machine: Machine
    instance: InstanceSpec  # the instance as this process sees it (its LNC)
    instance_id: str
    config: RuntimeConfig
    logger: NrtLogger
    framework: Framework
    cores: tuple[int, ...]  # instance-global logical NeuronCore ids, sorted
    pid: int
    _claim: CoreClaim | None = field(repr=False, default=None)
    closed: bool = False
    generation: int = 0
    stats: StatsPage | None = field(repr=False, default=None)
    memory: DeviceMemory = field(repr=False, default=None)  # type: ignore[assignment]
    models: dict[int, Any] = field(repr=False, default_factory=dict)
    core_locks: dict[int, threading.Lock] = field(repr=False, default_factory=dict)
    faults: Any = field(repr=False, default=None)
    model_ids: Iterator[int] = field(repr=False, default_factory=lambda: itertools.count(1001))

    def __post_init__(self) -> None:
        physical_per_core = self.instance.lnc
        if self.memory is None:
            syslog = self.machine.root / "log" / "syslog"
            self.memory = DeviceMemory(self.instance, self.cores, self.stats, self.logger, syslog)
        for core in self.cores:
            self.core_locks[core] = threading.Lock()
        # The runtime loads microcode on every physical NeuronCore it owns (counted as model code).
        self.memory.reserve_each(self.cores, MICROCODE_BYTES_PER_PHYSICAL_NC * physical_per_core, "model_code")

    @property
    def tag(self) -> str:
        """NEURON_PROCESS_TAG (the pid when unset)."""
        return self.config.process_tag

    @property
    def lnc(self) -> int:
        """Logical NeuronCore size this runtime runs with."""
        return self.instance.lnc

    @property
    def visible_nc_count(self) -> int:
        """Cores this process owns (``nrt_get_visible_nc_count``)."""
        return len(self.cores)

    @property
    def total_nc_count(self) -> int:
        """Cores on the instance, whatever the variables say (``nrt_get_total_nc_count``)."""
        return self.instance.total_cores

    @property
    def numerical_errors(self) -> bool:
        """NaN outputs fail executions (off by default since libnrt 2.27; NEURON_FAIL_ON_NAN=1 turns it on)."""
        return bool(self.config.numerical_errors)

    @property
    def exec_timeout_s(self) -> float:
        """NEURON_RT_EXEC_TIMEOUT, else 30 s on inf1 and 600 s elsewhere."""
        if self.config.exec_timeout_s is not None:
            return self.config.exec_timeout_s
        return float(self.instance.exec_timeout_default_s)

    def global_core(self, start_nc: int) -> int:
        """Map a process-relative index (0 = first owned core) to the instance-global id; bad index → NrtError."""
        self.check_open()
        if not 0 <= start_nc < len(self.cores):
            raise NrtError(
                NrtStatus.INVALID,
                f"NeuronCore index {start_nc} is not visible to this process; accepted: 0 to {len(self.cores) - 1}",
            )
        return self.cores[start_nc]

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"Runtime(pid={self.pid}, cores={format_core_ranges(self.cores, prefix='nc')}, "
                f"instance={self.instance.name}, lnc={self.instance.lnc}, tag={self.tag!r}, {state})")

    def check_open(self) -> None:
        """Raise NRT_CLOSED if this runtime was closed."""
        if self.closed:
            raise NrtError(NrtStatus.CLOSED, "the Neuron runtime was closed (nrt_close); call init() again")

    def close(self) -> None:
        """Release the cores (idempotent); the module-level runtime is cleared too."""
        close_runtime(self)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_guard = threading.RLock()
_current: Runtime | None = None
_ever_closed = False
_generation = 0


def _reset_in_child() -> None:
    """A forked child owns no cores: its copy of the parent's runtime is dropped (not closed)."""
    global _current, _guard
    _current = None
    _guard = threading.RLock()


os.register_at_fork(after_in_child=_reset_in_child)


def _fail(logger: NrtLogger, status: NrtStatus, module: str, function: str, message: str, detail: str = "") -> NrtError:
    logger.error(module, function, message)
    return NrtError(status, message + (f" ({detail})" if detail else ""))


def _config_error_logger(environment: Mapping[str, str], root: Path | str | None) -> NrtLogger:
    """Logger for a malformed variable: the log variables still apply (QUIET, syslog) when they are valid."""
    try:
        settings = parse_log_settings(environment)
    except ConfigError:
        return NrtLogger(LogSettings(), None)
    syslog = None
    if settings.uses_syslog:
        with contextlib.suppress(StateError, OSError, ValueError):  # no usable root: console only
            syslog = open_machine(root, environment).root / "log" / "syslog"
    return NrtLogger(settings, syslog)


def _machine_state(machine: Machine, logger: NrtLogger) -> MachineState:
    """machine.json, read once per init (a broken one is the device layer's failure)."""
    try:
        return machine.state()
    except StateError as exc:
        raise _fail(logger, NrtStatus.FAILURE, "TDRV", "tdrv_init", str(exc)) from None


def _check_driver(machine: Machine, state: MachineState, logger: NrtLogger) -> None:
    try:
        driver = machine.driver(state)
    except StateError as exc:
        raise _fail(logger, NrtStatus.FAILURE, "NRT", "nrt_init", str(exc)) from None
    verdict = driver_gate(driver)
    if verdict is not None:
        detail = "" if driver is None or driver.loaded is None else (
            f"loaded driver {driver.loaded}, required ≥ {MIN_DRIVER_VERSION}"
        )
        raise _fail(logger, NrtStatus.FAILURE, "NRT", "nrt_init", verdict, detail)


def driver_gate(driver: DriverState | None) -> str | None:
    """The runtime's driver check: None when this runtime can start, else libnrt's exact message."""
    if driver is None or driver.loaded is None:
        return DRIVER_MISSING_MESSAGE
    if driver.loaded < MIN_DRIVER_VERSION:
        return DRIVER_TOO_OLD_MESSAGE
    return None


def _check_ncg(config: RuntimeConfig, framework: Framework, logger: NrtLogger) -> None:
    ncg = config.ncg
    if ncg is None:
        return
    logger.warn("NRT", "nrt_init", ncg_deprecation_warning(ncg.raw))
    problem = ncg_conflict(config, mxnet=framework == Framework.MXNET)
    if problem:
        raise _fail(logger, NrtStatus.FAILURE, "NRT", "nrt_init", problem)


def _view(state: MachineState, config: RuntimeConfig, logger: NrtLogger) -> tuple[InstanceSpec, str]:
    base = state.instance
    lnc = config.lnc
    if lnc is not None and lnc != base.lnc:
        if not base.family.startswith("trn2"):
            raise _fail(
                logger, NrtStatus.FAILURE, "NRT", "nrt_init",
                f"NEURON_LOGICAL_NC_CONFIG={lnc} is invalid: {base.name} has NeuronCore-{base.neuroncore_version} "
                "without logical NeuronCores; accepted: 1",
            )
        return state.instance_at(lnc), state.instance_id
    return base, state.instance_id


def init(
    framework: Framework | int = Framework.NO_FW,
    *,
    env: Mapping[str, str] | None = None,
    root: Path | str | None = None,
    owner: OwnerIdentity | None = None,
) -> Runtime:
    """``nrt_init``: read the variables, check the driver, claim NeuronCores; NrtError on any failure.

    ``owner`` replaces the command line, runtime version and extra fields of the published owner record (the
    1.x daemon uses it); by default they describe this libnrt process.

    If this process already has a live runtime it is returned unchanged (close it first to re-read the
    environment). ``env`` and ``root`` exist for tests and tools; by default the process environment is used.
    """
    global _current
    with _guard:
        if _current is not None and not _current.closed:
            _current.logger.warn(
                "NRT", "nrt_init", "nrt_init called while the runtime is already initialized; keeping the "
                "running instance (call nrt_close first to re-read the environment)",
            )
            return _current
        environment = dict(os.environ if env is None else env)
        try:
            config = RuntimeConfig.from_env(environment)
        except ConfigError as exc:
            raise _fail(_config_error_logger(environment, root), NrtStatus.FAILURE, "NRT", "nrt_init",
                        _with_valid_range(exc, environment, root)) from None
        try:
            machine = open_machine(root, environment)
        except StateError as exc:
            raise _fail(NrtLogger(config.log, None), NrtStatus.FAILURE, "TDRV", "tdrv_init", str(exc)) from None
        logger = NrtLogger(config.log, machine.root / "log" / "syslog")
        try:
            fw = Framework(framework)
        except ValueError:
            raise _fail(logger, NrtStatus.INVALID, "NRT", "nrt_init",
                        f"framework type {framework!r} is invalid; accepted: 0-5 (nrt_framework_type_t)") from None

        state = _machine_state(machine, logger)  # the machine is read once per init and passed along
        _check_driver(machine, state, logger)
        for daemon in ([] if owner is not None else [o for o in machine.owners() if o.is_daemon]):
            # Runtime 1.x beside 2.x is undefined (docs/legacy.md): say so; its devices are busy like any owner's.
            logger.warn("NRT", "nrt_init", f"Neuron Runtime 1.x (neuron-rtd, pid {daemon.pid}, "
                        f"{daemon.extra.get('address', 'unix:/run/neuron.sock')}) is running: running Neuron Runtime "
                        "2.x beside it is undefined; stop it with 'sudo systemctl stop neuron-rtd'")
        instance, instance_id = _view(state, config, logger)
        _check_ncg(config, fw, logger)
        if config.async_inflight_set:
            logger.warn("NRT", "nrt_init", ASYNC_REMOVED_WARNING)
        try:
            request = plan_request(config, instance)
        except ConfigError as exc:
            raise _fail(logger, NrtStatus.FAILURE, "NRT", "nrt_init", str(exc)) from None
        except NotContiguousError as exc:
            raise _fail(logger, NrtStatus.FAILURE, "NRT", "nrt_allocate_neuron_cores", str(exc),
                        f"NEURON_RT_VISIBLE_CORES={exc.raw}") from None
        except NoCoresVisibleError as exc:
            raise _fail(logger, NrtStatus.FAILURE, "NRT", "nrt_allocate_neuron_cores", str(exc)) from None

        pid = os.getpid()

        def make_record(cores: tuple[int, ...]) -> OwnerRecord:
            if owner is not None:
                return OwnerRecord(
                    pid=pid, command=owner.command, runtime_version=owner.runtime_version, cores=cores,
                    tag=config.process_tag, start_time=time.time(), lnc=instance.lnc, extra=dict(owner.extra),
                )
            return OwnerRecord(
                pid=pid, command=process_command_line(), runtime_version=RUNTIME_VERSION, cores=cores,
                tag=config.process_tag, start_time=time.time(), kernel_id=_jupyter_kernel_id(),
                lnc=instance.lnc, extra={"framework": fw.name},
            )

        try:
            claim, cores = allocate(machine.root, instance, request, make_record)
        except CoresBusyError as exc:
            raise _fail(logger, NrtStatus.FAILURE, "NRT", "nrt_allocate_neuron_cores", str(exc)) from None
        except StateError as exc:  # a planted link or FIFO among the lock files or owner records
            raise _fail(logger, NrtStatus.FAILURE, "TDRV", "tdrv_init", str(exc)) from None
        except OSError as exc:  # e.g. a full or read-only file system under the state root
            where = f" ({exc.filename})" if exc.filename else ""
            raise _fail(logger, NrtStatus.FAILURE, "TDRV", "tdrv_init",
                        f"cannot claim NeuronCores in state root {machine.root}: {exc.strerror or exc}{where}") \
                from None
        global _generation
        _generation += 1
        try:
            stats = None
            if claim.record_path is not None and len(cores) <= MAX_STATS_CORES:
                stats = StatsPage(claim.record_path.with_suffix(".stats"), cores)
            runtime = Runtime(
                machine=machine, instance=instance, instance_id=instance_id, config=config, logger=logger,
                framework=fw, cores=cores, pid=pid, _claim=claim, generation=_generation, stats=stats,
            )
            runtime.faults = FaultHook(runtime)  # injected hardware faults (nrt-lab fault inject)
        except BaseException:
            claim.release()
            raise
        if config.reset_cores:  # NEURON_RT_RESET_CORES: one reset request per core (sysfs reset_req_count)
            with contextlib.suppress(OSError):
                add_core_values(machine.root, instance_id, [physical_cores_of(instance, [c])[0] for c in cores],
                                {"reset_req_count": 1})
        logger.info(
            "NRT", "nrt_init",
            f"Neuron Runtime {RUNTIME_VERSION} started on {instance.name}: "
            f"NeuronCores {format_core_ranges(cores, prefix='nc')} (lnc {instance.lnc}, tag {config.process_tag})",
        )
        _current = runtime
        return runtime


def close_runtime(runtime: Runtime) -> None:
    """Release ``runtime``'s cores (idempotent)."""
    global _current, _ever_closed
    with _guard:
        if runtime.closed:
            return
        for model in list(runtime.models.values()):
            with contextlib.suppress(NrtError):
                model.unload()
        runtime.closed = True
        if runtime.stats is not None:
            fold_stats_page(runtime.machine.root, runtime.stats.path, runtime.lnc, instance_id=runtime.instance_id,
                            per_device=runtime.instance.physical_cores_per_device)  # sysfs totals since driver load
            runtime.stats.close()
            runtime.stats = None
        if runtime._claim is not None:
            with contextlib.suppress(OSError, StateError):  # close never fails over bookkeeping files
                runtime._claim.release()
            runtime._claim = None
        runtime.logger.info("NRT", "nrt_close", f"NeuronCores {format_core_ranges(runtime.cores, prefix='nc')} released")
        if _current is runtime:
            _current = None
            _ever_closed = True


def close() -> None:
    """``nrt_close``: release this process's cores; does nothing when no runtime is live."""
    with _guard:
        if _current is not None:
            close_runtime(_current)


def get_runtime() -> Runtime | None:
    """The live runtime of this process, or None."""
    return _current


def require_runtime() -> Runtime:
    """The live runtime, else NrtError NRT_CLOSED (after a close) or NRT_UNINITIALIZED (never initialized)."""
    runtime = _current
    if runtime is None or runtime.closed:
        if _ever_closed:
            raise NrtError(NrtStatus.CLOSED, "the Neuron runtime was closed (nrt_close); call init() again")
        raise NrtError(NrtStatus.UNINITIALIZED, "the Neuron runtime is not initialized; call init() first")
    return runtime


def _with_valid_range(exc: ConfigError, environment: Mapping[str, str], root: Path | str | None) -> str:
    """A malformed NEURON_RT_VISIBLE_CORES message, completed with the machine's valid id range (docs/behaviour.md §0)."""
    if exc.variable != "NEURON_RT_VISIBLE_CORES":
        return str(exc)
    try:
        lnc = _lnc_from_env(environment)
        total = open_machine(root, environment).instance(lnc).total_cores
    except (StateError, ValueError, NrtError):
        return str(exc)
    return f"{exc}; valid NeuronCore ids on this instance: 0-{total - 1}"


def _lnc_from_env(environment: Mapping[str, str]) -> int | None:
    """Only the LNC variables (what the total core count depends on); malformed → ConfigError."""
    subset = {k: v for k, v in environment.items() if k in ("NEURON_LOGICAL_NC_CONFIG", "NEURON_RT_VIRTUAL_CORE_SIZE")}
    return RuntimeConfig.from_env(subset).lnc


def total_nc_count(*, env: Mapping[str, str] | None = None, root: Path | str | None = None) -> int:
    """``nrt_get_total_nc_count``: NeuronCores on the instance, ignoring the variables (works before init).

    An unusable machine or a malformed variable is NrtError NRT_FAILURE, as for ``init``.
    """
    if _current is not None and not _current.closed and env is None and root is None:
        return _current.total_nc_count
    environment = dict(os.environ if env is None else env)
    try:
        machine = open_machine(root, environment)
        return machine.instance(_lnc_from_env(environment)).total_cores
    except (StateError, ValueError) as exc:  # ValueError: ConfigError, or an LNC the instance lacks
        raise NrtError(NrtStatus.FAILURE, str(exc)) from None


def visible_nc_count(*, env: Mapping[str, str] | None = None, root: Path | str | None = None) -> int:
    """``nrt_get_visible_nc_count``: cores owned once initialized, else the count the variables would ask for.

    An unusable machine or a malformed / unsatisfiable variable is NrtError NRT_FAILURE, as for ``init``.
    """
    if _current is not None and not _current.closed and env is None and root is None:
        return _current.visible_nc_count
    environment = dict(os.environ if env is None else env)
    try:
        config = RuntimeConfig.from_env(environment)
        instance = open_machine(root, environment).instance(config.lnc)
        return plan_request(config, instance).count
    except (StateError, ValueError, NotContiguousError, NoCoresVisibleError) as exc:
        raise NrtError(NrtStatus.FAILURE, str(exc)) from None
