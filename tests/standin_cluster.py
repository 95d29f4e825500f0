"""A small real Ray cluster for the live view tests, started with raw ``ray start`` as docs/cluster.md's
launcher does: a head with 0 CPUs, one Ray node per emulated machine with its own ``NRT_LAB_ROOT``, its
``neuron_cores`` resource and the ``nrt-lab.io/*`` labels. Run it only in a loopback-only network namespace.

Each ``ray start --block`` is a session leader; a node is stopped by killing every process of its session
(``ray stop`` would stop every Ray on the machine). Ports are fixed: the namespace is the test's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

HEAD_PORT = 6391
_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0", "RAY_enable_worker_prestart": "0", "RAY_prestart_worker_first_driver": "0",
    "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_timeout_ms": "500", "RAY_health_check_initial_delay_ms": "0",
    "RAY_raylet_start_wait_time_s": "120",  # a loaded 2-CPU machine can take longer than the default 30 s
}


@dataclass(frozen=True)
class Node:
    name: str
    instance: str
    root: Path
    neuron_cores: int
    lnc: int | None = None
    running: bool = True


@dataclass(frozen=True)
class Info:
    address: str
    nodes: tuple[Node, ...] = field(default_factory=tuple)


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


class StandinCluster:
    """``with StandinCluster(tmp, [(name, instance), ...]) as c``: head + nodes up, this process connected."""

    def __init__(self, directory: Path, nodes: list[tuple[str, str]]) -> None:
        self.directory = directory
        self.specs = nodes
        self.address = f"127.0.0.1:{HEAD_PORT}"
        self.sessions: dict[str, subprocess.Popen[bytes]] = {}
        self.nodes: dict[str, Node] = {}
        self.env = {**os.environ, **_ENV}
        # Ray's Unix socket paths must stay under 108 bytes: a short directory of its own, removed at close.
        self.temp = tempfile.mkdtemp(prefix="nrtc-", dir="/tmp")

    @property
    def info(self) -> Info:
        return Info(self.address, tuple(self.nodes.values()))

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([_ray_bin(), "start", "--block", *args], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.sessions[name] = proc
        deadline = time.monotonic() + 150
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start of {name} failed:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def _node_args(self, index: int, node: Node) -> list[str]:
        base = 6400 + 10 * index
        return [
            f"--address={self.address}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
            f'--resources={{"neuron_cores": {node.neuron_cores}}}',
            f"--labels=nrt-lab.io/node={node.name},nrt-lab.io/instance={node.instance}",
            f"--dashboard-agent-listen-port={base + 5}", f"--node-manager-port={base}", f"--object-manager-port={base + 1}",
            f"--metrics-export-port={base + 2}", f"--runtime-env-agent-port={base + 3}",
            f"--dashboard-agent-grpc-port={base + 4}", "--min-worker-port=0", "--max-worker-port=0",
            "--object-store-memory=100000000", "--disable-usage-stats",
        ]

    def __enter__(self) -> StandinCluster:
        from nrt_lab.driver import open_machine
        from nrt_lab.hardware import get_instance

        try:
            self._start("head", [
                "--head", "--node-ip-address=127.0.0.1", f"--port={HEAD_PORT}", "--num-cpus=0",
                f"--temp-dir={self.temp}", "--dashboard-host=127.0.0.1", "--dashboard-port=8299",
                "--ray-client-server-port=10011", "--dashboard-agent-listen-port=52501", "--min-worker-port=0",
                "--max-worker-port=0", "--object-store-memory=100000000", "--disable-usage-stats",
                "--labels=nrt-lab.io/node=head"], self.env)
            for name, instance in self.specs:
                root = self.directory / name
                open_machine(root).create(instance)
                self.nodes[name] = Node(name, instance, root, get_instance(instance).total_cores)
                self.start_node(name)
            import ray

            ray.init(address=self.address, _node_ip_address="127.0.0.1", logging_level="ERROR", log_to_driver=False)
        except BaseException:
            self.close()
            raise
        return self

    def start_node(self, name: str) -> None:
        node = self.nodes[name]
        index = [n for n, _ in self.specs].index(name)
        self._start(name, self._node_args(index, node), {**self.env, "NRT_LAB_ROOT": str(node.root)})
        self.nodes[name] = replace(node, running=True)

    def kill_node(self, name: str) -> None:
        """Kill every process of the node's session (as a machine losing power)."""
        proc = self.sessions.pop(name)
        _kill_session(proc.pid)
        proc.wait(timeout=15)
        self.nodes[name] = replace(self.nodes[name], running=False)

    def close(self) -> None:
        try:
            import ray

            ray.shutdown()
        except Exception:  # noqa: BLE001, S110 - teardown goes on
            pass
        for name in [n for n in self.sessions if n != "head"] + (["head"] if "head" in self.sessions else []):
            proc = self.sessions.pop(name)
            _kill_session(proc.pid)
            proc.wait(timeout=15)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _kill_session(sid: int) -> None:
    victims: list[Any] = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                victims.append(proc)
        except (OSError, psutil.Error):
            continue
    for proc in victims:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    psutil.wait_procs(victims, timeout=10)
