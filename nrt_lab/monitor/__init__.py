"""The read side: typed, timestamped snapshots of every runtime on the emulated machine (tools and widgets
import only this public API)."""

from nrt_lab.monitor.snapshot import (
    NA,
    PERCENTILES,
    CoreSample,
    MachineSnapshot,
    ModelInfo,
    Monitor,
    NotApplicable,
    RuntimeSnapshot,
    SystemSnapshot,
    get_view,
    percentiles,
    snapshot,
)

__all__ = [
    "NA",
    "PERCENTILES",
    "CoreSample",
    "MachineSnapshot",
    "ModelInfo",
    "Monitor",
    "NotApplicable",
    "RuntimeSnapshot",
    "SystemSnapshot",
    "get_view",
    "percentiles",
    "snapshot",
]
