"""nrt_lab: learn, test and demo AWS Neuron Runtime 2.x without the hardware.

The Pythonic API lives here; ``nrt_lab.nrt`` mirrors nrt.h's C names and ``nrt_lab.nrtpy`` is a drop-in
for AWS's nrtpy. ``init()`` claims NeuronCores on the emulated machine exactly as libnrt's ``nrt_init``.
"""

from nrt_lab.driver import Machine, OwnerRecord, StateError, open_machine
from nrt_lab.runtime import (
    RUNTIME_VERSION,
    BenchmarkResult,
    Framework,
    Model,
    NrtError,
    NrtStatus,
    Runtime,
    Tensor,
    TensorInfo,
    TensorPlacement,
    TensorSet,
    close,
    get_runtime,
    init,
    total_nc_count,
    visible_nc_count,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``nrt_lab.show()`` displays the Jupyter dashboard; imported lazily (widgets need the ``lab`` extra)."""
    if name == "show":
        from nrt_lab.widgets import show

        return show
    raise AttributeError(f"module 'nrt_lab' has no attribute {name!r}")

__all__ = [
    "Machine",
    "OwnerRecord",
    "StateError",
    "open_machine",
    "RUNTIME_VERSION",
    "BenchmarkResult",
    "Model",
    "Tensor",
    "TensorInfo",
    "TensorPlacement",
    "TensorSet",
    "Framework",
    "NrtError",
    "NrtStatus",
    "Runtime",
    "close",
    "get_runtime",
    "init",
    "total_nc_count",
    "visible_nc_count",
    "__version__",
    "show",
]
