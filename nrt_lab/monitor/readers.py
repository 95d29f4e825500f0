"""Read-side access to the driver's records for the faces (tools and widgets), so that no face imports a
driver submodule: owner records in the machine's core view, this tool's registration as a device user, the
counter kinds of the stats page, the ECC counter names, and the driver's sysfs tree.

Every list here is defined once in the driver and only re-exported: a face that needs e.g. the execution
outcomes imports :data:`OUTCOMES` from ``nrt_lab.monitor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nrt_lab.driver import OwnerRecord, open_machine
from nrt_lab.driver.counters import HARDWARE_COUNTERS
from nrt_lab.driver.locks import open_devices
from nrt_lab.driver.owners import process_command_line
from nrt_lab.driver.stats import DEVICE_MEMORY_KINDS, ERROR_KINDS, HOST_MEMORY_KINDS, OUTCOMES
from nrt_lab.driver.sysfs import SYSFS_ROOT, SysfsPathError, flatten, lookup, normalize_path, read_sysfs
from nrt_lab.hardware import InstanceSpec

__all__ = [
    "DEVICE_MEMORY_KINDS",
    "ERROR_KINDS",
    "HARDWARE_COUNTERS",
    "HOST_MEMORY_KINDS",
    "OUTCOMES",
    "SYSFS_ROOT",
    "DeviceUser",
    "MachineListing",
    "OwnerRecord",
    "SysfsPathError",
    "flatten_sysfs",
    "lookup_sysfs",
    "normalize_sysfs_path",
    "read_listing",
    "read_sysfs_tree",
    "register_device_user",
]


class DeviceUser(Protocol):
    """The registration of a tool that opened the devices without claiming cores (release it on exit)."""

    def release(self) -> None:
        """Remove the registration (the tool no longer shows in ``neuron-ls -a``)."""


def register_device_user(root: Path | None = None) -> DeviceUser:
    """Register this process (neuron-top, neuron-monitor) as a device user, as a real tool that opens
    ``/dev/neuron*``: it shows in ``neuron-ls -a`` with runtime version ``NA`` until released."""
    return open_devices(open_machine(root).root, process_command_line())


@dataclass(frozen=True)
class MachineListing:
    """What ``neuron-ls`` shows: the instance, its id and the live owners (cores in the machine's view)."""

    instance: InstanceSpec
    instance_id: str
    owners: tuple[OwnerRecord, ...]


def read_listing(root: Path | None = None, *, include_device_users: bool = False) -> MachineListing:
    """The machine's instance and live owner records (provisioning the default machine on first use);
    ``include_device_users`` adds tools that opened the devices without cores (``neuron-ls -a``)."""
    machine = open_machine(root)
    state = machine.state()
    owners = machine.owners_in_machine_view(include_device_users=include_device_users)
    return MachineListing(state.instance, state.instance_id, tuple(owners))


def read_sysfs_tree(root: Path | None = None) -> dict[str, Any]:
    """The driver's sysfs tree (``/sys/devices/virtual/neuron_device``) of the live machine, as nested dicts."""
    return read_sysfs(open_machine(root).root)


# The sysfs path helpers, under names that say what they walk.
lookup_sysfs = lookup
normalize_sysfs_path = normalize_path
flatten_sysfs = flatten
