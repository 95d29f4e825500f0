"""Where Runtime 1.x's files live: the real paths users see in messages and configs, mapped into the state root.

The real daemon uses ``/run/neuron.sock``, ``/opt/aws/neuron/config/neuron-rtd.config`` and binaries in
``/opt/aws/neuron/bin``; an emulated machine keeps them under its state root (``<root>/run/``,
``<root>/opt/aws/neuron/``) while every message and config keeps showing the real path (docs/behaviour.md §10).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_CONFIG",
    "NEURON_PREFIX",
    "RUN_DIR",
    "UNIT_NAME",
    "pid_file",
    "real_to_root",
    "root_to_real",
    "unit_name",
]

RUN_DIR = PurePosixPath("/run")
NEURON_PREFIX = PurePosixPath("/opt/aws/neuron")
DEFAULT_ADDRESS = "unix:/run/neuron.sock"
DEFAULT_CONFIG = NEURON_PREFIX / "config" / "neuron-rtd.config"
UNIT_NAME = "neuron-rtd"
_MAPPED = (RUN_DIR, NEURON_PREFIX)


def real_to_root(root: Path, real: str | PurePosixPath) -> Path:
    """The state-root path behind a real 1.x path (``/run/neuron.sock`` → ``<root>/run/neuron.sock``); other
    paths are the user's own and stay as they are."""
    path = PurePosixPath(real)
    for prefix in _MAPPED:
        if path == prefix or prefix in path.parents:
            return root / path.relative_to("/")
    return Path(path)


def root_to_real(root: Path, path: Path) -> str:
    """The real path shown to users for a path inside the state root (the inverse of :func:`real_to_root`)."""
    try:
        relative = PurePosixPath(path.relative_to(root))
    except ValueError:
        return str(path)
    real = PurePosixPath("/") / relative
    return str(real) if any(real == p or p in real.parents for p in _MAPPED) else str(path)


def unit_name(instance: str = "") -> str:
    """``neuron-rtd`` or the template instance ``neuron-rtd@<instance>``."""
    return f"{UNIT_NAME}@{instance}" if instance else UNIT_NAME


def pid_file(root: Path, instance: str = "") -> Path:
    """The daemon's pid file (``/run/neuron-rtd.pid``, ``/run/neuron-rtd@<inst>.pid``) inside the state root."""
    return real_to_root(root, RUN_DIR / f"{unit_name(instance)}.pid")
