"""Runtime 2.x beside a running Runtime 1.x daemon: the check 2.x frameworks made before using libnrt (find the
daemon's NeuronCore groups over its socket and refuse to start), as the seed's troubleshooting pages describe it
(docs/legacy.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nrt_lab.driver import resolve_root
from nrt_lab.legacy.client import DaemonUnreachable, connect
from nrt_lab.legacy.paths import DEFAULT_ADDRESS
from nrt_lab.legacy.proto import nrt_v1_pb2 as pb
from nrt_lab.legacy.proto import nrt_v1_pb2_grpc as pb_grpc

__all__ = ["OCCUPIED_MESSAGE", "DaemonOccupiedError", "check_no_daemon_ncgs", "daemon_ncg_count"]

OCCUPIED_MESSAGE = ("Detected occupied neuron-rtd ({count}) NeuronCore groups. Please stop it by "
                    "'sudo systemctl stop neuron-rtd'")


class DaemonOccupiedError(RuntimeError):
    """A neuron-rtd daemon holds NeuronCore groups, so a 2.x framework refuses to start beside it."""

    def __init__(self, count: int, address: str) -> None:
        super().__init__(OCCUPIED_MESSAGE.format(count=count))
        self.count = count
        self.address = address


def daemon_ncg_count(address: str | None = None, *, env: Mapping[str, str] | None = None,
                     root: Path | str | None = None, timeout_s: float = 1.0) -> int | None:
    """How many NeuronCore groups the daemon at ``address`` (default ``NEURON_RTD_ADDRESS``) has; None when no
    daemon answers there."""
    environment = dict(os.environ if env is None else env)
    where = address or environment.get("NEURON_RTD_ADDRESS") or DEFAULT_ADDRESS
    state_root = Path(root) if root is not None else resolve_root(environment)
    try:
        channel = connect(where, state_root, timeout_s)
    except DaemonUnreachable:
        return None
    try:
        stub = pb_grpc.nmgr_v1Stub(channel)  # type: ignore[no-untyped-call]
        response: pb.out_list_egs = stub.list_egs(pb.empty(), timeout=max(timeout_s, 5.0))
        return len(response.eg_info)
    finally:
        channel.close()


def check_no_daemon_ncgs(address: str | None = None, *, env: Mapping[str, str] | None = None,
                         root: Path | str | None = None, timeout_s: float = 1.0) -> None:
    """What a 2.x framework does first: raise DaemonOccupiedError when the daemon at ``address`` holds NCGs."""
    environment = dict(os.environ if env is None else env)
    where = address or environment.get("NEURON_RTD_ADDRESS") or DEFAULT_ADDRESS
    count = daemon_ncg_count(where, env=environment, root=root, timeout_s=timeout_s)
    if count:
        raise DaemonOccupiedError(count, where)
