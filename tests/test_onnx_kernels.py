"""The ``onnx.*`` kernels: FLOP counts counted by hand, fp16/bf16 honoured, errors that name what is wrong, and
shape inference that agrees with the computation. Their numerics are checked against ONNX's own expected
outputs and onnxruntime in tests/test_onnx_backend.py."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from nrt_lab.kernels import (
    KernelError,
    TensorSpec,
    get_kernel,
    infer_output,
    kernel_flops,
    kernel_names,
    run_kernel,
)
from nrt_lab.kernels.onnx_ops import ONNX_OPS, erf

RNG = np.random.default_rng(5)


def test_every_onnx_op_is_a_registered_kernel_with_a_doc() -> None:
    names = {n for n in kernel_names() if n.startswith("onnx.")}
    assert names == {f"onnx.{op}" for op in ONNX_OPS}
    for name in names:
        kernel = get_kernel(name)
        assert kernel.doc.startswith(name + "(") and "FLOPs" in kernel.doc, name
        assert kernel.accepted_dtypes


@pytest.mark.parametrize(("name", "shapes", "attrs", "flops"), [
    ("onnx.Conv", [(1, 2, 5, 5), (4, 2, 3, 3)], {}, 2 * 4 * 3 * 3 * (2 * 3 * 3)),      # 2*out*(C/g)*k*k
    ("onnx.Conv", [(1, 4, 4, 4), (4, 1, 3, 3), (4,)], {"group": 4, "pads": [1, 1, 1, 1]},
     2 * 4 * 4 * 4 * 9 + 4 * 4 * 4),
    ("onnx.MatMul", [(2, 3, 4), (4, 5)], {}, 2 * 2 * 3 * 5 * 4),
    ("onnx.Gemm", [(3, 4), (5, 4)], {"transB": 1}, 2 * 3 * 5 * 4 + 2 * 3 * 5),
    ("onnx.Einsum", [(2, 3, 4), (2, 4, 5)], {"equation": "bij,bjk->bik"}, 2 * 2 * 3 * 4 * 5),
    ("onnx.Softmax", [(2, 10)], {"axis": -1}, 5 * 20),
    ("onnx.Relu", [(3, 7)], {}, 21),
    ("onnx.Add", [(3, 1), (1, 4)], {}, 12),
    ("onnx.MaxPool", [(1, 1, 4, 4)], {"kernel_shape": [2, 2], "strides": [2, 2]}, 4 * 4),
    ("onnx.ReduceMean", [(4, 6)], {"axes": [1]}, 24),
    ("onnx.Reshape", [(4, 6)], {"shape": [6, 4]}, 0),
    ("onnx.LayerNormalization", [(2, 8), (8,)], {}, 8 * 16),
])
def test_flops_counted_by_hand(name: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any], flops: int) -> None:
    assert kernel_flops(name, shapes, attrs) == flops


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(("name", "shapes", "attrs"), [
    ("onnx.Conv", [(1, 2, 6, 6), (3, 2, 3, 3)], {"pads": [1, 1, 1, 1]}),
    ("onnx.MatMul", [(4, 8), (8, 3)], {}),
    ("onnx.Gelu", [(4, 8)], {}),
    ("onnx.LayerNormalization", [(4, 8), (8,), (8,)], {}),
    ("onnx.Softmax", [(4, 8)], {"axis": -1}),
    ("onnx.AveragePool", [(1, 2, 5, 5)], {"kernel_shape": [3, 3], "ceil_mode": 1, "strides": [2, 2]}),
    ("onnx.Resize", [(1, 1, 3, 3)], {"mode": "linear", "scales": [1, 1, 2, 2]}),
])
def test_low_precision_keeps_its_dtype_and_stays_close(name: str, shapes: list[tuple[int, ...]],
                                                        attrs: dict[str, Any], dtype: str) -> None:
    np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    xs = [RNG.uniform(-1, 1, s).astype(np.float32) for s in shapes]
    low = run_kernel(name, [x.astype(np_dtype) for x in xs], attrs)
    full = run_kernel(name, [x.astype(np_dtype).astype(np.float32) for x in xs], attrs)
    assert low.dtype == np_dtype
    tol = 2e-2 if dtype == "bfloat16" else 2e-3
    np.testing.assert_allclose(low.astype(np.float32), full, rtol=tol, atol=tol)
    assert infer_output(name, [TensorSpec(s, dtype) for s in shapes], attrs) == TensorSpec(low.shape, dtype)


def test_erf_is_accurate() -> None:
    x = np.linspace(-5, 5, 20001, dtype=np.float32)
    ref = np.array([math.erf(float(v)) for v in x])
    out = erf(np, x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=3e-7)


def test_gelu_both_approximations() -> None:
    x = np.linspace(-4, 4, 101, dtype=np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(run_kernel("onnx.Gelu", [x]), exact, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_kernel("onnx.Gelu", [x], {"approximate": "tanh"}), tanh, rtol=1e-5, atol=1e-6)


def test_conv_matches_a_direct_loop() -> None:
    x = RNG.standard_normal((1, 4, 7, 6)).astype(np.float32)
    w = RNG.standard_normal((6, 2, 3, 2)).astype(np.float32)
    attrs = {"group": 2, "strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 2, 1]}
    out = run_kernel("onnx.Conv", [x, w], attrs)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)))
    ref = np.zeros(out.shape)
    for m in range(6):
        g = m // 3
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                patch = xp[0, 2 * g:2 * g + 2, 2 * i:2 * i + 3, j:j + 3:2]
                ref[0, m, i, j] = np.sum(patch * w[m])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "specs", "attrs", "words"), [
    ("onnx.Conv", [((1, 3, 8, 8), "float32"), ((4, 2, 3, 3), "float32")], {}, ["group=1", "disagree"]),
    ("onnx.Gemm", [((2, 3), "float32"), ((4, 5), "float32")], {}, ["inner dimensions"]),
    ("onnx.Reshape", [((2, 3), "float32")], {"shape": [4, 2]}, ["'shape'", "6 elements"]),
    ("onnx.Add", [((2, 3), "float32"), ((2, 3), "int64")], {}, ["share one dtype"]),
    ("onnx.Cast", [((2,), "float32")], {"to": "float64"}, ["'to'", "accepted"]),
    ("onnx.Resize", [((1, 1, 2, 2), "float32")], {"mode": "cubic", "scales": [1, 1, 2, 2]}, ["cubic"]),
    ("onnx.MaxPool", [((1, 1, 4, 4), "float32")], {}, ["kernel_shape"]),
    ("onnx.Softmax", [((2, 3), "float32")], {"axis": 2}, ["'axis'", "out of range"]),
    ("onnx.Relu", [((2, 3), "float32")], {"alpha": 1}, ["unknown attribute 'alpha'"]),
])
def test_errors_name_the_problem(name: str, specs: list[tuple[tuple[int, ...], str]], attrs: dict[str, Any],
                                 words: list[str]) -> None:
    with pytest.raises(KernelError) as info:
        infer_output(name, [TensorSpec(s, d) for s, d in specs], attrs)
    msg = str(info.value)
    assert name in msg and all(w in msg for w in words), msg


def test_bool_travels_as_uint8() -> None:
    a = np.array([1, 2, 3], np.int64)
    eq = run_kernel("onnx.Equal", [a, np.array([1, 0, 3], np.int64)])
    assert eq.dtype == np.uint8 and eq.tolist() == [1, 0, 1]
    assert run_kernel("onnx.Not", [eq]).tolist() == [0, 1, 0]
    assert run_kernel("onnx.Where", [eq, a, -a]).tolist() == [1, -2, 3]
    assert run_kernel("onnx.Cast", [np.array([0.0, 2.5], np.float32)], {"to": "bool"}).tolist() == [0, 1]


def test_gather_refuses_out_of_range_indices_at_run_time() -> None:
    with pytest.raises(KernelError, match="out of range"):
        run_kernel("onnx.Gather", [np.zeros((3, 2), np.float32), np.array([3], np.int64)])
    assert run_kernel("onnx.Gather", [np.arange(3, dtype=np.float32), np.array([-1], np.int64)]).tolist() == [2.0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_host_allocator_pool_and_its_switch() -> None:
    code = "from nrt_lab.kernels.backend import get_backend, tune_host_allocator; get_backend(); " \
           "print(tune_host_allocator())"
    env = {**os.environ, "NRT_LAB_BACKEND": "numpy"}
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    off = subprocess.run([sys.executable, "-c", code], env={**env, "NRT_LAB_MALLOC_TUNE": "0"},
                         capture_output=True, text=True, check=True)
    assert (on.stdout.strip(), off.stdout.strip()) == ("True", "False")


def test_trilu_cumsum_gather_elements_against_numpy() -> None:
    x = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(run_kernel("onnx.Trilu", [x], {"k": 1}), np.triu(x, 1))
    np.testing.assert_array_equal(run_kernel("onnx.Trilu", [x], {"upper": 0, "k": -1}), np.tril(x, -1))
    np.testing.assert_allclose(run_kernel("onnx.CumSum", [x], {"axis": 1}), np.cumsum(x, axis=1), rtol=1e-6)
    rev = np.flip(np.cumsum(np.flip(x, 2), axis=2), 2) - x
    np.testing.assert_allclose(run_kernel("onnx.CumSum", [x], {"axis": -1, "reverse": 1, "exclusive": 1}), rev,
                               rtol=1e-5, atol=1e-6)
    idx = np.array([[[0, -1], [3, 1]]], np.int64)
    data = x[:1, :2, :]
    got = run_kernel("onnx.GatherElements", [data, idx], {"axis": 2})
    np.testing.assert_array_equal(got, np.take_along_axis(data[:, :, :5], np.where(idx < 0, idx + 5, idx), axis=2))
    assert kernel_flops("onnx.CumSum", [(2, 4, 5)], {"axis": 1}) == 40
