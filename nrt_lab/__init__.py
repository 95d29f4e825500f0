"""nrt_lab: learn, test and demo AWS Neuron Runtime 2.x without the hardware.

The Pythonic API lives here; ``nrt_lab.nrt`` mirrors nrt.h's C names and ``nrt_lab.nrtpy`` is a drop-in
for AWS's nrtpy. ``init()`` claims NeuronCores on the emulated machine exactly as libnrt's ``nrt_init``.

Names are imported on first use (module ``__getattr__``): the command-line tools import ``nrt_lab.tools`` and
``nrt_lab.monitor`` without paying for the runtime and its kernels (numpy dtypes extensions take most of a
second to import), so ``neuron-ls`` starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nrt_lab.compiler import compile
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
    from nrt_lab.widgets import show

__version__ = "0.1.0"

# Public name -> module defining it (imported on first access).
_LAZY = {
    **dict.fromkeys(("Machine", "OwnerRecord", "StateError", "open_machine"), "nrt_lab.driver"),
    **dict.fromkeys((
        "RUNTIME_VERSION", "BenchmarkResult", "Framework", "Model", "NrtError", "NrtStatus", "Runtime", "Tensor",
        "TensorInfo", "TensorPlacement", "TensorSet", "close", "get_runtime", "init", "total_nc_count",
        "visible_nc_count",
    ), "nrt_lab.runtime"),
    # ONNX -> NEFF (docs/compiler.md); needs the ``onnx`` package.
    "compile": "nrt_lab.compiler",
    # The Jupyter dashboard needs the ``lab`` extra.
    "show": "nrt_lab.widgets",
}


def __getattr__(name: str) -> object:
    """Import a public name's module on first use and cache the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nrt_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Every public name, including those not imported yet."""
    return sorted(set(globals()) | set(_LAZY))


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
    "compile",
]
