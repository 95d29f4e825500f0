"""Benchmark: what monitoring costs (not a test; prints ratios measured side by side in one run).

(a) CPU time of ``neuron-monitor`` at a 1 s period with every metric group, watching 16 processes × 2
    NeuronCores on an emulated trn1.32xlarge whose processes loop executions of a 1-op model on both cores
    with sleeps in between (mostly idle, so the monitor is not starved), as a fraction of one core
    (psutil ``cpu_times`` of the monitor process over ~10 s after a warm-up; goal ≤ 1%), then the same over
    ~5 s with the workloads paused (SIGSTOP), which separates the monitor's own work from CPU contention on a
    small machine;
(b) the per-execution cost of the stats update, ``StatsPage.record_execution``, against ``Model.execute`` of a
    1-op model with preallocated tensors (interleaved batches, medians), as a ratio.
Usage: .venv/bin/python benchmarks/monitoring_cost.py [--seconds 10] [--processes 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from _timing import interleaved_us  # benchmarks/ is on sys.path when a script runs

import nrt_lab
from nrt_lab.neff import GraphBuilder

# One owner process: two 1-op models (one per owned core), each executed every ~50 ms; says "ready" once loaded.
_LOOPER = r"""
import sys, time
import numpy as np
import nrt_lab
from nrt_lab.neff import GraphBuilder
rt = nrt_lab.init()
g = GraphBuilder(name="add1")
a, b = g.input("a", "float32", (64, 64)), g.input("b", "float32", (64, 64))
g.output("out", g.op("add", [a, b]))
neff = g.build()
models = [nrt_lab.Model.load(neff, i) for i in range(len(rt.cores))]
x = np.ones((64, 64), np.float32)
print("ready", flush=True)
while True:
    for m in models:
        m.execute({"a": x, "b": x})
    time.sleep(0.05)
"""


def _python() -> str:
    return sys.executable


def _monitor_command() -> list[str]:
    script = Path(sys.executable).parent / "neuron-monitor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nrt_lab.tools.neuron_monitor"]


def monitor_cpu(root: Path, processes: int, seconds: float) -> tuple[float, float, int, int]:
    """(fraction of one core used by neuron-monitor while the workloads run, the same with the workloads paused,
    reports read, runtimes in the last report)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON", "NRT_LAB"))}
    env["NRT_LAB_ROOT"] = str(root)
    loopers = [subprocess.Popen([_python(), "-c", _LOOPER], env={**env, "NEURON_RT_NUM_CORES": "2"},
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
               for _ in range(processes)]
    monitor = None
    try:
        for proc in loopers:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "a workload failed"
        config = root / "monitor.json"
        config.write_text(json.dumps({
            "period": "1s",
            "neuron_runtimes": [{"tag_filter": ".*", "metrics": [
                {"type": t} for t in ("neuroncore_counters", "memory_used", "neuron_runtime_vcpu_usage",
                                      "execution_stats")]}],
            "system_metrics": [{"type": t} for t in ("vcpu_usage", "memory_info", "neuron_hw_counters")],
        }))
        monitor = subprocess.Popen([*_monitor_command(), "-c", str(config)], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        reports: list[str] = []
        assert monitor.stdout is not None
        reader = threading.Thread(target=lambda: reports.extend(monitor.stdout), daemon=True)  # type: ignore[union-attr]
        reader.start()
        time.sleep(2.5)  # imports, priming and the first report are not the steady state
        watched = psutil.Process(monitor.pid)

        def fraction(window: float) -> float:
            before, start = watched.cpu_times(), time.monotonic()
            time.sleep(window)
            after, wall = watched.cpu_times(), time.monotonic() - start
            return ((after.user - before.user) + (after.system - before.system)) / wall

        busy = fraction(seconds)
        for proc in loopers:  # SIGSTOP: the runtimes stay (pages, models), their CPU contention goes
            proc.send_signal(signal.SIGSTOP)
        paused = fraction(seconds / 2)
        last = json.loads(reports[-1]) if reports else {"neuron_runtime_data": []}
        return busy, paused, len(reports), len(last["neuron_runtime_data"])
    finally:
        for proc in [*loopers, *([monitor] if monitor else [])]:
            proc.kill()
            proc.wait()


def stats_update_cost(root: Path) -> tuple[float, float]:
    """(µs per StatsPage.record_execution, µs per Model.execute of a 1-op model) in this process."""
    os.environ["NRT_LAB_ROOT"] = str(root)
    os.environ["NEURON_RT_NUM_CORES"] = "1"
    runtime = nrt_lab.init()
    try:
        assert runtime.stats is not None
        page, core = runtime.stats, runtime.cores[0]
        g = GraphBuilder(name="add1")
        a, b = g.input("a", "float32", (64, 64)), g.input("b", "float32", (64, 64))
        g.output("out", g.op("add", [a, b]))
        model = nrt_lab.Model.load(g.build())
        x = np.ones((64, 64), np.float32)
        ins = {"a": nrt_lab.Tensor.from_numpy(x), "b": nrt_lab.Tensor.from_numpy(x)}
        outs = {"out": nrt_lab.Tensor.allocate(x.nbytes, dtype=np.float32, shape=(64, 64))}
        model.execute(ins, outs)
        record, execute = interleaved_us(number=2000, fns=[
            lambda: page.record_execution(core, 0, 1000, 4096, 2000, 1000, None, 0),
            lambda: model.execute(ins, outs),
        ])
        return record, execute
    finally:
        nrt_lab.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window of (a)")
    parser.add_argument("--processes", type=int, default=16, help="workload processes of (a), 2 cores each")
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{psutil.cpu_count()} CPUs, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory(prefix="nrt_lab_bench_") as tmp:
        root = Path(tmp) / "state"
        nrt_lab.open_machine(root).create("trn1.32xlarge")
        record_us, execute_us = stats_update_cost(root)
        print(f"(b) stats update: record_execution {record_us:.2f} µs vs Model.execute (1-op) {execute_us:.2f} µs "
              f"-> ratio {record_us / execute_us:.3f}")
        busy, paused, reports, runtimes = monitor_cpu(root, args.processes, args.seconds)
        print(f"(a) neuron-monitor at 1 s, all groups, {runtimes} runtimes × 2 cores ({reports} reports read): "
              f"{100 * busy:.2f}% of one core (goal ≤ 1%) -> ratio to goal {busy / 0.01:.2f}; "
              f"with the workloads paused (no CPU contention): {100 * paused:.2f}% -> {paused / 0.01:.2f}")


if __name__ == "__main__":
    main()
