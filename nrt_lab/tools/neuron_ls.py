"""``neuron-ls``: list the emulated machine's Neuron devices and the processes using them (docs/behaviour.md §7).

Reads the machine without reserving any NeuronCore, as the real tool opens devices without claiming cores.
``-j`` output is what Ray's Neuron accelerator detector parses; it is valid JSON even when nothing runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nrt_lab.tools import _cli

__all__ = ["PROG", "main", "build_parser", "cluster_output", "neuron_ls_output"]

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
    cluster = parser.add_argument_group("cluster (docs/cluster-views.md)")
    cluster.add_argument("--cluster", action="store_true",
                         help="list every node of the emulated Ray cluster, its NeuronCores and their owners")
    cluster.add_argument("--cluster-dir", metavar="DIR",
                         help="the cluster's directory (default: $NRT_LAB_CLUSTER_DIR, else the default one)")
    cluster.add_argument("--address", metavar="HOST:PORT",
                         help="connect to this Ray cluster's GCS instead of reading a cluster directory")
    cluster.add_argument("--timeout", type=_cli.positive_seconds, default=10.0, metavar="SECONDS",
                         help="at most this long for the nodes to answer (default 10)")
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


def cluster_output(*, directory: str | None = None, address: str | None = None, as_json: bool = False,
                   wide: bool = False, timeout_s: float = 10.0) -> str:
    """What ``neuron-ls --cluster`` prints: connects this process to the cluster as a Ray driver, samples every
    node once through its monitor actor, disconnects. Raises ClusterError (one line: what to do)."""
    from nrt_lab.cluster import ClusterError
    from nrt_lab.cluster.views import ClusterMonitor, connect_driver
    from nrt_lab.tools.neuron_ls_render import render_cluster, render_cluster_json

    if directory is not None and address is not None:
        raise ClusterError("--cluster-dir and --address name the cluster twice; give one of them")
    info, disconnect = connect_driver(directory=directory, address=address)
    try:
        monitor = ClusterMonitor(info, timeout_s=timeout_s)
        try:
            snapshot = monitor.sample()
        finally:
            monitor.close()
    finally:
        disconnect()
    return render_cluster_json(snapshot) if as_json else render_cluster(snapshot, wide=wide)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuron-ls`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.cluster and (args.cluster_dir is not None or args.address is not None):
        parser.error("--cluster-dir and --address go with --cluster")
    if args.cluster:
        if args.topology or args.all_processes:
            parser.error("--cluster lists nodes; -t and -a are for one machine (run neuron-ls on a node)")
        from nrt_lab.cluster import ClusterError

        try:
            text = cluster_output(directory=args.cluster_dir, address=args.address, as_json=args.json,
                                  wide=args.wide, timeout_s=args.timeout)
        except ClusterError as exc:
            return _cli.error(PROG, str(exc))
        except KeyboardInterrupt:
            return _cli.error(PROG, "interrupted", 130)
        _cli.write_output(text)
        return 0
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
