"""``nrt-lab pkg``: the Neuron 1.x packages (aws-neuron-runtime, aws-neuron-runtime-base, aws-neuron-tools) and the
driver package, installed into and removed from the emulated machine with versions (docs/legacy.md).

The driver package is the one ``nrt-lab driver`` manages (driver.json); ``aws-neuron-dkms`` is its Neuron 1.x name
and installs the same package. The other packages are recorded in ``<root>/packages.json`` (atomic JSON).
Removing ``aws-neuron-runtime`` while a neuron-rtd daemon runs is refused, like a dpkg prerm script that will not
take the daemon away under its clients: stop it first (``nrt-lab systemctl stop neuron-rtd``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrt_lab.driver import (
    DEFAULT_DRIVER_VERSION,
    DRIVER_PACKAGE,
    Machine,
    OwnerRecord,
    StateError,
    atomic_write_json,
    make_state_dir,
    open_machine,
    parse_driver_version,
    read_state_json,
)
from nrt_lab.legacy.paths import DEFAULT_CONFIG, real_to_root

__all__ = [
    "LEGACY_RUNTIME_VERSION",
    "OLD_DRIVER_PACKAGE",
    "PACKAGES",
    "RUNTIME_PACKAGE",
    "PackageError",
    "PackageInfo",
    "InstalledPackage",
    "add_parser",
    "install",
    "installed_packages",
    "is_installed",
    "list_packages",
    "remove",
    "render_list",
    "run",
    "running_daemons",
]

LEGACY_RUNTIME_VERSION = "1.6.9.0"  # the last aws-neuron-runtime (Runtime 1.x) this emulator offers
RUNTIME_PACKAGE = "aws-neuron-runtime"
OLD_DRIVER_PACKAGE = "aws-neuron-dkms"  # the driver package's Neuron 1.x name
_VERSION_RE = re.compile(r"^\d{1,4}(?:\.\d{1,6}){1,3}$", re.ASCII)
_STATE_FILE = "packages.json"
_MAX_PACKAGES_JSON = 64 * 1024
# The conffile aws-neuron-runtime installs (docs/legacy.md lists the keys the daemon reads).
DEFAULT_DAEMON_CONFIG: dict[str, Any] = {
    "init_config": {"num_hugepages_per_device": 128, "drop_all_capabilities": False},
    "model_cache_count": 32,
}


class PackageError(Exception):
    """A package operation was refused or the request was malformed; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PackageInfo:
    """One package of the catalogue: default version, what it holds, what it needs."""

    name: str
    version: str
    summary: str
    depends: tuple[str, ...] = ()
    major: int | None = None  # versions must have this major number (None: any)


