"""The emulated Neuron driver package (aws-neuronx-dkms): installed version, loaded version, reload.

Like the real kernel module, an upgrade installed while the module is in use only takes effect at the next
reload, and a reload (``rmmod neuron; modprobe neuron``) is refused while any process holds a NeuronCore.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrt_lab.driver.state import StateError, atomic_write_json, read_state_json, unlink_state_file

__all__ = [
    "DriverVersion",
    "DriverState",
    "DEFAULT_DRIVER_VERSION",
    "MIN_DRIVER_VERSION",
    "DRIVER_PACKAGE",
    "parse_driver_version",
    "read_driver",
    "write_driver",
    "remove_driver",
]

DRIVER_PACKAGE = "aws-neuronx-dkms"
_VERSION_RE = re.compile(r"^(\d{1,4})\.(\d{1,4})(?:\.(\d{1,6}))?(?:\.(\d{1,6}))?$", re.ASCII)


@dataclass(frozen=True, order=True)
class DriverVersion:
    """A dotted driver version such as 2.24.7.0, ordered numerically."""

    major: int
    minor: int
    patch: int = 0
    build: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}.{self.build}"


def parse_driver_version(text: str) -> DriverVersion:
    """Parse ``2.24``, ``2.24.7`` or ``2.24.7.0``; anything else is a ValueError naming the accepted form."""
    match = _VERSION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(
            f"invalid driver version {text!r}; accepted: MAJOR.MINOR[.PATCH[.BUILD]] with numbers, e.g. 2.24.7.0"
        )
    parts = [int(p) if p is not None else 0 for p in match.groups()]
    return DriverVersion(*parts)


DEFAULT_DRIVER_VERSION = parse_driver_version("2.24.7.0")
MIN_DRIVER_VERSION = parse_driver_version("2.1.5.0")


@dataclass(frozen=True)
class DriverState:
    """Contents of driver.json: package name, installed version and the version of the loaded module."""

    package: str
    installed: DriverVersion
    loaded: DriverVersion | None  # None: installed but not loaded (module removed)
    installed_at: float

    @property
    def reload_pending(self) -> bool:
        """True when the installed package differs from the module that is loaded."""
        return self.loaded != self.installed

    def to_json(self) -> dict[str, Any]:
        """The on-disk form of driver.json."""
        return {
            "package": self.package,
            "version": str(self.installed),
            "loaded_version": None if self.loaded is None else str(self.loaded),
            "installed_at": self.installed_at,
        }


def read_driver(root: Path) -> DriverState | None:
    """Parse driver.json strictly; None when the driver package is not installed."""
    path = root / "driver.json"
    remedy = "; reinstall with: nrt-lab driver uninstall && nrt-lab driver install"
    data = read_state_json(path, "driver file", remedy)
    if data is None:
        return None
    package = data.get("package")
    if package != DRIVER_PACKAGE:
        raise StateError(f"driver file {path} is corrupted: package is {package!r}, expected {DRIVER_PACKAGE!r}{remedy}")
    try:
        installed = parse_driver_version(data.get("version"))  # type: ignore[arg-type]
        loaded_raw = data.get("loaded_version")
        loaded = None if loaded_raw is None else parse_driver_version(loaded_raw)
    except ValueError as exc:
        raise StateError(f"driver file {path} is corrupted: {exc}{remedy}") from None
    installed_at = data.get("installed_at")
    if not isinstance(installed_at, (int, float)) or isinstance(installed_at, bool):
        raise StateError(f"driver file {path} is corrupted: installed_at is {installed_at!r}, expected a number{remedy}")
    return DriverState(package=DRIVER_PACKAGE, installed=installed, loaded=loaded, installed_at=float(installed_at))


def write_driver(root: Path, installed: DriverVersion, loaded: DriverVersion | None) -> DriverState:
    """Record the driver package as installed (and which module version is loaded)."""
    state = DriverState(package=DRIVER_PACKAGE, installed=installed, loaded=loaded, installed_at=time.time())
    atomic_write_json(root / "driver.json", state.to_json(), pretty=True)
    return state


def remove_driver(root: Path) -> None:
    """Uninstall the package: driver.json disappears."""
    unlink_state_file(root / "driver.json")
