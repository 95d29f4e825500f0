"""``nrt-lab fault …`` and ``nrt-lab sysfs``: inject hardware faults and read the driver's sysfs tree.

Kept apart from :mod:`nrt_lab.tools.cli`, which only registers these sub-commands (:func:`add_parsers`) and
hands them over (:func:`dispatch`). Exit status: 0 success, 1 refused or failed (corrupted state, driver
not loaded), 2 bad arguments (nothing is stored).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from nrt_lab.driver import (
    FAULT_KINDS,
    Fault,
    FaultError,
    clear_faults,
    inject_fault,
    list_faults,
    open_machine,
)
from nrt_lab.monitor import (
    SYSFS_ROOT,
    SysfsPathError,
    flatten_sysfs,
    lookup_sysfs,
    normalize_sysfs_path,
    read_sysfs_tree,
)
from nrt_lab.tools import _cli

__all__ = ["add_parsers", "dispatch"]

EXIT_OK, EXIT_USAGE = 0, 2


def add_parsers(sub: Any) -> None:
    """Register ``fault`` and ``sysfs`` on the ``nrt-lab`` sub-parsers object."""
    fault = sub.add_parser("fault", help="inject, list or clear emulated hardware faults")
    fsub = fault.add_subparsers(dest="action", required=True)
    inject = fsub.add_parser("inject", help="arm a fault that fires on executions of a NeuronCore or device")
    target = inject.add_mutually_exclusive_group(required=True)
    target.add_argument("--core", type=int, metavar="N", help="logical NeuronCore id (as neuron-ls numbers it)")
    target.add_argument("--device", type=int, metavar="N", help="Neuron device index (any of its cores)")
    inject.add_argument("--kind", required=True, choices=FAULT_KINDS, help="what goes wrong")
    inject.add_argument("--after", type=int, default=0, metavar="N",
                        help="let N executions on the target pass; the (N+1)-th fires (default 0)")
    inject.add_argument("--probability", type=float, default=None, metavar="P",
                        help="from then on, each execution fires with probability P (0-1)")
    inject.add_argument("--seed", type=int, default=None, metavar="S",
                        help="seed of --probability: the same executions fire on every run")
    inject.add_argument("--count", type=int, default=1, metavar="K", help="fires before the fault is spent (default 1)")
    show = fsub.add_parser("list", help="stored faults with their progress")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    clear = fsub.add_parser("clear", help="remove one fault (by ID) or all of them")
    clear.add_argument("id", nargs="?", metavar="ID", help="fault id as listed (e.g. f1); default: all")

    sysfs = sub.add_parser("sysfs", help=f"read the driver's sysfs tree ({SYSFS_ROOT})")
    sysfs.add_argument("path", nargs="?", default="", metavar="PATH",
                       help="file or directory relative to the tree, e.g. neuron0/neuron_core1/stats/status/success")
    sysfs.add_argument("--json", action="store_true", help="print the file or directory as JSON")


def _describe(fault: Fault) -> str:
    where = f"NeuronCore {fault.index}" if fault.target == "core" else f"device {fault.index} (any of its cores)"
    when = f"the execution after the first {fault.after}" if fault.after else "the next execution"
    if fault.probability is not None:
        when = (f"each execution{f' after the first {fault.after}' if fault.after else ''} with probability "
                f"{fault.probability:g} (seed {fault.seed})")
    times = "once" if fault.count == 1 else f"{fault.count} times"
    return f"injected {fault.id}: {fault.kind} on {where}; fires on {when}, {times}"


def _fault_list(as_json: bool) -> int:
    faults = list_faults(open_machine().root)
    if as_json:
        print(json.dumps([f.to_json() for f in faults], indent=2))
        return EXIT_OK
    if not faults:
        print("no faults")
        return EXIT_OK
    rows = [("ID", "KIND", "TARGET", "AFTER", "PROBABILITY", "SEED", "COUNT", "FIRED", "SEEN", "STATE")]
    for f in faults:
        rows.append((f.id, f.kind, f.target_label, str(f.after), "-" if f.probability is None else f"{f.probability:g}",
                     "-" if f.seed is None else str(f.seed), str(f.count), str(f.fired), str(f.seen), f.state))
    shown = [[_cli.printable(cell) for cell in row] for row in rows]  # fault files are state: escape them
    widths = [max(len(row[i]) for row in shown) for i in range(len(shown[0]))]
    for row in shown:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def _fault(args: argparse.Namespace) -> int:
    root = open_machine().root
    try:
        if args.action == "inject":
            fault = inject_fault(root, kind=args.kind, core=args.core, device=args.device, after=args.after,
                                 probability=args.probability, seed=args.seed, count=args.count)
            print(_describe(fault))
            return EXIT_OK
        if args.action == "list":
            return _fault_list(args.json)
        removed = clear_faults(root, args.id)
    except FaultError as exc:
        return _cli.error("nrt-lab", str(exc), EXIT_USAGE)
    print(f"cleared {', '.join(removed)}" if removed else "no faults to clear")
    return EXIT_OK


def _sysfs(path: str, as_json: bool) -> int:
    tree = read_sysfs_tree()
    try:
        node = lookup_sysfs(tree, path)
    except SysfsPathError as exc:
        return _cli.error("nrt-lab", str(exc), EXIT_USAGE)
    if as_json:
        print(json.dumps(node, indent=2))
    elif isinstance(node, dict):
        for name, value in flatten_sysfs(node, "/".join(normalize_sysfs_path(path))):
            print(f"{name}: {value}")
    else:
        print(node)
    return EXIT_OK


def dispatch(args: argparse.Namespace) -> int | None:
    """Run ``fault``/``sysfs`` commands; None for any other group."""
    if args.group == "fault":
        return _fault(args)
    if args.group == "sysfs":
        return _sysfs(args.path, args.json)
    return None
