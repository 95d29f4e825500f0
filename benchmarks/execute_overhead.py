"""Benchmark: what executing through the emulated runtime costs (not a test; prints side-by-side ratios).

(a) a 1-op model (float32 add) through ``Model.execute`` with preallocated tensors vs the same op as a direct
    NumPy call vs onnxruntime ``InferenceSession.run`` on the equivalent ONNX graph (goal: ours ≤ onnxruntime);
(b) a 4096-wide MLP through the runtime vs the same math in direct NumPy (goal ≥ 0.95 of NumPy's throughput);
(c) 8 threads on 8 cores vs 1 thread on 1 core (throughput scaling; bounded by this machine's CPU count);
(d) stats-page instrumentation on vs off on the 1-op model (goal ≤ 5% cost).
Usage: .venv/bin/python benchmarks/execute_overhead.py   (needs the [bench] extra: onnxruntime, onnx)
"""

from __future__ import annotations

import os
import tempfile
import threading
import time

import numpy as np
from _timing import interleaved_us  # benchmarks/ is on sys.path when a script runs

import nrt_lab
from nrt_lab.neff import GraphBuilder


def one_op() -> tuple[float, float, float, float]:
    """(ours, numpy, onnxruntime, ours without stats) latencies in µs for a 64x64 float32 add."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    shape = (64, 64)
    g = GraphBuilder(name="add1")
    a, b = g.input("a", "float32", shape), g.input("b", "float32", shape)
    g.output("out", g.op("add", [a, b]))
    model = nrt_lab.Model.load(g.build())
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    y = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    ta, tb = nrt_lab.Tensor.from_numpy(x), nrt_lab.Tensor.from_numpy(y)
    to = nrt_lab.Tensor.allocate(x.nbytes, dtype=np.float32, shape=shape)
    ins, outs = {"a": ta, "b": tb}, {"out": to}
    model.execute(ins, outs)
    assert np.allclose(to.numpy(), x + y)

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["out"])], "add1",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("a", "b")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {"a": x, "b": y}
    assert np.allclose(session.run(None, feeds)[0], x + y)
    out = np.empty_like(x)

    runtime = nrt_lab.get_runtime()
    assert runtime is not None and runtime.stats is not None
    page = runtime.stats

    def without_stats() -> None:
        page.enabled = False
        model.execute(ins, outs)
        page.enabled = True

    ours, direct, onnxrt, ours_no_stats = interleaved_us([
        lambda: model.execute(ins, outs), lambda: np.add(x, y, out=out), lambda: session.run(None, feeds),
        without_stats,
    ])
    model.unload()
    return ours, direct, onnxrt, ours_no_stats


def mlp(width: int = 4096, batch: int = 256, layers: int = 2) -> tuple[float, float]:
    """(runtime, numpy) inferences per second for a relu MLP of ``layers`` width×width layers."""
    rng = np.random.default_rng(0)
    weights = [(rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32) for _ in range(layers)]
    g = GraphBuilder(name="mlp4096")
    h = g.input("x", "float32", (batch, width))
    for i, w in enumerate(weights):
        h = g.op("relu", [g.op("matmul", [h, g.constant(f"w{i}", w)])])
    g.output("y", h)
    model = nrt_lab.Model.load(g.build())
    x = rng.standard_normal((batch, width), dtype=np.float32)
    tx = nrt_lab.Tensor.from_numpy(x)
    ty = nrt_lab.Tensor.allocate(x.nbytes, dtype=np.float32, shape=x.shape)

    def direct() -> np.ndarray:
        out = x
        for w in weights:
            out = np.maximum(out @ w, 0)
        return out

    model.execute({"x": tx}, {"y": ty})
    assert np.allclose(ty.numpy(), direct(), rtol=1e-4, atol=1e-4)
    ours, base = interleaved_us([lambda: model.execute({"x": tx}, {"y": ty}), direct], repeat=7, number=2)
    model.unload()
    return batch / (ours * 1e-6), batch / (base * 1e-6)


def scaling(threads: int = 8, seconds: float = 1.5) -> tuple[float, float]:
    """(executions/s with 1 thread on 1 core, with ``threads`` threads on ``threads`` cores).

    BLAS is limited to one thread per call (threadpoolctl) so that parallelism comes from the emulated cores,
    as on hardware where each NeuronCore runs its own executions.
    """
    from threadpoolctl import threadpool_limits

    shape = (256, 256)
    g = GraphBuilder(name="mm")
    a = g.input("a", "float32", shape)
    g.output("out", g.op("matmul", [a, g.constant("w", np.eye(256, dtype=np.float32))]))
    data = g.build()
    models = [nrt_lab.Model.load(data, core=i) for i in range(threads)]
    x = np.ones(shape, dtype=np.float32)

    def run(count: int) -> float:
        done = [0] * count
        stop = time.perf_counter() + seconds

        def worker(i: int) -> None:
            tx = nrt_lab.Tensor.from_numpy(x, core=i)
            to = nrt_lab.Tensor.allocate(x.nbytes, core=i)
            while time.perf_counter() < stop:
                models[i].execute({"a": tx}, {"out": to})
                done[i] += 1

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return sum(done) / seconds

    with threadpool_limits(limits=1):
        single = run(1)
        many = run(threads)
    for m in models:
        m.unload()
    return single, many


def main() -> None:
    """Run (a)-(d) on a fresh emulated trn1.32xlarge and print the ratios."""
    os.environ["NRT_LAB_ROOT"] = tempfile.mkdtemp(prefix="nrt_lab_bench_")
    os.environ["NEURON_RT_VISIBLE_CORES"] = "0-7"
    with nrt_lab.init():
        ours, direct, onnxrt, no_stats = one_op()
        print(f"(a) 1-op add 64x64 fp32: runtime {ours:.1f} us, direct NumPy {direct:.1f} us, "
              f"onnxruntime {onnxrt:.1f} us -> runtime/onnxruntime = {ours / onnxrt:.2f} (goal <= 1), "
              f"runtime/NumPy = {ours / direct:.1f}")
        ours_tp, numpy_tp = mlp()
        print(f"(b) MLP 2x4096 batch 256: runtime {ours_tp:.0f} inf/s, NumPy {numpy_tp:.0f} inf/s -> "
              f"ratio {ours_tp / numpy_tp:.3f} (goal >= 0.95)")
        single, many = scaling()
        print(f"(c) 256x256 matmul: 1 thread/1 core {single:.0f} exec/s, 8 threads/8 cores {many:.0f} exec/s -> "
              f"scaling x{many / single:.2f} (machine has {os.cpu_count()} CPUs)")
        print(f"(d) stats instrumentation on the 1-op model: on {ours:.1f} us, off {no_stats:.1f} us -> "
              f"cost {100 * (ours - no_stats) / no_stats:.1f}% (goal <= 5%)")


if __name__ == "__main__":
    main()
