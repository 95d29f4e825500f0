"""Benchmark: Runtime 1.x (a neuron-rtd daemon over gRPC) vs Runtime 2.x (libnrt in process), same model, same
machine, interleaved (not a test; prints side-by-side latencies and ratios).

The seed's claim is that 2.x removes the gRPC overhead; the goal is 2.x ≤ 1/20 of 1.x for the small tensor.
One relu NEFF (compiled as NEFF 1.1, so both runtimes load it) per shape: 4×3 and 1×3×224×224 float32. The daemon
manages device 0 of an emulated inf1.6xlarge; the 2.x runtime in this process claims device 1. 1.x runs through
``nrt_lab.legacy.Client`` with tensors as bytes in the request and through POSIX shared memory.
Usage: .venv/bin/python benchmarks/runtime1x_vs_2x.py [--quick]
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import interleaved_us  # benchmarks/ is on sys.path when a script runs

import nrt_lab
from nrt_lab.driver import open_machine
from nrt_lab.legacy.client import Client
from nrt_lab.neff import GraphBuilder

SHAPES = ((4, 3), (1, 3, 224, 224))


def relu_neff(shape: tuple[int, ...]) -> bytes:
    """``out = relu(x)`` as a NEFF 1.1."""
    g = GraphBuilder(name=f"relu{'x'.join(map(str, shape))}")
    g.output("out", g.op("relu", [g.input("x", "float32", shape)]))
    return g.build(neff_version=(1, 1))


def start_daemon(root: Path) -> subprocess.Popen[bytes]:
    """neuron-rtd on device 0, serving once its pid file names it."""
    config = root / "opt" / "aws" / "neuron" / "config"
    config.mkdir(parents=True)
    (config / "neuron-rtd.config").write_text('{"devices": [0]}')
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("NEURON", "NRT_LAB"))},
           "NRT_LAB_ROOT": str(root), "GRPC_VERBOSITY": "NONE"}
    proc = subprocess.Popen([sys.executable, "-m", "nrt_lab.legacy.daemon"], env=env)
    pid_file = root / "run" / "neuron-rtd.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip() == str(proc.pid)):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("neuron-rtd did not start")
        time.sleep(0.05)
    return proc


def main() -> None:
    quick = "--quick" in sys.argv
    base = Path(tempfile.mkdtemp(prefix="nrtb", dir="/tmp"))
    root = base / "r"
    open_machine(root).create("inf1.6xlarge", None)
    daemon = start_daemon(root)
    env = {"NRT_LAB_ROOT": str(root)}
    try:
        runtime = nrt_lab.init(env={**env, "NEURON_RT_VISIBLE_CORES": "4-7"}, root=root)
        with Client(env=env, use_shm=False) as by_bytes, Client(env=env, use_shm=True) as by_shm:
            print(f"{'tensor':>14} {'2.x µs':>9} {'1.x bytes µs':>13} {'1.x shm µs':>11} "
                  f"{'2.x/1.x bytes':>14} {'2.x/1.x shm':>12}")
            for shape in SHAPES:
                neff = relu_neff(shape)
                x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
                model2 = nrt_lab.Model.load(neff)
                ins = {"x": nrt_lab.Tensor.from_numpy(x)}
                outs = {"out": nrt_lab.Tensor.allocate(x.nbytes, dtype=np.float32, shape=shape)}
                model1b, model1s = by_bytes.load(neff), by_shm.load(neff)
                expected = np.maximum(x, 0)
                assert np.array_equal(model1b.infer({"x": x})["out"], expected)
                assert np.array_equal(model1s.infer({"x": x})["out"], expected)
                model2.execute(ins, outs)
                assert np.array_equal(outs["out"].numpy(), expected)
                small = x.size < 1000
                number = (50 if quick else 200) if small else (5 if quick else 20)
                v2, v1b, v1s = interleaved_us([
                    lambda m=model2, i=ins, o=outs: m.execute(i, o),
                    lambda m=model1b, v=x: m.infer({"x": v}),
                    lambda m=model1s, v=x: m.infer({"x": v}),
                ], repeat=5 if quick else 9, number=number)
                label = "x".join(map(str, shape))
                print(f"{label:>14} {v2:9.1f} {v1b:13.1f} {v1s:11.1f} {v2 / v1b:14.4f} {v2 / v1s:12.4f}"
                      + ("   goal ≤ 0.05: " + ("met" if v2 / min(v1b, v1s) <= 0.05 else "NOT met") if small else ""))
                model2.unload()
                model1b.unload()
                model1s.unload()
        runtime.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
