"""Shared by the tests that run real Ray clusters: the loopback-only rule and a cluster that is always torn down.

Ray must only ever run where nothing but loopback exists (``./run-tests`` runs pytest through
``scripts/loopback_only.py`` when it is root); elsewhere these tests skip and say why.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["loopback_only", "skip_reason", "requires_cluster", "running_cluster"]


def loopback_only() -> bool:
    """True when this process's network namespace has no interface but ``lo`` (asked of the kernel, not sysfs,
    which still shows the host's interfaces inside ``unshare --net``)."""
    return [name for _index, name in socket.if_nameindex()] == ["lo"]


def skip_reason() -> str | None:
    """Why a real Ray cluster cannot run here, or None when it can."""
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'nrt_lab[cluster]')"
    if not loopback_only():
        return ("Ray clusters run only in a loopback-only network namespace: run the tests as root through "
                "./run-tests (scripts/loopback_only.py), or `unshare --net` and `ip link set lo up` first")
    return None


requires_cluster = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


@contextmanager
def running_cluster(directory: Path, specs: Sequence[str], **options: object) -> Iterator[object]:
    """``nrt_lab.cluster.up`` in ``directory``, always followed by ``down`` (even when the test fails)."""
    import nrt_lab.cluster as cluster

    os.environ.pop("RAY_ADDRESS", None)
    info = cluster.up(list(specs), directory, **options)  # type: ignore[arg-type]
    try:
        yield info
    finally:
        cluster.down(directory)
