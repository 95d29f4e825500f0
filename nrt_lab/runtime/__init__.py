"""libnrt 2.x emulation: configuration, allocation, logging, status codes and the runtime life cycle."""

from nrt_lab.errors import ConfigError, NrtError, NrtStatus, status_description
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
