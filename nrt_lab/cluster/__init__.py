"""Placeholder until the launcher lands (the lead's nrt_lab/cluster/__init__.py replaces this file)."""

from nrt_lab.cluster.views import ClusterMonitor, ClusterSnapshot, NodeView

__all__ = ["ClusterMonitor", "ClusterSnapshot", "NodeView"]
