"""Small helpers every NEFF module shares: the NRT_INVALID error and the member-path rule.

A member path (a tar member of the payload, or the ``file`` of a ``def.json`` var) is relative, at most
``MAX_PATH_DEPTH + 1`` components of ``[A-Za-z0-9_.-]`` with no ``.``/``..`` or empty component: defined here
once so the tar reader and the schema agree.
"""

from __future__ import annotations

import re

from nrt_lab.errors import NrtError, NrtStatus

__all__ = ["MAX_NAME_BYTES", "MAX_PATH_DEPTH", "check_member_path", "invalid"]

MAX_NAME_BYTES = 255
"""Longest name (UTF-8 bytes) of a NEFF, var or node: the header's ``name`` field is 256 bytes with its NUL."""

MAX_PATH_DEPTH = 4
"""Most directory levels of a constant's path below ``sgNN/``."""

_PATH_COMPONENT_RE = re.compile(r"[A-Za-z0-9_.-]+")


def invalid(message: str) -> NrtError:
    """An NRT_INVALID error: every malformed-NEFF report of the package."""
    return NrtError(NrtStatus.INVALID, message)


def check_member_path(name: str) -> None:
    """Raise NRT_INVALID unless ``name`` is a safe relative member path (module doc)."""
    if not name:
        raise invalid("NEFF payload has a tar member with an empty name")
    if "\x00" in name or "\\" in name:
        raise invalid(f"NEFF payload member {name!r} has a NUL or backslash in its path")
    if name.startswith("/"):
        raise invalid(f"NEFF payload member {name!r} has an absolute path")
    parts = name.split("/")
    if any(p in (".", "..") for p in parts):
        raise invalid(f"NEFF payload member {name!r} has a path traversal component ('.' or '..')")
    if any(p == "" for p in parts):
        raise invalid(f"NEFF payload member {name!r} has an empty path component")
    if len(parts) > MAX_PATH_DEPTH + 1:
        raise invalid(f"NEFF payload member {name!r} is nested too deep")
    for p in parts:
        if not _PATH_COMPONENT_RE.fullmatch(p):
            raise invalid(f"NEFF payload member {name!r} has characters outside [A-Za-z0-9_.-] in its path")
