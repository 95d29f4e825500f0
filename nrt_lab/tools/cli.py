"""``nrt-lab``: manage the emulated machine and its driver, build the demo models, compile ONNX and inspect NEFFs.

Exit status: 0 success, 1 refused or failed (machine in use, corrupted state, unreadable or malformed NEFF),
2 bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nrt_lab.driver import (
    DEFAULT_DRIVER_VERSION,
    DRIVER_PACKAGE,
    MIN_DRIVER_VERSION,
    Machine,
    MachineInUseError,
    StateError,
    format_core_ranges,
    open_machine,
    parse_driver_version,
)
from nrt_lab.hardware import CatalogueError, instance_names
from nrt_lab.legacy import migrate, packages, systemctl
from nrt_lab.runtime import RUNTIME_VERSION, NrtError, driver_gate
from nrt_lab.tools import _cli, cluster_cli, compile_cli, doctor, driver_cli

__all__ = ["PROG", "main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "nrt-lab"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nrt-lab`` (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog=PROG, description="Manage the emulated Neuron machine and driver.")
    sub = parser.add_subparsers(dest="group", required=True)

    machine = sub.add_parser("machine", help="provision, show or destroy the emulated instance")
    msub = machine.add_subparsers(dest="action", required=True)
    create = msub.add_parser("create", help="(re-)provision as an instance type; refused while cores are owned")
    create.add_argument("--instance", required=True, metavar="NAME", help="one of: " + ", ".join(instance_names()))
    create.add_argument("--lnc", type=int, default=None, metavar="N", help="logical NeuronCore config (trn2: 1 or 2)")
    show = msub.add_parser("show", help="describe the machine, its driver and the owners of its cores")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    msub.add_parser("destroy", help="remove the machine (the next use provisions the default again)")
    msub.add_parser("list-types", help="list the instance types of the catalogue")

    driver = sub.add_parser("driver", help="install, remove, reload or inspect the emulated driver")
    dsub = driver.add_subparsers(dest="action", required=True)
    install = dsub.add_parser("install", help=f"install {DRIVER_PACKAGE} (reloaded now unless cores are in use)")
    install.add_argument("--version", default=str(DEFAULT_DRIVER_VERSION), help="driver version, e.g. 2.24.7.0")
    dsub.add_parser("uninstall", help="remove the driver package; refused while cores are in use")
    status = dsub.add_parser("status", help="installed and loaded versions, the runtime's verdict, users")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    dsub.add_parser("reload", help="rmmod + modprobe: load the installed version; refused while cores are in use")

    models = sub.add_parser("models", help="build the demo models (add, mlp, cnn, transformer) as NEFF files")
    modsub = models.add_subparsers(dest="action", required=True)
    build = modsub.add_parser("build", help="write add.neff, mlp.neff, cnn.neff and transformer.neff into DIR")
    build.add_argument("directory", metavar="DIR", help="output directory (created if missing)")

    neff = sub.add_parser("neff", help="inspect NEFF files")
    nsub = neff.add_subparsers(dest="action", required=True)
    inspect = nsub.add_parser("inspect", help="print the NEFF header and the NEFF Nodes: listing")
    inspect.add_argument("file", metavar="FILE", help="a .neff file")

    driver_cli.add_parsers(sub)  # fault inject|list|clear, sysfs
    doctor.add_parser(sub)
    packages.add_parser(sub)
    systemctl.add_parser(sub)
    migrate.add_parser(sub)
    compile_cli.add_parser(sub)
    cluster_cli.add_parser(sub)
    return parser


def _models_build(directory: str) -> int:
    from nrt_lab.models import build_models

    try:
        paths = build_models(directory)
    except OSError as exc:
        return _cli.error(PROG, f"cannot write the demo models to {directory}: {exc.strerror or exc}", EXIT_FAILED)
    for path in paths:
        data = path.read_bytes()
        print(f"{path}  {len(data)} bytes  sha256 {hashlib.sha256(data).hexdigest()}")
    return EXIT_OK


def _neff_inspect(file: str) -> int:
    from nrt_lab.neff import describe_neff, format_neff_nodes, read_neff

    path = Path(file)
    if not path.exists():
        return _cli.error(PROG, f"{file}: no such file", EXIT_FAILED)
    if not path.is_file() or not os.access(path, os.R_OK):
        return _cli.error(PROG, f"{file}: not a readable file", EXIT_FAILED)
    try:
        model = read_neff(path)
    except NrtError as exc:
        return _cli.error(PROG, f"{file} is not a valid NEFF: {exc.status.c_name}({int(exc.status)}): {exc.message}",
                          EXIT_FAILED)
    sys.stdout.write(describe_neff(model) + "\n" + format_neff_nodes(model))
    return EXIT_OK


def _machine_show(machine: Machine, as_json: bool) -> int:
    state = machine.state()
    spec = state.instance
    driver = machine.driver()
    owners = machine.owners_in_machine_view()
    if as_json:
        print(json.dumps({
            "root": str(machine.root),
            "instance_type": spec.name,
            "instance_id": state.instance_id,
            "logical_neuroncore_config": spec.lnc,
            "neuron_device_count": len(spec.devices),
            "neuroncore_per_device_count": spec.devices[0].core_count,
            "neuroncore_count": spec.total_cores,
            "neuroncore_version": spec.neuroncore_version,
            "device_memory_bytes": spec.devices[0].memory_bytes,
            "driver": None if driver is None else driver.to_json(),
            "owners": [o.to_json() for o in owners],
        }, indent=2))
        return EXIT_OK
    dev = spec.devices[0]
    print(f"instance-type: {spec.name}")
    print(f"instance-id: {state.instance_id}")
    print(f"logical-neuroncore-config: {spec.lnc}")
    print(f"state root: {machine.root}")
    print(f"devices: {len(spec.devices)} x {spec.neuron_device_type} ({dev.core_count} NeuronCore-{spec.neuroncore_version} "
          f"each, {dev.memory_bytes // 2**30} GiB)")
    owned = sum(len(o.cores) for o in owners)
    print(f"neuroncores: {spec.total_cores} ({owned} owned by {len(owners)} process{'es' if len(owners) != 1 else ''})")
    print(f"driver: {_driver_line(driver)}")
    for owner in owners:
        print(f"  pid {owner.pid:<7} tag {_cli.printable(owner.tag):<12} "
              f"{format_core_ranges(owner.cores, prefix='nc'):<14} {_cli.printable(owner.command)[:60]}")
    return EXIT_OK


def _driver_line(driver: object) -> str:
    from nrt_lab.driver import DriverState

    if not isinstance(driver, DriverState):
        return f"{DRIVER_PACKAGE} not installed"
    loaded = "not loaded" if driver.loaded is None else f"loaded {driver.loaded}"
    pending = " (reload pending: run nrt-lab driver reload)" if driver.reload_pending else ""
    return f"{DRIVER_PACKAGE} {driver.installed}, {loaded}{pending}"


def _driver_status(machine: Machine, as_json: bool) -> int:
    driver = machine.driver()
    verdict = driver_gate(driver)
    owners = machine.owners()
    if as_json:
        print(json.dumps({
            "package": DRIVER_PACKAGE,
            "installed_version": None if driver is None else str(driver.installed),
            "loaded_version": None if driver is None or driver.loaded is None else str(driver.loaded),
            "reload_pending": bool(driver and driver.reload_pending),
            "runtime_version": RUNTIME_VERSION,
            "minimum_driver_version": str(MIN_DRIVER_VERSION),
            "runtime_can_start": verdict is None,
            "runtime_message": verdict,
            "used_by": [{"pid": o.pid, "command": o.command} for o in owners],
        }, indent=2))
        return EXIT_OK
    print(f"package: {DRIVER_PACKAGE}")
    if driver is None:
        print("installed: no")
    else:
        print(f"installed: {driver.installed}")
        print(f"loaded: {driver.loaded if driver.loaded is not None else 'no'}")
        if driver.reload_pending:
            print("reload pending: the installed version takes effect at the next `nrt-lab driver reload`")
    print(f"runtime: libnrt {RUNTIME_VERSION} (needs driver >= {MIN_DRIVER_VERSION}): "
          + ("OK" if verdict is None else f"FAILS: {verdict}"))
    print(f"used by: {len(owners)}" + "".join(f"\n  pid {o.pid} {_cli.printable(o.command)[:60]}" for o in owners))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    machine = open_machine()
    if args.group == "machine":
        if args.action == "create":
            state = machine.create(args.instance, args.lnc)
            print(f"created {state.instance.name} (lnc {state.instance.lnc}) with {state.instance.total_cores} "
                  f"NeuronCores on {len(state.instance.devices)} devices, instance-id {state.instance_id}")
            return EXIT_OK
        if args.action == "show":
            return _machine_show(machine, args.json)
        if args.action == "destroy":
            machine.destroy()
            print(f"destroyed the machine at {machine.root}")
            return EXIT_OK
        if args.action == "list-types":
            print("\n".join(instance_names()))
            return EXIT_OK
    if args.group == "driver":
        if args.action == "install":
            version = parse_driver_version(args.version)
            driver = machine.install_driver(version)
            print(f"installed {DRIVER_PACKAGE} {driver.installed}")
            if driver.reload_pending:
                print(f"the loaded module is still {driver.loaded}: NeuronCores are in use; "
                      "stop their owners, then run `nrt-lab driver reload`")
            return EXIT_OK
        if args.action == "uninstall":
            machine.uninstall_driver()
            print(f"removed {DRIVER_PACKAGE}")
            return EXIT_OK
        if args.action == "status":
            return _driver_status(machine, args.json)
        if args.action == "reload":
            reloaded = machine.reload_driver()
            print(f"reloaded the neuron module: version {reloaded.loaded}")
            return EXIT_OK
    raise AssertionError(f"unhandled command {args.group} {args.action}")


def _dispatch(args: argparse.Namespace) -> int:
    """Commands that need no emulated machine run without opening one."""
    if args.group == "models" and args.action == "build":
        return _models_build(args.directory)
    if args.group == "neff" and args.action == "inspect":
        return _neff_inspect(args.file)
    if args.group == "doctor":
        return doctor.run(args)
    if args.group == "pkg":
        return packages.run(args)
    if args.group == "systemctl":
        return systemctl.run(args)
    if args.group == "migrate-check":
        return migrate.run(args)
    if args.group == "compile":
        return compile_cli.run(args)
    if args.group == "cluster":
        return cluster_cli.run(args)
    handled = driver_cli.dispatch(args)
    if handled is not None:
        return handled
    return _run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nrt-lab`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except MachineInUseError as exc:
        return _cli.error(PROG, str(exc), EXIT_FAILED)
    except (CatalogueError, ValueError) as exc:
        return _cli.error(PROG, str(exc), EXIT_USAGE)
    except StateError as exc:
        return _cli.error(PROG, str(exc), EXIT_FAILED)
    except BrokenPipeError:  # `nrt-lab machine show | head -1`: the reader went away
        _cli.silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        return _cli.error(PROG, "interrupted", 130)

if __name__ == "__main__":
    sys.exit(main())
