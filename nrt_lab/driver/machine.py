"""The emulated machine as one object: provisioning, the driver package, and who owns which core.

This is the driver layer's public face: the runtime, the tools and the widgets all go through
:func:`open_machine`. Changes that would pull the hardware from under a running process (re-provisioning,
destroying, reloading the driver) are refused while any process owns a core, naming the owners, as
``rmmod`` refuses a module whose "Used by" count is not zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nrt_lab.driver.counters import reset_counters
from nrt_lab.driver.locks import allocation_lock, held_cores, list_owners, remove_stale_records
from nrt_lab.driver.owners import OwnerRecord
from nrt_lab.driver.package import (
    DEFAULT_DRIVER_VERSION,
    DRIVER_PACKAGE,
    DriverState,
    DriverVersion,
    read_driver,
    remove_driver,
    write_driver,
)
from nrt_lab.driver.state import (
    DEFAULT_INSTANCE,
    MachineState,
    StateError,
    ensure_root,
    list_state_dir,
    read_machine,
    reset_state_dir,
    resolve_root,
    unlink_state_file,
    write_machine,
)
from nrt_lab.hardware import InstanceSpec, get_instance

__all__ = [
    "Machine",
    "MachineInUseError",
    "DaemonRunningError",
    "open_machine",
    "physical_cores_of",
    "physical_core_count",
    "format_core_ranges",
]


class MachineInUseError(StateError):
    """A change was refused because processes own NeuronCores; ``owners`` names them."""

    def __init__(self, action: str, owners: Sequence[OwnerRecord], held: Sequence[int]) -> None:
        self.owners = tuple(owners)
        self.held = tuple(held)
        if owners:
            who = "; ".join(
                f"pid {o.pid} ({_short(o.command)}) holds {format_core_ranges(o.cores, prefix='nc')}" for o in owners
            )
        else:
            who = f"unnamed processes hold physical cores {format_core_ranges(held, prefix='nc')}"
        super().__init__(
            f"cannot {action}: module neuron is in use (Used by: {len(owners) or len(held)}): {who}. "
            "Stop those processes (or call nrt_lab.close() in them) and try again."
        )


class DaemonRunningError(MachineInUseError):
    """A driver change was refused because a Runtime 1.x daemon (neuron-rtd) holds devices: the dkms upgrade
    failure of the troubleshooting guide, with its fix (docs/legacy.md)."""

    def __init__(self, action: str, daemons: Sequence[OwnerRecord]) -> None:
        super().__init__(action, daemons, [c for d in daemons for c in d.cores])
        who = "; ".join(
            f"pid {d.pid} ({_short(d.command)}, {d.extra.get('address', '?')}) holds "
            f"{format_core_ranges(d.cores, prefix='nc')}" for d in daemons
        )
        units = sorted({"neuron-rtd@" + d.extra["instance"] if d.extra.get("instance") else "neuron-rtd"
                        for d in daemons})
        self.args = (
            f"cannot {action}: the Neuron Runtime 1.x daemon is running ({who}). Stop it "
            f"(sudo systemctl stop {' '.join(units)}; here: nrt-lab systemctl stop {' '.join(units)}), remove "
            "aws-neuron-runtime (nrt-lab pkg remove aws-neuron-runtime), then install the driver again "
            "(nrt-lab driver install)",
        )

    def __str__(self) -> str:
        return str(self.args[0])


def _short(command: str, limit: int = 60) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."


def format_core_ranges(cores: Sequence[int], prefix: str = "") -> str:
    """Compact ids as ranges: [0,1,2,5] -> ``0-2,5`` (``nc0-nc2,nc5`` with prefix ``nc``)."""
    ordered = sorted(set(cores))
    if not ordered:
        return "none"
    parts: list[str] = []
    start = prev = ordered[0]
    for core in ordered[1:] + [None]:  # type: ignore[list-item]
        if core is not None and core == prev + 1:
            prev = core
            continue
        parts.append(f"{prefix}{start}" if start == prev else f"{prefix}{start}-{prefix}{prev}")
        if core is not None:
            start = prev = core
    return ",".join(parts)


def physical_cores_of(instance: InstanceSpec, logical_cores: Sequence[int]) -> list[int]:
    """Physical NeuronCores behind logical ones: LNC=2 maps logical i to physical 2i and 2i+1."""
    lnc = instance.lnc
    return [p for core in logical_cores for p in range(core * lnc, core * lnc + lnc)]


def physical_core_count(instance: InstanceSpec) -> int:
    """Physical NeuronCores of the whole instance (128 on trn2.48xlarge whatever the LNC)."""
    return instance.physical_cores_per_device * len(instance.devices)


@dataclass(frozen=True)
class Machine:
    """Handle on one state root; every method re-reads the files, so it is always current."""

    root: Path

    # ----------------------------------------------------------------- reading
    def state(self) -> MachineState:
        """machine.json, provisioning the default instance on first use."""
        state = read_machine(self.root)
        if state is not None:
            return state
        with allocation_lock(self.root):
            state = read_machine(self.root)
            if state is None:
                state = write_machine(self.root, get_instance(DEFAULT_INSTANCE))
                if read_driver(self.root) is None:
                    write_driver(self.root, DEFAULT_DRIVER_VERSION, DEFAULT_DRIVER_VERSION)
        return state

    def instance(self, lnc: int | None = None) -> InstanceSpec:
        """The instance, seen with the machine's LNC or with ``lnc`` (trn2 processes may choose)."""
        return self.state().instance_at(lnc)

    def driver(self, state: MachineState | None = None) -> DriverState | None:
        """driver.json; None when the driver package is not installed.

        ``state`` is the machine state the caller already read (the machine is then known to be provisioned, so
        machine.json is not read again).
        """
        if state is None:
            self.state()
        return read_driver(self.root)

    def owners(self) -> list[OwnerRecord]:
        """Live processes holding cores (never raises for a dead or torn record)."""
        return list_owners(self.root)

    def owners_in_machine_view(self, include_device_users: bool = False) -> list[OwnerRecord]:
        """Owner records with cores expressed in the machine's logical ids (for tools on trn2 LNC mixes);
        ``include_device_users`` adds tools that opened the devices without cores (``neuron-ls -a``)."""
        spec = self.state().instance
        result: list[OwnerRecord] = []
        for owner in list_owners(self.root, include_device_users=include_device_users):
            if owner.lnc == spec.lnc:
                result.append(owner)
                continue
            physical = [p for c in owner.cores for p in range(c * owner.lnc, c * owner.lnc + owner.lnc)]
            logical = sorted({p // spec.lnc for p in physical})
            result.append(
                OwnerRecord(
                    pid=owner.pid,
                    command=owner.command,
                    runtime_version=owner.runtime_version,
                    cores=tuple(logical),
                    tag=owner.tag,
                    start_time=owner.start_time,
                    kernel_id=owner.kernel_id,
                    lnc=spec.lnc,
                    extra=owner.extra,
                )
            )
        return result

    # ----------------------------------------------------------------- changing
    def _refuse_if_in_use(self, action: str, instance: InstanceSpec | None) -> None:
        if instance is None:
            return
        held = held_cores(self.root, physical_core_count(instance))
        if held:
            raise MachineInUseError(action, self.owners(), held)

    def _refuse_if_daemon(self, action: str) -> None:
        daemons = [o for o in self.owners() if o.is_daemon]
        if daemons:
            raise DaemonRunningError(action, daemons)

    def create(self, instance_name: str, lnc: int | None = None) -> MachineState:
        """Re-provision as ``instance_name`` (new instance id); refused while any core is owned."""
        instance = get_instance(instance_name, lnc)
        with allocation_lock(self.root):
            current = self._current_or_none()
            self._refuse_if_in_use(f"create machine {instance.name}", current)
            remove_stale_records(self.root)
            state = write_machine(self.root, instance)
            if read_driver(self.root) is None:
                write_driver(self.root, DEFAULT_DRIVER_VERSION, DEFAULT_DRIVER_VERSION)
            return state

    def destroy(self) -> None:
        """Remove the machine and its driver (the next use provisions the default again)."""
        with allocation_lock(self.root):
            self._refuse_if_in_use("destroy the machine", self._current_or_none())
            for name in ("machine.json", "driver.json", "packages.json"):  # packages.json: nrt-lab pkg
                unlink_state_file(self.root / name)
            for sub in ("procs", "faults", "rtd"):
                reset_state_dir(self.root / sub)
            for name in list_state_dir(self.root / "locks"):
                if name.startswith("nc") and name.endswith(".lock"):
                    unlink_state_file(self.root / "locks" / name)

    def _current_or_none(self) -> InstanceSpec | None:
        try:
            state = read_machine(self.root)
        except StateError:
            # A corrupted machine.json must still be replaceable; check every core any catalogue entry has.
            return get_instance("trn2.48xlarge", 1)
        return None if state is None else state.instance

    def install_driver(self, version: DriverVersion = DEFAULT_DRIVER_VERSION) -> DriverState:
        """Install (or up/downgrade) the package; the module is reloaded now unless cores are in use."""
        self.state()
        with allocation_lock(self.root):
            self._refuse_if_daemon(f"install {DRIVER_PACKAGE} {version}")
            previous = read_driver(self.root)
            in_use = bool(held_cores(self.root, physical_core_count(self.state().instance)))
            loaded = previous.loaded if (in_use and previous is not None) else version
            if not in_use:
                self._counters_reset()
            return write_driver(self.root, version, loaded)

    def uninstall_driver(self) -> None:
        """Remove the package; refused while cores are in use (``Cannot unload neuron module``)."""
        self.state()
        with allocation_lock(self.root):
            self._refuse_if_daemon("uninstall the driver")
            self._refuse_if_in_use("uninstall the driver", self.state().instance)
            self._counters_reset()
            remove_driver(self.root)

    def reload_driver(self) -> DriverState:
        """``rmmod neuron; modprobe neuron``: loads the installed version; refused while cores are in use."""
        self.state()
        with allocation_lock(self.root):
            current = read_driver(self.root)
            if current is None:
                raise StateError("cannot reload the driver: aws-neuronx-dkms is not installed (nrt-lab driver install)")
            self._refuse_if_daemon("reload the driver")
            self._refuse_if_in_use("reload the driver", self.state().instance)
            self._counters_reset()
            return write_driver(self.root, current.installed, current.installed)

    def _counters_reset(self) -> None:
        """The module is (re)loaded: sysfs and ECC counters start from zero (caller holds the allocation lock)."""
        remove_stale_records(self.root)
        reset_counters(self.root)


def open_machine(root: Path | str | None = None, env: Mapping[str, str] | None = None) -> Machine:
    """The machine at ``root`` (default: resolved from the environment), creating the state root if needed."""
    path = Path(root) if root is not None else resolve_root(env)
    return Machine(ensure_root(path.expanduser().absolute()))
