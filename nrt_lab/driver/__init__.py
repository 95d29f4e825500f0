"""The emulated driver: state root, machine provisioning, driver package, and NeuronCore ownership."""

from nrt_lab.driver.faults import FAULT_KINDS, Fault, FaultError, clear_faults, inject_fault, list_faults
from nrt_lab.driver.locks import CoreClaim, allocation_lock, list_owners, probe_free, try_claim
from nrt_lab.driver.machine import (
    DaemonRunningError,
    Machine,
    MachineInUseError,
    format_core_ranges,
    open_machine,
    physical_core_count,
    physical_cores_of,
)
from nrt_lab.driver.owners import DAEMON_KIND, OwnerRecord, command_line_of
from nrt_lab.driver.package import (
    DEFAULT_DRIVER_VERSION,
    DRIVER_PACKAGE,
    MIN_DRIVER_VERSION,
    DriverState,
    DriverVersion,
    parse_driver_version,
)
from nrt_lab.driver.state import (
    DEFAULT_INSTANCE,
    MachineState,
    StateError,
    append_state_text,
    atomic_write_json,
    make_state_dir,
    read_state_json,
    resolve_root,
    unlink_state_file,
)

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FaultError",
    "clear_faults",
    "inject_fault",
    "list_faults",
    "CoreClaim",
    "allocation_lock",
    "list_owners",
    "probe_free",
    "try_claim",
    "Machine",
    "MachineInUseError",
    "format_core_ranges",
    "open_machine",
    "physical_core_count",
    "physical_cores_of",
    "DAEMON_KIND",
    "OwnerRecord",
    "command_line_of",
    "DEFAULT_DRIVER_VERSION",
    "DRIVER_PACKAGE",
    "MIN_DRIVER_VERSION",
    "DriverState",
    "DriverVersion",
    "parse_driver_version",
    "DEFAULT_INSTANCE",
    "MachineState",
    "StateError",
    "resolve_root",
    "atomic_write_json",
    "append_state_text",
    "make_state_dir",
    "read_state_json",
    "unlink_state_file",
    "DaemonRunningError",
]
