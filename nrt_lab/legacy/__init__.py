"""Runtime 1.x: the ``neuron-rtd`` daemon and what surrounded it (packages, systemctl, neuron-cli, the 1.x client)
and the tools that walk a user out of it (docs/legacy.md, docs/legacy_daemon.md).

``Client``, ``LegacyModel``, ``LegacyError`` and ``DaemonUnreachable`` are imported on first use (grpc is not
loaded by ``import nrt_lab.legacy``)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Client", "DaemonUnreachable", "LegacyError", "LegacyModel"]

_LAZY = {name: "nrt_lab.legacy.client" for name in __all__}


def __getattr__(name: str) -> Any:
    """The 1.x client's names, imported on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
