"""Firing injected hardware faults inside ``nrt_execute``: the status, libnrt's log lines, the kernel line.

Every runtime gets a :class:`FaultHook` at init (``runtime.faults``). Before each execution the model asks it
for a fault (:meth:`FaultHook.before_execute`, matching done by :class:`nrt_lab.driver.faults.FaultWatcher`);
the returned :class:`ActiveFault` is applied inside the timed region (``apply(deadline)``), so a fault costs
device time like the real failure, and the stats page records it as the model records any failure
(hardware errors: outcome ``completed_with_err``, error ``hardware``, sysfs ``hw_error``).

Statuses and lines per kind (docs/behaviour.md §9, wording of nrt-troubleshoot.rst). The documentation gives two statuses per
hardware error: the older generic one (1004 or 5) and the specific ``NRT_EXEC_HW_ERR_*`` one; libnrt 2.34
(which nrt_lab emulates) has the specific codes, so those are returned:

============================ ======================================= ==========================================
kind                         status                                  counters (``hardware_counters``)
============================ ======================================= ==========================================
``sram_ecc_uncorrected``     1202 NRT_EXEC_HW_ERR_NC_UE              sram_ecc_uncorrected
``hbm_ue``                   1201 NRT_EXEC_HW_ERR_HBM_UE             mem_ecc_uncorrected
``mem_ecc_uncorrected``      1205 NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE  mem_ecc_uncorrected, mem_ecc_repairable_uncorrected
``dma_abort``                1203 NRT_EXEC_HW_ERR_DMA_ABORT          —
``hang``                     5 NRT_TIMEOUT                           —
``nan``                      1003 with numerical errors on, else 0   —
``mem_ecc_corrected``        0 (execution succeeds)                  mem_ecc_corrected
``sram_ecc_corrected``       0 (execution succeeds)                  sram_ecc_corrected
============================ ======================================= ==========================================

``mem_ecc_uncorrected`` is the *repairable* HBM error (an uncorrected error the driver can repair by a reload),
``hbm_ue`` the unrepairable one: between them every counter of ``neuron_hw_counters``/sysfs can be exercised.

Lines (``ND``/``NC``: device index and core index within the device, as the runtime sees it), each logged at
ERROR from ``TDRV:exec_consume_infer_status_notifications`` *(inf: the function that consumes completion
notifications)*:

* SRAM: ``(FATAL-RT-UNDEFINED-STATE) [ND 0][NC 0] Uncorrectable memory error is detected, metadata: 0x16. Please
  terminate or stop/start this instance to prevent future impact from the hardware error.``
* HBM: ``(FATAL-RT-UNDEFINED-STATE) Uncorrectable HBM memory error is detected. Execution results may be
  invalid. Please terminate this instance to prevent future impact from the hardware error.``
* repairable HBM: ``(FATAL-RT-UNDEFINED-STATE) Uncorrectable HBM memory error is detected. Execution results may
  be invalid. Please reload the neuron driver or reboot your EC2 instance to prevent future impact from the
  hardware error.``
* DMA: ``[MLA 0][NC 0] DMA TX engine 0 is in an abort state``

then the infodump of docs/behaviour.md §4 (``NRT:nrt_infodump``, one ERROR line each, :func:`log_infodump`), and the
kernel writes to the emulated syslog (``<root>/log/syslog``)::

    Nov 25 19:05:54 host kernel: NEURON_HW_ERR=SRAM_UNCORRECTABLE_ERROR instance-id=i-… hostname=host nd-id=0
        nc-id=0 serial-num=<16 hex> action=TERMINATE_INSTANCE

with ``HBM_UNCORRECTABLE_ERROR`` (hbm_ue), ``DMA_ERROR`` (dma_abort), both ``action=TERMINATE_INSTANCE``, and
*(inf)* ``HBM_REPAIRABLE_UNCORRECTABLE_ERROR ... action=RELOAD_DRIVER`` for the repairable error (a name that
the public problem-detector rule for ``HBM_UNCORRECTABLE_ERROR`` does not match, since no replacement is
needed). Corrected errors are silent (counters only).

``hang`` blocks the execution until ``NEURON_RT_EXEC_TIMEOUT`` expires, then the model reports its usual
timeout (``TDRV:exec_consume_infer_status_notifications execution timeout (N ms) on Neuron Device D NC C,
model M, waiting for execution completion notification``, NRT_TIMEOUT), as a compute hang does; no infodump,
like any other timeout of the emulator. ``nan`` replaces every floating-point output by NaN; with
``NEURON_FAIL_ON_NAN=1`` (or verbosity ``critical``) the model then fails with NRT_EXEC_COMPLETED_WITH_NUM_ERR
and its ``INFER_ERROR_SUBTYPE_NUMERICAL`` line, otherwise the execution succeeds with NaN outputs (libnrt ≥
2.27 default). Integer outputs cannot hold NaN and are left alone.
"""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol

