#!/usr/bin/env python3
"""Run a command in a new network namespace whose only interface is loopback, brought up: nothing it starts can
reach or be reached from another machine. Needs root (CAP_SYS_ADMIN); ./run-tests uses it so that the Ray
clusters of the tests never listen on a real interface.

Usage: scripts/loopback_only.py COMMAND [ARGS...]   (exit status 125 when the namespace cannot be made)
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def enter_loopback_only_namespace() -> None:
    """unshare(CLONE_NEWNET), then set `lo` up (as `ip link set lo up` does) with SIOCSIFFLAGS."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNET): {os.strerror(errno)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        enter_loopback_only_namespace()
    except OSError as exc:
        print(f"loopback_only: cannot make a loopback-only network namespace: {exc}", file=sys.stderr)
        return 125
    os.execvp(sys.argv[1], sys.argv[1:])
    return 127


if __name__ == "__main__":
    sys.exit(main())
