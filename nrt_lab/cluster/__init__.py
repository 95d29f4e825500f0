"""A local Ray cluster of emulated Neuron nodes: start it, connect to it, stop or kill nodes (docs/cluster.md).

Ray is an optional dependency (``pip install 'nrt_lab[cluster]'``): it is imported only when a cluster is
started, reached or watched, so ``import nrt_lab.cluster`` and ``nrt-lab --help`` stay fast without it.
"""

from nrt_lab.cluster.launcher import (
    CLUSTER_DIR_VARIABLE,
    INSTANCE_LABEL,
    NODE_LABEL,
    ClusterInfo,
    ListeningSocket,
    NodeInfo,
    connect,
    default_cluster_dir,
    down,
    listening_sockets,
    read_cluster,
    start_node,
    stop_node,
    up,
)
from nrt_lab.cluster.nodes import MAX_NODES, ClusterError, NodeSpec, parse_node_spec, parse_node_specs
from nrt_lab.cluster.views import (
    ClusterMonitor,
    ClusterSnapshot,
    DeviceView,
    NodeView,
    OwnerEntry,
    PendingDemand,
    RayOwner,
    snapshot_from_dict,
)

__all__ = [
    "CLUSTER_DIR_VARIABLE",
    "INSTANCE_LABEL",
    "MAX_NODES",
    "NODE_LABEL",
    "ClusterError",
    "ClusterInfo",
    "ClusterMonitor",
    "ClusterSnapshot",
    "DeviceView",
    "ListeningSocket",
    "NodeInfo",
    "NodeSpec",
    "NodeView",
    "OwnerEntry",
    "PendingDemand",
    "RayOwner",
    "connect",
    "default_cluster_dir",
    "down",
    "listening_sockets",
    "parse_node_spec",
    "parse_node_specs",
    "read_cluster",
    "snapshot_from_dict",
    "start_node",
    "stop_node",
    "up",
]
