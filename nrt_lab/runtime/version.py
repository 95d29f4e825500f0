"""The emulated libnrt's version: one place for the number every log line, owner record and tool shows."""

from __future__ import annotations

__all__ = ["RUNTIME_VERSION", "RUNTIME_GIT_HASH"]

RUNTIME_VERSION = "2.34.10.0"
RUNTIME_GIT_HASH = "8f3c2a1d"
