"""Benchmark: compiled ONNX models on the emulated runtime vs onnxruntime (not a test; prints ratios).

Models (nrt_lab.compiler.examples, random weights): a ResNet-50-class CNN (bottleneck stages 3-4-6-3, width 64,
the real ResNet-50's layer shapes, at 112x112 input to bound the time on a shared 2-CPU machine) and a
BERT-base-class encoder (hidden 768, 12 heads, FFN 3072, sequence 128; 4 layers instead of 12, same per-layer
cost). For batch 1 (latency) and batch 8 (throughput) each model is compiled, loaded with ``Model.load`` and
executed through the runtime; onnxruntime runs the same ONNX model on the same inputs. Both use the same number
of threads (``--threads``, default 1: onnxruntime's intra-op threads, NumPy's BLAS through threadpoolctl), and
the two are measured interleaved so machine noise hits both alike. Goals (NumPy): CNN >= 0.5 of onnxruntime's
throughput, encoder >= 0.8. Compile times are printed too.

Usage: .venv/bin/python benchmarks/real_models.py [--threads N] [--repeat R] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _interleaved(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """Median seconds per call of each function, alternating calls so noise hits all alike."""
    for fn in fns:
        fn()  # warm up
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            samples[i].append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


def _feeds(name: str, batch: int, seq: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    if name == "bert":
        return {"input_ids": rng.integers(0, 1000, (batch, seq)).astype(np.int64),
                "attention_mask": np.ones((batch, seq), np.int64)}
    return {"input": rng.standard_normal((batch, 3, 112, 112)).astype(np.float32)}


def main() -> None:
    """Run the benchmark and print one line per model and batch size."""
    parser = argparse.ArgumentParser(description="compiled ONNX models vs onnxruntime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller models (a smoke run)")
    args = parser.parse_args()
    import onnxruntime as ort
    from threadpoolctl import threadpool_limits

    import nrt_lab
    from nrt_lab.compiler import build
    from nrt_lab.compiler.examples import bert, resnet
    from nrt_lab.driver import open_machine

    root = tempfile.mkdtemp(prefix="nrt-bench-")
    os.environ["NRT_LAB_ROOT"] = os.path.join(root, "state")
    open_machine(os.environ["NRT_LAB_ROOT"]).create("trn1.2xlarge", None)
    seq = 32 if args.quick else 128
    models = {
        "resnet": (resnet(blocks=(1, 1, 1, 1) if args.quick else (3, 4, 6, 3), width=16 if args.quick else 64,
                          image=112, classes=1000), 0.5),
        "bert": (bert(layers=1 if args.quick else 4, hidden=256 if args.quick else 768, heads=4 if args.quick
                      else 12, ffn=1024 if args.quick else 3072, seq=seq, vocab=30522 if not args.quick else 1000),
                 0.8),
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    print(f"threads={args.threads} repeat={args.repeat} backend=numpy")
    with nrt_lab.init(), threadpool_limits(limits=args.threads):
        for name, (model, goal) in models.items():
            session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            for batch in (1, 8):
                start = time.perf_counter()
                compiled = build(model, batch=batch)
                compile_s = time.perf_counter() - start
                loaded = nrt_lab.Model.load(compiled.neff)
                feeds = _feeds(name, batch, seq)
                ours_out = loaded.execute(feeds)[model.graph.output[0].name].numpy()
                ref = session.run(None, feeds)[0]
                err = float(np.max(np.abs(ours_out - ref)) / max(float(np.max(np.abs(ref))), 1e-6))
                ours, theirs = _interleaved([lambda m=loaded, f=feeds: m.execute(f),
                                             lambda s=session, f=feeds: s.run(None, f)], args.repeat)
                ratio = theirs / ours
                verdict = "ok" if ratio >= goal else "below goal"
                print(f"{name:7s} batch {batch}: nrt_lab {ours * 1e3:8.1f} ms ({batch / ours:7.1f}/s)  onnxruntime "
                      f"{theirs * 1e3:8.1f} ms ({batch / theirs:7.1f}/s)  throughput ratio {ratio:.2f} (goal >= "
                      f"{goal}: {verdict})  compile {compile_s:.2f} s  {compiled.flops / 1e9:.2f} GFLOP  "
                      f"max rel err {err:.1e}")
                loaded.unload()


if __name__ == "__main__":
    main()
