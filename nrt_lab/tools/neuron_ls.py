"""``neuron-ls``: list the emulated machine's Neuron devices and the processes using them (docs/behaviour.md §7).

Reads the machine without reserving any NeuronCore, as the real tool opens devices without claiming cores.
``-j`` output is what Ray's Neuron accelerator detector parses; it is valid JSON even when nothing runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nrt_lab.tools import _cli

__all__ = ["PROG", "main", "build_parser", "neuron_ls_output"]

PROG = "neuron-ls"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with the real tool's long and short flags."""
    parser = argparse.ArgumentParser(prog=PROG, description="List Neuron devices and the processes using them.")
    parser.add_argument("-w", "--wide-view", "--wide", dest="wide", action="store_true",
                        help="show processes with full command lines (up to 80 characters)")
    parser.add_argument("-a", "--show-all-procs", "--all", dest="all_processes", action="store_true",
                        help="also show processes that use devices without a Neuron runtime")
    parser.add_argument("-t", "--topology", action="store_true", help="show the device topology")
    parser.add_argument("-j", "--json-output", "--json", dest="json", action="store_true", help="output JSON")
    return parser


def neuron_ls_output(*, wide: bool = False, all_processes: bool = False, topology: bool = False,
                     as_json: bool = False) -> str:
    """What ``neuron-ls`` prints for these flags, read from the live machine (provisioned on first use)."""
    # Imported here so that `neuron-ls --help` and bad flags answer without loading the driver (numpy).
    from nrt_lab.monitor import read_listing
    from nrt_lab.tools.neuron_ls_render import render_json, render_table, render_topology

    listing = read_listing(include_device_users=all_processes)
    instance, instance_id, owners = listing.instance, listing.instance_id, listing.owners
    if as_json:
        return render_json(instance, owners, all_processes=all_processes, instance_id=instance_id)
    if topology:
        return render_topology(instance, instance_id, owners)
    return render_table(instance, instance_id, owners, wide=wide, all_processes=all_processes)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuron-ls`` console script."""
    args = build_parser().parse_args(argv)
    try:
        text = neuron_ls_output(wide=args.wide, all_processes=args.all_processes, topology=args.topology,
                                as_json=args.json)
    except _cli.machine_errors() as exc:
        return _cli.error(PROG, str(exc))
    except KeyboardInterrupt:
        return _cli.error(PROG, "interrupted", 130)
    _cli.write_output(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
