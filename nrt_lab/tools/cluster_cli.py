"""``nrt-lab cluster up|down|status|stop-node|start-node``: a local Ray cluster of emulated Neuron nodes.

``up --node trn1.32xlarge --node inf2.48xlarge --node trn2.48xlarge:lnc1`` starts a Ray head and one Ray node per
machine (docs/cluster.md); ``status`` shows the nodes, their Ray ids, exporters and, with ``--ports``, every port
the cluster's processes listen on. Exit status: 0 success, 1 refused or failed (one line naming why), 2 bad
arguments. Ray is imported only by the commands that need it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nrt_lab.tools import _cli

__all__ = ["add_parser", "run", "render_status"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "nrt-lab cluster"


def add_parser(sub: Any) -> None:
    """Register ``cluster`` on the ``nrt-lab`` sub-parsers object."""
    p = sub.add_parser("cluster", help="start, show or stop a local Ray cluster of emulated Neuron nodes")
    csub = p.add_subparsers(dest="action", required=True)
    dir_help = "cluster directory (default: $NRT_LAB_CLUSTER_DIR, else <state root>-cluster)"
    up = csub.add_parser("up", help="start a Ray head and one Ray node per emulated machine")
    up.add_argument("--node", action="append", default=[], metavar="[NAME=]INSTANCE[:lncN]",
                    help="an emulated machine (repeatable), e.g. trn1.32xlarge, trn2.48xlarge:lnc1 "
                         "(default: one trn1.32xlarge)")
    up.add_argument("--cpus", type=_cli.bounded_int("--cpus", 1, 1024), default=8, metavar="N",
                    help="logical CPUs each node offers Ray (default 8)")
    up.add_argument("--no-exporters", action="store_true",
                    help="no neuron-monitor-prometheus per node (and no Prometheus/Grafana configuration)")
    up.add_argument("--timeout", type=_cli.positive_seconds, default=180.0, metavar="SECONDS",
                    help="how long to wait for every node to join (default 180)")
    up.add_argument("--dir", metavar="DIR", help=dir_help)
    down = csub.add_parser("down", help="stop every process of the cluster and remove its files")
    down.add_argument("--dir", metavar="DIR", help=dir_help)
    status = csub.add_parser("status", help="the nodes, their Ray node ids, exporters and state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--ports", action="store_true", help="also list every port the cluster listens on")
    status.add_argument("--dir", metavar="DIR", help=dir_help)
    stop = csub.add_parser("stop-node", help="stop one node (its Ray tasks fail as on a lost node)")
    stop.add_argument("name", help="node name, as `status` shows it")
    stop.add_argument("--kill", action="store_true", help="SIGKILL at once, as a node that loses power")
    stop.add_argument("--dir", metavar="DIR", help=dir_help)
    start = csub.add_parser("start-node", help="start a stopped node again (same machine, free cores)")
    start.add_argument("name", help="node name, as `status` shows it")
    start.add_argument("--dir", metavar="DIR", help=dir_help)


def render_status(info: Any, sockets: list[Any] | None = None) -> str:
    """The ``status`` table: one row per node, then the head's addresses (and the listening ports)."""
    rows = [("NODE", "INSTANCE", "CORES", "CPUS", "STATE", "RAY NODE", "EXPORTER")]
    for node in info.nodes:
        instance = node.instance + (f" (LNC {node.lnc})" if node.instance.startswith("trn2") else "")
        rows.append((node.name, instance, str(node.neuron_cores), str(node.cpus),
                     "running" if node.running else "stopped", node.ray_node_id[:12] or "-",
                     node.exporter_url or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    head = "running" if info.head_running else "NOT RUNNING (run `nrt-lab cluster down`, then `up`)"
    lines += ["", f"head: {head}", f"address: {info.address}   (nrt_lab.cluster.connect() or ray.init(address=...))",
              f"dashboard: {info.dashboard_url}", f"directory: {info.directory}"]
    if info.prometheus_config is not None:
        lines.append(f"prometheus: {info.prometheus_config}")
    if sockets is not None:
        lines += ["", "listening ports (node, process, address:port):"]
        lines += [f"  {s.node:<10} {s.process[:24]:<24} {s.address}:{s.port}"
                  + ("" if s.loopback else "   NOT LOOPBACK") for s in sockets]
    return "\n".join(_cli.printable(line) for line in lines) + "\n"


def _info_json(info: Any) -> dict[str, Any]:
    return {
        "directory": str(info.directory), "address": info.address, "dashboard_url": info.dashboard_url,
        "head_running": info.head_running,
        "prometheus_config": str(info.prometheus_config) if info.prometheus_config else None,
        "nodes": [{"name": n.name, "instance": n.instance, "lnc": n.lnc, "root": str(n.root),
                   "neuron_cores": n.neuron_cores, "cpus": n.cpus, "running": n.running,
                   "ray_node_id": n.ray_node_id, "exporter_url": n.exporter_url} for n in info.nodes],
    }


def run(args: argparse.Namespace) -> int:
    """Run one ``nrt-lab cluster`` action; every failure is one line (or a few, with a log tail) on stderr."""
    import nrt_lab.cluster as cluster

    try:
        if args.action == "up":
            specs = cluster.parse_node_specs(args.node or ["trn1.32xlarge"])
            print(f"starting a Ray head and {len(specs)} node(s): "
                  + ", ".join(s.text for s in specs), flush=True)
            info = cluster.up(specs, args.dir, cpus_per_node=args.cpus, exporters=not args.no_exporters,
                              timeout_s=args.timeout)
            sockets = cluster.listening_sockets(info.directory)
            text = render_status(info)
            exposed = [s for s in sockets if not s.loopback]
            if exposed:
                text += ("WARNING: Ray listens beyond loopback on "
                         + ", ".join(f"{s.address}:{s.port} ({s.process})" for s in exposed) + "\n")
            _cli.write_output(text)
        elif args.action == "down":
            info = cluster.down(args.dir)
            _cli.write_output(f"stopped the Ray head and {len(info.nodes)} node(s) of {info.directory}\n")
        elif args.action == "status":
            info = cluster.read_cluster(args.dir)
            listening = cluster.listening_sockets(args.dir) if args.ports else None
            if args.json:
                data = _info_json(info)
                if listening is not None:
                    data["listening"] = [{"node": s.node, "pid": s.pid, "process": s.process,
                                          "address": s.address, "port": s.port} for s in listening]
                _cli.write_output(json.dumps(data, indent=2) + "\n")
            else:
                _cli.write_output(render_status(info, listening))
        elif args.action == "stop-node":
            node = cluster.stop_node(args.name, args.dir, kill=args.kill)
            _cli.write_output(f"{'killed' if args.kill else 'stopped'} node {node.name} ({node.instance}); "
                              f"`nrt-lab cluster start-node {node.name}` starts it again\n")
        elif args.action == "start-node":
            node = cluster.start_node(args.name, args.dir)
            _cli.write_output(f"started node {node.name} ({node.instance}, {node.neuron_cores} NeuronCores), "
                              f"Ray node {node.ray_node_id[:12]}\n")
    except cluster.ClusterError as exc:
        first, *rest = str(exc).split("\n")
        _cli.error(PROG, first, EXIT_FAILED)
        for line in rest:  # the last lines of a log, when Ray failed to start
            sys.stderr.write(f"  {_cli.printable(line)}\n")
        return EXIT_FAILED
    except _cli.machine_errors() as exc:
        return _cli.error(PROG, str(exc), EXIT_FAILED)
    return EXIT_OK