from nrt_lab.driver import Machine, StateError
from nrt_lab.driver.faults import FaultWatcher, FiredFault, record_hardware_event, write_kernel_line
from nrt_lab.driver.machine import physical_cores_of
from nrt_lab.driver.sysfs import serial_number
from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.hardware import InstanceSpec
from nrt_lab.runtime.config import RuntimeConfig
from nrt_lab.runtime.logging import NrtLogger
from nrt_lab.runtime.version import RUNTIME_GIT_HASH, RUNTIME_VERSION

__all__ = ["FaultingRuntime", "FaultHook", "ActiveFault", "log_infodump", "INFODUMP_HEADER", "CUT_HERE", "CUT_TO_HERE",
           "HW_ERROR_FUNCTION"]

INFODUMP_HEADER = "Neuron runtime information - please include in any support request:"
CUT_HERE = "------------->8------------[ cut here ]------------>8-------------"
CUT_TO_HERE = "-------------8<-----------[ cut to here ]-----------8<------------"
HW_ERROR_FUNCTION = "exec_consume_infer_status_notifications"
# Versions of components nrt_lab does not emulate, printed as a real infodump prints them (inf).
_EMBEDDED_FW_VERSION = "1.21.9.0"
_CCOM_VERSION = "2.28.27.0-1b6e5cbd8 (compat 80)"
_NCFW_VERSION = "1.21.9.0"

_SRAM_LINE = ("(FATAL-RT-UNDEFINED-STATE) [ND {nd}][NC {nc}] Uncorrectable memory error is detected, metadata: 0x16. "
              "Please terminate or stop/start this instance to prevent future impact from the hardware error.")
_HBM_LINE = ("(FATAL-RT-UNDEFINED-STATE) Uncorrectable HBM memory error is detected. Execution results may be "
             "invalid. Please terminate this instance to prevent future impact from the hardware error.")
_REPAIRABLE_HBM_LINE = ("(FATAL-RT-UNDEFINED-STATE) Uncorrectable HBM memory error is detected. Execution results "
                        "may be invalid. Please reload the neuron driver or reboot your EC2 instance to prevent "
                        "future impact from the hardware error.")
_DMA_LINE = "[MLA {nd}][NC {nc}] DMA TX engine 0 is in an abort state"

# kind -> (status, message template, counters, kernel error name, kernel action)
_HARDWARE_ERRORS: dict[str, tuple[NrtStatus, str, tuple[str, ...], str, str]] = {
    "sram_ecc_uncorrected": (NrtStatus.EXEC_HW_ERR_NC_UE, _SRAM_LINE, ("sram_ecc_uncorrected",),
                             "SRAM_UNCORRECTABLE_ERROR", "TERMINATE_INSTANCE"),
    "hbm_ue": (NrtStatus.EXEC_HW_ERR_HBM_UE, _HBM_LINE, ("mem_ecc_uncorrected",), "HBM_UNCORRECTABLE_ERROR",
               "TERMINATE_INSTANCE"),
    "mem_ecc_uncorrected": (NrtStatus.EXEC_HW_ERR_REPAIRABLE_HBM_UE, _REPAIRABLE_HBM_LINE,
                            ("mem_ecc_uncorrected", "mem_ecc_repairable_uncorrected"),
                            "HBM_REPAIRABLE_UNCORRECTABLE_ERROR", "RELOAD_DRIVER"),
    "dma_abort": (NrtStatus.EXEC_HW_ERR_DMA_ABORT, _DMA_LINE, (), "DMA_ERROR", "TERMINATE_INSTANCE"),
}
_CORRECTED = {"mem_ecc_corrected": "mem_ecc_corrected", "sram_ecc_corrected": "sram_ecc_corrected"}
_HANG_STEP_S = 0.01


class FaultingRuntime(Protocol):
    """What fault handling needs of the runtime (runtime.core.Runtime provides it; no import back up to core)."""

    @property
    def logger(self) -> NrtLogger: ...
    @property
    def machine(self) -> Machine: ...
    @property
    def instance(self) -> InstanceSpec: ...
    @property
    def instance_id(self) -> str: ...
    @property
    def cores(self) -> tuple[int, ...]: ...
    @property
    def config(self) -> RuntimeConfig: ...


