"""Helpers for the packages, systemctl and co-existence tests: a stand-in neuron-rtd process
(tests/neuron-rtd-standin.py) started directly or found on PATH as ``neuron-rtd`` by ``nrt-lab systemctl``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from conftest import child_environment
from nrt_lab.legacy.paths import pid_file

__all__ = ["FAKE", "FakeDaemon", "fake_on_path"]

FAKE = Path(__file__).parent / "neuron-rtd-standin.py"  # "neuron-rtd" in its command line, like the real one
_READY_TIMEOUT_S = 60.0


def fake_on_path(directory: Path) -> str:
    """Write an executable ``neuron-rtd`` into ``directory`` that runs the stand-in; returns the new PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "neuron-rtd"
    repo = Path(__file__).resolve().parent.parent
    script.write_text(f"#!/bin/sh\nPYTHONPATH={repo} exec {sys.executable} {FAKE} \"$@\"\n", encoding="utf-8")
    script.chmod(0o755)
    return f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"


class FakeDaemon:
    """A stand-in daemon holding devices with the daemon's owner record until the block ends (SIGTERM)."""

    def __init__(self, root: Path, tmp_path: Path, *args: str, instance: str = "") -> None:
        self.root = root
        argv = [*args, *(["-i", instance] if instance else [])]
        env = child_environment(root, {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        self.instance = instance
        self.proc = subprocess.Popen([sys.executable, str(FAKE), *argv], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        path = pid_file(root, instance)
        while not (path.exists() and path.read_text().strip() == str(self.proc.pid)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake neuron-rtd exited {self.proc.returncode}: {self.proc.stderr.read()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("fake neuron-rtd did not become ready")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        """The daemon's pid."""
        return self.proc.pid

    def stop(self) -> int:
        """SIGTERM and wait (the clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.proc.communicate()
        return code

    def __enter__(self) -> FakeDaemon:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
