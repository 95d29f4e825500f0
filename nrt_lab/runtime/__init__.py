"""libnrt 2.x emulation: configuration, allocation, logging, status codes and the runtime life cycle.

Names are imported from their modules on first use (module ``__getattr__``), so a face that only needs
``RUNTIME_VERSION`` or ``driver_gate`` does not import the models, tensors and NumPy's dtype extensions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from nrt_lab.errors import ConfigError, NrtError, NrtStatus, status_description

if TYPE_CHECKING:
    from nrt_lab.runtime.allocation import CoresBusyError, NotContiguousError
    from nrt_lab.runtime.config import RuntimeConfig
    from nrt_lab.runtime.core import (
        Framework,
        OwnerIdentity,
        Runtime,
        close,
        driver_gate,
        get_runtime,
        init,
        require_runtime,
        total_nc_count,
        visible_nc_count,
    )
    from nrt_lab.runtime.logging import LogLevel
    from nrt_lab.runtime.model import BenchmarkResult, Model, TensorInfo
    from nrt_lab.runtime.tensor import Tensor, TensorPlacement, TensorSet
    from nrt_lab.runtime.version import RUNTIME_VERSION

# Public name -> the module defining it.
_LAZY = {
    **dict.fromkeys(("CoresBusyError", "NotContiguousError"), "nrt_lab.runtime.allocation"),
    "RuntimeConfig": "nrt_lab.runtime.config",
    **dict.fromkeys(("Framework", "OwnerIdentity", "Runtime", "close", "driver_gate", "get_runtime", "init", "require_runtime",
                     "total_nc_count", "visible_nc_count"), "nrt_lab.runtime.core"),
    "LogLevel": "nrt_lab.runtime.logging",
    **dict.fromkeys(("BenchmarkResult", "Model", "TensorInfo"), "nrt_lab.runtime.model"),
    **dict.fromkeys(("Tensor", "TensorPlacement", "TensorSet"), "nrt_lab.runtime.tensor"),
    "RUNTIME_VERSION": "nrt_lab.runtime.version",
}


def __getattr__(name: str) -> object:
    """Import a public name's module on first use and cache the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nrt_lab.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CoresBusyError",
    "NotContiguousError",
    "RuntimeConfig",
    "RUNTIME_VERSION",
    "Framework",
    "OwnerIdentity",
    "Runtime",
    "close",
    "driver_gate",
    "get_runtime",
    "init",
    "require_runtime",
    "total_nc_count",
    "visible_nc_count",
    "ConfigError",
    "LogLevel",
    "NrtError",
    "NrtStatus",
    "status_description",
    "BenchmarkResult",
    "Model",
    "TensorInfo",
    "Tensor",
    "TensorPlacement",
    "TensorSet",
]
