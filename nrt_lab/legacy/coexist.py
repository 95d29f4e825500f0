"""Runtime 2.x beside a running Runtime 1.x daemon: the check 2.x frameworks made before using libnrt (find the
daemon's NeuronCore groups over its socket and refuse to start), as the seed's troubleshooting pages describe it
(docs/legacy.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nrt_lab.driver import resolve_root
from nrt_lab.legacy.client import daemon_ncg_count
from nrt_lab.legacy.paths import DEFAULT_ADDRESS

__all__ = ["OCCUPIED_MESSAGE", "DaemonOccupiedError", "check_no_daemon_ncgs"]

OCCUPIED_MESSAGE = ("Detected occupied neuron-rtd ({count}) NeuronCore groups. Please stop it by "
                    "'sudo systemctl stop neuron-rtd'")


class DaemonOccupiedError(RuntimeError):
    """A neuron-rtd daemon holds NeuronCore groups, so a 2.x framework refuses to start beside it."""

    def __init__(self, count: int, address: str) -> None:
        super().__init__(OCCUPIED_MESSAGE.format(count=count))
        self.count = count
        self.address = address


def check_no_daemon_ncgs(address: str | None = None, *, env: Mapping[str, str] | None = None,
                         root: Path | str | None = None, timeout_s: float = 1.0) -> None:
    """What a 2.x framework does first: raise DaemonOccupiedError when the daemon at ``address`` (default
    ``NEURON_RTD_ADDRESS``, else ``unix:/run/neuron.sock``) holds NCGs; nothing answering there is fine."""
    environment = dict(os.environ if env is None else env)
    where = address or environment.get("NEURON_RTD_ADDRESS") or DEFAULT_ADDRESS
    state_root = Path(root) if root is not None else resolve_root(environment)
    count = daemon_ncg_count(where, state_root, timeout_s)
    if count:
        raise DaemonOccupiedError(count, where)