def log_infodump(runtime: FaultingRuntime, status: NrtStatus, core: int, api: str = "nrt_execute") -> None:
    """Log docs/behaviour.md §4's infodump at ERROR (``NRT:nrt_infodump``) for a failure of ``api`` on instance core ``core``."""
    logger = runtime.logger
    try:
        driver = runtime.machine.driver()
        driver_version = "unknown" if driver is None or driver.loaded is None else str(driver.loaded)
    except StateError:
        driver_version = "unknown"
    lines = [
        INFODUMP_HEADER,
        CUT_HERE,
        f"NRT version: {RUNTIME_VERSION} ({RUNTIME_GIT_HASH})",
        f"Embedded FW version: {_EMBEDDED_FW_VERSION}",
        f"CCOM version: {_CCOM_VERSION}",
        f"NCFW version: {_NCFW_VERSION}",
        f"Instance ID: {runtime.instance_id}",
        "Cluster ID: N/A",
        f"Kernel: {platform.system()} {platform.release()}",
        f"Nodename: {socket.gethostname()}",
        f"Driver version: {driver_version}",
        f"Failure: {status.c_name} in {api}()",
        f"LNC: {runtime.cores.index(core) if core in runtime.cores else core}",
        f"Visible cores: {', '.join(str(c) for c in runtime.cores)}",
        "Environment:",
        *(f"    {name}={value}" for name, value in runtime.config.neuron_env),
        CUT_TO_HERE,
    ]
    for line in lines:
        logger.error("NRT", "nrt_infodump", line)


class ActiveFault:
    """A fault firing on one execution: ``apply`` inside the timed region, ``corrupt_outputs`` on its results."""

    def __init__(self, runtime: FaultingRuntime, model: Any, fired: FiredFault) -> None:
        self.runtime = runtime
        self.model = model
        self.fired = fired
        self.kind = fired.fault.kind
        self.core = fired.core
        instance = runtime.instance
        self.device = instance.device_of_core(fired.core)
        self.local_core = fired.core - instance.devices[self.device].first_core

    def _kernel_line(self, name: str, action: str) -> None:
        runtime = self.runtime
        write_kernel_line(runtime.machine.root, (
            f"NEURON_HW_ERR={name} instance-id={runtime.instance_id} hostname={socket.gethostname()} "
            f"nd-id={self.device} nc-id={self.local_core} serial-num={serial_number(runtime.instance_id, self.device)} "
            f"action={action}"))

    def apply(self, deadline: float) -> None:
        """Make the execution fail as the hardware would: raise NrtError, or TimeoutError at ``deadline`` for a hang."""
        runtime = self.runtime
        root = runtime.machine.root
        if self.kind in _CORRECTED:
            record_hardware_event(root, runtime.instance_id, self.device, (_CORRECTED[self.kind],))
            return
        if self.kind == "hang":
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError
                time.sleep(min(_HANG_STEP_S, left))
        if self.kind not in _HARDWARE_ERRORS:
            return  # nan: see corrupt_outputs
        status, template, counters, name, action = _HARDWARE_ERRORS[self.kind]
        if counters:
            record_hardware_event(root, runtime.instance_id, self.device, counters)
        self._kernel_line(name, action)
        message = template.format(nd=self.device, nc=self.local_core)
        runtime.logger.error("TDRV", HW_ERROR_FUNCTION, message)
        log_infodump(runtime, status, self.core)
        raise NrtError(status, message)

    def corrupt_outputs(self, xp: Any, results: Sequence[Any]) -> list[Any]:
        """The model's results as this fault leaves them: NaN in every floating-point output for ``nan``."""
        if self.kind != "nan":
            return list(results)
        return [xp.full(r.shape, float("nan"), dtype=r.dtype) if getattr(r.dtype, "kind", "") == "f" else r
                for r in results]


class FaultHook:
    """``runtime.faults``: asks the driver, once per execution, whether an injected fault fires."""

    def __init__(self, runtime: FaultingRuntime) -> None:
        self.runtime = runtime
        physical = {core: physical_cores_of(runtime.instance, [core]) for core in runtime.cores}
        self.watcher = FaultWatcher(runtime.machine.root, runtime.instance_id, physical)

    def before_execute(self, model: Any, core: int) -> ActiveFault | None:
        """The fault firing on this execution of ``model`` (first core ``core``), or None (the usual case)."""
        cores = getattr(model, "cores", None) or (core,)
        fired = self.watcher.consume(cores)
        return None if fired is None else ActiveFault(self.runtime, model, fired)
