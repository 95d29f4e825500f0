"""Pure hardware data: the instance catalogue (devices, NeuronCores, memory, links) and topology helpers.

This layer imports nothing else from nrt_lab; every other layer reads the emulated machine's shape from here.
"""

from __future__ import annotations

from nrt_lab.hardware.catalogue import (
    FAMILIES,
    GIB,
    CatalogueError,
    DeviceSpec,
    InstanceSpec,
    UnknownInstanceError,
    get_instance,
    instance_names,
)
from nrt_lab.hardware.topology import TopologyKind, classify, grid_position, torus_neighbours

__all__ = [
    "FAMILIES",
    "GIB",
    "CatalogueError",
    "DeviceSpec",
    "InstanceSpec",
    "TopologyKind",
    "UnknownInstanceError",
    "classify",
    "get_instance",
    "grid_position",
    "instance_names",
    "torus_neighbours",
]