@dataclass(frozen=True)
class InstalledPackage:
    """One row of ``nrt-lab pkg list``: a package and its installed version (None when not installed)."""

    name: str
    version: str | None
    summary: str
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form of the row."""
        return {"package": self.name, "version": self.version, "installed": self.version is not None,
                "summary": self.summary, "note": self.note}


PACKAGES: dict[str, PackageInfo] = {
    p.name: p
    for p in (
        PackageInfo("aws-neuron-runtime-base", LEGACY_RUNTIME_VERSION,
                    "Neuron Runtime 1.x base files under /opt/aws/neuron", major=1),
        PackageInfo(RUNTIME_PACKAGE, LEGACY_RUNTIME_VERSION,
                    "Neuron Runtime 1.x daemon neuron-rtd and its systemd units (neuron-rtd, neuron-rtd@)",
                    depends=("aws-neuron-runtime-base",), major=1),
        PackageInfo("aws-neuron-tools", "1.7.25.0", "neuron-cli and the Neuron 1.x tools", major=1),
    )
}
_DRIVER_NAMES = (DRIVER_PACKAGE, OLD_DRIVER_PACKAGE)
_ACCEPTED = ", ".join([*PACKAGES, *_DRIVER_NAMES])


def _state_path(root: Path) -> Path:
    return root / _STATE_FILE


def _read_state(root: Path) -> dict[str, dict[str, Any]]:
    remedy = f"; remove {_state_path(root)} and install the packages again"
    data = read_state_json(_state_path(root), "package database", remedy)
    if data is None:
        return {}
    packages = data.get("packages")
    if not isinstance(packages, dict):
        raise StateError(f"package database {_state_path(root)} is corrupted: no 'packages' object{remedy}")
    result: dict[str, dict[str, Any]] = {}
    for name, entry in packages.items():
        if name not in PACKAGES or not isinstance(entry, dict) or not isinstance(entry.get("version"), str) \
                or not _VERSION_RE.match(entry["version"]):
            raise StateError(f"package database {_state_path(root)} is corrupted at {name!r}{remedy}")
        result[name] = entry
    return result


def _write_state(root: Path, packages: dict[str, dict[str, Any]]) -> None:
    atomic_write_json(_state_path(root), {"packages": packages}, pretty=True)


def installed_packages(root: Path) -> dict[str, str]:
    """Installed 1.x packages (not the driver) and their versions."""
    return {name: str(entry["version"]) for name, entry in _read_state(root).items()}


def is_installed(root: Path, name: str) -> bool:
    """Whether the 1.x package ``name`` is installed on the machine at ``root``."""
    return name in _read_state(root)


def running_daemons(machine: Machine) -> list[OwnerRecord]:
    """The neuron-rtd daemons holding devices now (their owner records: the one place the machine says so)."""
    return [o for o in machine.owners() if o.is_daemon]


def _check_name(name: str) -> str:
    if name in PACKAGES or name in _DRIVER_NAMES:
        return name
    raise PackageError(f"unknown package {name!r}; accepted: {_ACCEPTED}", 2)


def _check_version(info: PackageInfo, version: str) -> str:
    if not _VERSION_RE.match(version):
        raise PackageError(f"invalid version {version!r} for {info.name}; accepted: MAJOR.MINOR[.PATCH[.BUILD]] "
                           f"with numbers, e.g. {info.version}", 2)
    if info.major is not None and int(version.split(".")[0]) != info.major:
        raise PackageError(
            f"{info.name} {version} does not exist: {info.name} is Neuron Runtime {info.major}.x (versions "
            f"{info.major}.*); Runtime 2.x is a library (libnrt.so) that ships with the frameworks, not a daemon "
            "package", 2)
    return version


def _ensure_config(root: Path) -> Path:
    """Write the daemon's conffile unless the user already has one (dpkg keeps a changed conffile)."""
    config = real_to_root(root, DEFAULT_CONFIG)
    if config.exists():
        return config
    directory = config.parent
    chain = [d for d in (*reversed(directory.relative_to(root).parents), directory.relative_to(root))
             if str(d) != "."]
    for part in chain:
        path = root / part
        if not path.is_dir():
            try:
                make_state_dir(path)
            except FileExistsError:
                pass
    atomic_write_json(config, DEFAULT_DAEMON_CONFIG, pretty=True)
    return config


def install(machine: Machine, name: str, version: str | None = None) -> list[str]:
    """Install (or up/downgrade) ``name`` and the packages it depends on; the lines to print."""
    _check_name(name)
    if name in _DRIVER_NAMES:
        driver_version = parse_driver_version(version) if version else DEFAULT_DRIVER_VERSION
        notes = [] if name == DRIVER_PACKAGE else [
            f"{OLD_DRIVER_PACKAGE} is the Neuron 1.x name of {DRIVER_PACKAGE}; installing {DRIVER_PACKAGE}"]
        driver = machine.install_driver(driver_version)
        notes.append(f"installed {DRIVER_PACKAGE} {driver.installed}")
        if driver.reload_pending:
            notes.append(f"the loaded module is still {driver.loaded}: NeuronCores are in use; stop their owners, "
                         "then run `nrt-lab driver reload`")
        return notes
    info = PACKAGES[name]
    wanted = _check_version(info, version or info.version)
    machine.state()  # provision the default machine on first use, like every other command
    root = machine.root
    state = _read_state(root)
    lines: list[str] = []
    for dep in info.depends:
        if dep not in state:
            state[dep] = {"version": PACKAGES[dep].version, "installed_at": time.time()}
            lines.append(f"installed {dep} {PACKAGES[dep].version} (needed by {name})")
    previous = state.get(name, {}).get("version")
    state[name] = {"version": wanted, "installed_at": time.time()}
    _write_state(root, state)
    verb = "installed" if previous is None else ("reinstalled" if previous == wanted else
                                                  f"changed from {previous} to")
    lines.append(f"{verb} {name} {wanted}")
    if name == RUNTIME_PACKAGE:
        _ensure_config(root)
        lines.append(f"unit neuron-rtd.service (neuron-rtd -c {DEFAULT_CONFIG}) and the template neuron-rtd@.service "
                     "are installed; start the daemon with: nrt-lab systemctl start neuron-rtd")
        for daemon in running_daemons(machine):
            if daemon.runtime_version != wanted:
                lines.append(f"neuron-rtd (pid {daemon.pid}) still runs {daemon.runtime_version} until it is "
                             f"restarted: nrt-lab systemctl restart {_unit_of(daemon)}")
    return lines


def _unit_of(daemon: OwnerRecord) -> str:
    instance = daemon.extra.get("instance", "")
    return f"neuron-rtd@{instance}" if instance else "neuron-rtd"


