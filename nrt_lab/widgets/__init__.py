"""Jupyter widgets for the emulated machine: who owns which NeuronCore, driver health, and a live neuron-top.

* :class:`CoreMap` — devices × cores grid (and device topology) coloured by owner process, legend with pid, tag,
  command and Jupyter kernel id; release this kernel's cores; terminate another owner after a confirmation.
* :class:`DriverStatus` — driver package and versions, the runtime's gate verdict, neuron-rtd, this kernel's
  NEURON_* settings and the troubleshooting findings (docs/behaviour.md §9) that apply, with remedies.
* :class:`TopView` — live per-core utilization (% or TFLOPS), memory, executions, latency, history.
* :class:`Dashboard` / :func:`show` — the three together, fed by one background thread.
* :class:`ClusterMap` / :class:`ClusterDashboard` — every node of an emulated Ray cluster (docs/cluster-views.md):
  nodes × devices × cores, owners coloured by Ray actor or job, live utilization, pending demands.

Each widget samples in one background thread that only sets trait values, at most 10 times a second, sends
only what changed, and can be paused, resumed, stopped (``.stop()``) or closed (``.close()``). Every widget
also renders as plain HTML (``_repr_html_``) and deterministic text for nbconvert, nbval and GitHub.
"""

from __future__ import annotations

from nrt_lab.widgets._base import LiveWidget, MessageLog, record_messages
from nrt_lab.widgets._sampler import MIN_PERIOD, Sampler
from nrt_lab.widgets._static import owner_color
from nrt_lab.widgets.cluster_map import ClusterDashboard, ClusterMap
from nrt_lab.widgets.core_map import ActionRefused, CoreMap
from nrt_lab.widgets.dashboard import Dashboard, show
from nrt_lab.widgets.driver_status import DriverStatus
from nrt_lab.widgets.top_view import TopView

__all__ = [
    "ActionRefused",
    "ClusterDashboard",
    "ClusterMap",
    "CoreMap",
    "Dashboard",
    "DriverStatus",
    "LiveWidget",
    "MIN_PERIOD",
    "MessageLog",
    "Sampler",
    "TopView",
    "owner_color",
    "record_messages",
    "show",
]
