"""A stand-in for ``neuron-rtd`` used only by the fast tests of packages, systemctl and co-existence: it holds its
devices through the driver's ownership with the daemon's owner record (the contract of docs/legacy.md), writes its
pid file once "serving", and releases everything on SIGTERM. Tests of the real daemon live in
test_legacy_daemon.py."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from nrt_lab.driver import (
    DAEMON_KIND,
    OwnerRecord,
    allocation_lock,
    append_state_text,
    open_machine,
    physical_core_count,
    try_claim,
)
from nrt_lab.legacy.paths import DEFAULT_ADDRESS, pid_file, real_to_root

__all__ = ["main"]


def _log(root: Path, message: str) -> None:
    stamp = time.strftime("%b %d %H:%M:%S")
    append_state_text(root / "log" / "syslog",
                      f"{stamp} {socket.gethostname()} nrtd[{os.getpid()}]: {message}\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="neuron-rtd")
    parser.add_argument("-i", dest="instance", default="")
    parser.add_argument("-c", dest="config", default="")
    parser.add_argument("-g", dest="address", default=DEFAULT_ADDRESS)
    args = parser.parse_args(argv)
    machine = open_machine()
    root = machine.root
    spec = machine.state().instance
    cores = list(range(physical_core_count(spec)))
    address = args.address
    if args.instance:
        path = real_to_root(root, f"/opt/aws/neuron/config/nrtd{args.instance}.json")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except OSError:
            print(f"neuron-rtd: error: config file /opt/aws/neuron/config/nrtd{args.instance}.json does not exist",
                  file=sys.stderr, flush=True)
            return 1
        per = spec.physical_cores_per_device
        cores = [d * per + c for d in config["devices"] for c in range(per)]
        address = config["server_port"]
    with allocation_lock(root):
        claim = try_claim(root, cores)
        if claim is None:
            _log(root, "[TDRV:tdrv_init] neuron:ncdev_device_init: device inuse")
            print("neuron-rtd: error: devices in use", file=sys.stderr, flush=True)
            return 1
        claim.publish(OwnerRecord(
            pid=os.getpid(), command="neuron-rtd " + " ".join(argv), runtime_version="1.6.9.0",
            cores=tuple(cores), tag=str(os.getpid()), start_time=time.time(),
            extra={"kind": DAEMON_KIND, "address": address, "instance": args.instance}))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    _log(root, f"[NRTD:RunServer] Server listening on {address}")
    pid_file(root, args.instance).parent.mkdir(parents=True, exist_ok=True)
    pid_file(root, args.instance).write_text(f"{os.getpid()}\n", encoding="ascii")
    signal.sigwait({signal.SIGTERM})
    claim.release()
    pid_file(root, args.instance).unlink(missing_ok=True)
    _log(root, "[NRTD:main] Shutting down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