def remove(machine: Machine, name: str) -> list[str]:
    """Remove ``name``; refused while a daemon needs it or another installed package depends on it."""
    _check_name(name)
    if name in _DRIVER_NAMES:
        if machine.driver() is None:
            raise PackageError(f"{DRIVER_PACKAGE} is not installed")
        machine.uninstall_driver()
        return [f"removed {DRIVER_PACKAGE}"]
    root = machine.root
    state = _read_state(root)
    if name not in state:
        raise PackageError(f"{name} is not installed")
    dependents = [other for other in state if name in PACKAGES[other].depends]
    if dependents:
        raise PackageError(f"cannot remove {name}: {', '.join(dependents)} depends on it; remove "
                           f"{', '.join(dependents)} first (nrt-lab pkg remove {dependents[0]})")
    if name == RUNTIME_PACKAGE:
        daemons = running_daemons(machine)
        if daemons:
            units = " ".join(sorted({_unit_of(d) for d in daemons}))
            pids = ", ".join(str(d.pid) for d in daemons)
            raise PackageError(f"cannot remove {name}: neuron-rtd is running (pid {pids}); stop it first: "
                               f"nrt-lab systemctl stop {units} (sudo systemctl stop {units} on a real machine)")
    del state[name]
    _write_state(root, state)
    lines = [f"removed {name}"]
    if name == RUNTIME_PACKAGE:
        lines.append(f"the configuration {DEFAULT_CONFIG} is kept (dpkg keeps conffiles on remove)")
    return lines


def list_packages(machine: Machine) -> list[InstalledPackage]:
    """Every package of the catalogue with its installed version (the driver from driver.json)."""
    state = installed_packages(machine.root)
    driver = machine.driver()
    rows = [InstalledPackage(DRIVER_PACKAGE, None if driver is None else str(driver.installed),
                             f"Neuron driver (kernel module); Neuron 1.x name {OLD_DRIVER_PACKAGE}",
                             "" if driver is None or not driver.reload_pending else
                             f"loaded {driver.loaded or 'none'}: reload pending")]
    daemons = running_daemons(machine)
    for name, info in PACKAGES.items():
        note = ""
        if name == RUNTIME_PACKAGE and daemons:
            note = "running: " + ", ".join(f"pid {d.pid} ({d.runtime_version})" for d in daemons)
        rows.append(InstalledPackage(name, state.get(name), info.summary, note))
    return rows


def render_list(rows: Sequence[InstalledPackage]) -> str:
    """``nrt-lab pkg list`` as a table."""
    header = ("PACKAGE", "VERSION", "STATUS", "DESCRIPTION")
    table = [(r.name, r.version or "-", "installed" if r.version else "not installed",
              r.summary + (f" [{r.note}]" if r.note else "")) for r in rows]
    widths = [max(len(row[i]) for row in (header, *table)) for i in range(3)]
    return "".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}\n" for row in (header, *table)
    )


def add_parser(sub: Any) -> None:
    """Register ``pkg install|remove|list`` on the ``nrt-lab`` sub-parsers object."""
    pkg = sub.add_parser("pkg", help="install, remove or list the Neuron 1.x packages and the driver package")
    psub = pkg.add_subparsers(dest="action", required=True)
    inst = psub.add_parser("install", help="install a package (and what it depends on)")
    inst.add_argument("package", metavar="PACKAGE", help=f"one of: {_ACCEPTED}; PACKAGE=VERSION picks a version")
    inst.add_argument("--version", default=None, help="version to install (default: the newest known)")
    rem = psub.add_parser("remove", help="remove a package (refused while neuron-rtd runs for aws-neuron-runtime)")
    rem.add_argument("package", metavar="PACKAGE", help=f"one of: {_ACCEPTED}")
    lst = psub.add_parser("list", help="every package with its installed version")
    lst.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, root: Path | None = None) -> int:
    """Run a parsed ``nrt-lab pkg`` command; exit status 0 done, 1 refused, 2 bad arguments."""
    try:
        machine = open_machine(root)
        if args.action == "list":
            rows = list_packages(machine)
            if args.json:
                sys.stdout.write(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
            else:
                sys.stdout.write(render_list(rows))
            return 0
        name, _, pinned = str(args.package).partition("=")
        if pinned and getattr(args, "version", None):
            raise PackageError(f"give the version once: {args.package} or --version, not both", 2)
        if args.action == "install":
            lines = install(machine, name, pinned or args.version)
        else:
            if pinned:
                raise PackageError(f"remove takes a package name without a version, not {args.package!r}", 2)
            lines = remove(machine, name)
    except PackageError as exc:
        sys.stderr.write(f"nrt-lab pkg: error: {exc}\n")
        return exc.status
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0

