"""Helpers of the Runtime 1.x tests: short state roots (Unix sockets allow 107 bytes), real neuron-rtd daemons
as subprocesses, and small NEFFs compiled "for 1.x" (NEFF 1.1)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from nrt_lab.driver import open_machine
from nrt_lab.neff import GraphBuilder

__all__ = [
    "serving_root","Daemon", "add_neff", "short_root", "start_daemon"]

START_TIMEOUT_S = 60.0


def add_neff(name: str = "add", version: tuple[int, int] = (1, 1), shape: tuple[int, ...] = (4, 3),
             cores: int = 1) -> bytes:
    """``out = a + b`` (float32) as a NEFF of ``version`` with a fixed uuid (golden outputs stay stable)."""
    g = GraphBuilder(name=name)
    a = g.input("a", "float32", shape)
    b = g.input("b", "float32", shape)
    g.output("out", g.op("add", [a, b]))
    return g.build(neff_version=version, uuid=bytes(range(16)), requested_cores=cores)


def short_root(instance: str = "inf1.6xlarge") -> Iterator[Path]:
    """A provisioned state root under /tmp/nrtXXXX (short enough for its sockets), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="nrt", dir="/tmp"))
    root = base / "r"
    open_machine(root).create(instance, None)
    try:
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


def child_env(root: Path, **extra: str) -> dict[str, str]:
    """The test environment without NEURON*/NRT_LAB* variables, plus the root and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON", "NRT_LAB", "AWS_NEURON"))}
    env["NRT_LAB_ROOT"] = str(root)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["GRPC_VERBOSITY"] = "NONE"
    env.update(extra)
    return env


class Daemon:
    """A real ``neuron-rtd`` process."""

    def __init__(self, root: Path, args: Sequence[str], instance: str = "") -> None:
        self.root = root
        self.instance = instance
        self.log_path = root.parent / f"nrtd{instance or ''}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "nrt_lab.legacy.daemon", *args], env=child_env(root),
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / (f"neuron-rtd@{self.instance}.pid" if self.instance else "neuron-rtd.pid")

    def wait_serving(self) -> None:
        """Until the pid file names this process (it is written once the server listens)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"neuron-rtd exited with {self.proc.returncode}: {self.output()}")
            try:
                if self.pid_file.read_text().strip() == str(self.pid):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"neuron-rtd did not start: {self.output()}")

    def wait_exit(self, timeout: float = START_TIMEOUT_S) -> int:
        """Its exit status."""
        return self.proc.wait(timeout)

    def output(self) -> str:
        """What it printed (stdout and stderr)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal it and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            self._log.close()


def start_daemon(root: Path, *args: str, instance: str = "", wait: bool = True) -> Daemon:
    """Start ``neuron-rtd ARGS`` on ``root`` (and wait until it serves)."""
    daemon = Daemon(root, list(args) + (["-i", instance] if instance else []), instance)
    if wait:
        daemon.wait_serving()
    return daemon


def serving_root() -> Iterator[Path]:
    """A short state root with a fresh daemon on every device of an inf1.6xlarge (16 NeuronCores, NCG ids from 1,
    model ids from 10001), stopped cleanly afterwards: the body of the module-scoped ``root`` fixtures."""
    for state in short_root():
        daemon = start_daemon(state)
        try:
            yield state
        finally:
            assert daemon.stop() == 0, daemon.output()


def write_config(root: Path, name: str, data: object) -> str:
    """Write a daemon config under ``/opt/aws/neuron/config`` of ``root``; its real path."""
    directory = root / "opt" / "aws" / "neuron" / "config"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(data if isinstance(data, str) else json.dumps(data))
    return f"/opt/aws/neuron/config/{name}"
