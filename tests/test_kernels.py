"""Kernels against independent NumPy references, per dtype; FLOP counts; error messages.

References are written the slow, obvious way (float64/int64, explicit loops for convolution, pooling and
attention) so that they share no code path with the vectorized kernels.
"""

from __future__ import annotations

import math
import operator
import zlib
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from nrt_lab.kernels import (
    ALL_DTYPES,
    FLOAT_DTYPES,
    INT_DTYPES,
    KernelError,
    get_kernel,
    kernel_flops,
    kernel_names,
    run_kernel,
)

DT: dict[str, np.dtype[Any]] = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int8": np.dtype(np.int8),
    "int32": np.dtype(np.int32),
}
TOL: dict[str, Any] = {
    "float32": {"rtol": 1e-5, "atol": 1e-4},
    "float16": {"rtol": 2e-3, "atol": 2e-3},
    "bfloat16": {"rtol": 1.6e-2, "atol": 1.6e-2},
}

# What the brief asks for, written out independently of the registry.
INT_KERNELS = {
    "add", "sub", "mul", "relu", "matmul", "reshape", "transpose", "concat", "slice",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "max_pool2d",
}
EXPECTED_KERNELS = INT_KERNELS | {
    "div", "gelu", "tanh", "sigmoid", "exp", "gemm", "conv2d", "avg_pool2d", "softmax", "layernorm",
    "attention",
}


def rng_for(*key: object) -> np.random.Generator:
    """A generator seeded from the test's parameters, the same in every run (str hashes are salted)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def make(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, lo: float = -2.0, hi: float = 2.0) -> Any:
    """Random array of ``dtype``: floats uniform in [lo, hi); int8 over its whole range; int32 wide."""
    if dtype == "int8":
        return rng.integers(-128, 128, size=shape).astype(np.int8)
    if dtype == "int32":
        return rng.integers(-50_000, 50_000, size=shape).astype(np.int32)
    return rng.uniform(lo, hi, size=shape).astype(DT[dtype])


def wide(x: Any) -> Any:
    """Exact widening of an input for the reference: float64 or int64."""
    return x.astype(np.int64) if x.dtype.kind in "iu" else x.astype(np.float64)


def check(out: Any, ref: Any, out_dtype: str) -> None:
    expected = DT[out_dtype]
    assert isinstance(out, np.ndarray), type(out)
    assert out.dtype == expected, f"dtype {out.dtype}, expected {expected}"
    ref = np.asarray(ref)
    assert out.shape == ref.shape, f"shape {out.shape}, expected {ref.shape}"
    if expected.kind in "iu":
        np.testing.assert_array_equal(out, ref.astype(expected))  # astype wraps like the hardware
    else:
        np.testing.assert_allclose(out.astype(np.float64), ref.astype(np.float64), **TOL[out_dtype])


# ----------------------------------------------------------------------------------------------- registry


def _core_kernels() -> set[str]:
    """The hand-written kernels; the ``onnx.*`` family is tested in tests/test_onnx_kernels.py."""
    return {n for n in kernel_names() if not n.startswith("onnx.")}


def test_registry_lists_every_kernel_and_unknown_names_fail() -> None:
    assert _core_kernels() == EXPECTED_KERNELS
    assert kernel_names() == sorted(kernel_names())
    with pytest.raises(KernelError) as info:
        get_kernel("convolution")
    msg = str(info.value)
    assert "'convolution'" in msg and "conv2d" in msg and "softmax" in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", sorted(EXPECTED_KERNELS))
def test_accepted_dtypes_match_the_policy(name: str) -> None:
    k = get_kernel(name)
    assert k.name == name and k.doc
    expected = ALL_DTYPES if name in INT_KERNELS else FLOAT_DTYPES
    assert set(k.accepted_dtypes) == set(expected)


# A valid call for every kernel: input shapes and attrs.
SAMPLES: dict[str, tuple[list[tuple[int, ...]], dict[str, Any]]] = {
    "add": ([(2, 3), (3,)], {}),
    "sub": ([(2, 3), (2, 1)], {}),
    "mul": ([(2, 3), (2, 3)], {}),
    "div": ([(2, 3), (2, 3)], {}),
    "relu": ([(2, 3)], {}),
    "gelu": ([(2, 3)], {}),
    "tanh": ([(2, 3)], {}),
    "sigmoid": ([(2, 3)], {}),
    "exp": ([(2, 3)], {}),
    "matmul": ([(2, 3), (3, 4)], {}),
    "gemm": ([(2, 3), (3, 4)], {}),
    "conv2d": ([(1, 2, 4, 4), (3, 2, 3, 3)], {}),
    "max_pool2d": ([(1, 2, 4, 4)], {"kernel": 2}),
    "avg_pool2d": ([(1, 2, 4, 4)], {"kernel": 2}),
    "softmax": ([(2, 3)], {}),
    "layernorm": ([(2, 3)], {}),
    "reshape": ([(2, 3)], {"shape": (3, 2)}),
    "transpose": ([(2, 3)], {}),
    "concat": ([(2, 3), (1, 3)], {}),
    "slice": ([(4, 3)], {"starts": [1], "ends": [3]}),
    "reduce_sum": ([(2, 3)], {}),
    "reduce_mean": ([(2, 3)], {}),
    "reduce_max": ([(2, 3)], {}),
    "reduce_min": ([(2, 3)], {}),
    "attention": ([(2, 3), (4, 3), (4, 5)], {}),
}


def test_samples_cover_every_kernel() -> None:
    assert set(SAMPLES) == _core_kernels()


@pytest.mark.parametrize("dtype", ALL_DTYPES + ("float64", "bool", "uint8"))
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_kernel_accepts_exactly_its_dtypes(name: str, dtype: str) -> None:
    shapes, attrs = SAMPLES[name]
    rng = rng_for(name, dtype)
    if dtype in DT:
        inputs = [make(rng, s, dtype, 0.5, 2.0) for s in shapes]
    else:
        inputs = [rng.uniform(0.5, 2.0, size=s).astype(dtype) for s in shapes]
    allowed = dtype in FLOAT_DTYPES or (dtype in INT_DTYPES and name in INT_KERNELS)
    if allowed:
        out = run_kernel(name, inputs, attrs)
        assert isinstance(out, np.ndarray)
        assert np.all(np.isfinite(out.astype(np.float64)))
        assert kernel_flops(name, shapes, attrs) >= 0
    else:
        with pytest.raises(KernelError) as info:
            run_kernel(name, inputs, attrs)
        msg = str(info.value)
        assert f"'{name}'" in msg and dtype in msg and "float32" in msg and "bfloat16" in msg


# -------------------------------------------------------------------------------------------- elementwise

BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
}


@pytest.mark.parametrize(
    "name, dtype", [(n, d) for n in sorted(BINARY) for d in ALL_DTYPES if d in FLOAT_DTYPES or n != "div"]
)
def test_binary_broadcasting(name: str, dtype: str) -> None:
    rng = rng_for(name, dtype)
    a = make(rng, (3, 1, 4), dtype)
    b = make(rng, (2, 4), dtype)
    if name == "div":
        b = (np.sign(wide(b)) * (0.5 + np.abs(wide(b)))).astype(DT[dtype])  # keep away from zero
    out = run_kernel(name, [a, b], {})
    check(out, BINARY[name](wide(a), wide(b)), dtype)


def test_int8_add_wraps_around_like_twos_complement() -> None:
    a = np.array([127, -128, 100], dtype=np.int8)
    b = np.array([1, -1, 100], dtype=np.int8)
    out = run_kernel("add", [a, b])
    assert out.dtype == np.int8
    assert out.tolist() == [-128, 127, -56]


def _gelu_tanh(x: Any) -> Any:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


UNARY: dict[str, Callable[[Any], Any]] = {
    "relu": lambda x: np.where(x > 0, x, 0),
    "gelu": _gelu_tanh,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "exp": np.exp,
}


@pytest.mark.parametrize(
    "name, dtype", [(n, d) for n in sorted(UNARY) for d in ALL_DTYPES if d in FLOAT_DTYPES or n == "relu"]
)
def test_unary(name: str, dtype: str) -> None:
    x = make(rng_for(name, dtype), (4, 5), dtype, -3.0, 3.0)
    check(run_kernel(name, [x], {}), UNARY[name](wide(x)), dtype)


def test_gelu_is_the_tanh_approximation_close_to_erf_gelu() -> None:
    x = np.linspace(-4, 4, 81, dtype=np.float32)
    out = run_kernel("gelu", [x]).astype(np.float64)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    assert np.max(np.abs(out - exact)) < 1e-3
    assert np.max(np.abs(out - exact)) > 1e-6  # it is the approximation, not erf


def test_sigmoid_and_softmax_are_stable_for_huge_inputs() -> None:
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = run_kernel("sigmoid", [x])
        sm = run_kernel("softmax", [x])
    np.testing.assert_allclose(s, [0, 0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(sm, [0, 0, 0, 0, 1], atol=1e-6)


# ----------------------------------------------------------------------------------------- matmul, gemm


def ref_matmul(a: Any, b: Any) -> Any:
    """Broadcast multiply-and-sum, no matmul: a (..., M, K) x b (..., K, N)."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    out = (a2[..., :, :, None] * b2[..., None, :, :]).sum(axis=-2)
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize(
    "sa, sb, bias",
    [((3, 4), (4, 5), None), ((2, 1, 3, 4), (5, 4, 2), None), ((4,), (4, 3), None), ((2, 3, 4), (4,), None),
     ((3, 4), (4, 5), (5,)), ((2, 3, 4), (4, 5), (3, 1))],
)
def test_matmul(sa: tuple[int, ...], sb: tuple[int, ...], bias: tuple[int, ...] | None, dtype: str) -> None:
    rng = rng_for("matmul", sa, sb, bias, dtype)
    a, b = make(rng, sa, dtype), make(rng, sb, dtype)
    inputs = [a, b]
    ref = ref_matmul(wide(a), wide(b))
    if bias is not None:
        c = make(rng, bias, dtype)
        inputs.append(c)
        ref = ref + wide(c)
    out = run_kernel("matmul", inputs)
    check(out, ref, "int32" if dtype in INT_DTYPES else dtype)


def test_int8_matmul_accumulates_in_int32() -> None:
    a = np.full((2, 64), 127, dtype=np.int8)
    b = np.full((64, 3), -128, dtype=np.int8)
    out = run_kernel("matmul", [a, b])
    assert out.dtype == np.int32
    assert out.tolist() == [[127 * -128 * 64] * 3] * 2
    bias = np.array([1, 2, 3], dtype=np.int32)
    assert run_kernel("matmul", [a, b, bias])[0].tolist() == [127 * -128 * 64 + i for i in (1, 2, 3)]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 0), (0, 1), (True, True)])
@pytest.mark.parametrize("c_shape", [None, (), (5,), (3, 5), (3, 1)])
def test_gemm(trans_a: Any, trans_b: Any, c_shape: tuple[int, ...] | None, dtype: str) -> None:
    rng = rng_for("gemm", trans_a, trans_b, c_shape, dtype)
    m, k, n = 3, 4, 5
    a = make(rng, (k, m) if trans_a else (m, k), dtype)
    b = make(rng, (n, k) if trans_b else (k, n), dtype)
    attrs = {"alpha": 0.5, "beta": 2.0, "transA": trans_a, "transB": trans_b}
    aa = wide(a).T if trans_a else wide(a)
    bb = wide(b).T if trans_b else wide(b)
    ref = 0.5 * np.array([[sum(aa[i, p] * bb[p, j] for p in range(k)) for j in range(n)] for i in range(m)])
    inputs = [a, b]
    if c_shape is not None:
        c = make(rng, c_shape, dtype)
        inputs.append(c)
        ref = ref + 2.0 * wide(c)
    check(run_kernel("gemm", inputs, attrs), ref, dtype)


# ------------------------------------------------------------------------------------- conv and pooling


def ref_conv2d(x: Any, w: Any, b: Any, stride: tuple[int, int], pads: tuple[int, int, int, int],
               dil: tuple[int, int], groups: int) -> Any:
    """Direct convolution: one output element at a time."""
    n, c, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    ho = (h + pt + pb - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + pl + pr - dil[1] * (kw - 1) - 1) // stride[1] + 1
    og = cout // groups
    out = np.zeros((n, cout, ho, wo))
    for bi in range(n):
        for co in range(cout):
            g = co // og
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0
                    for ci in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                acc += (xp[bi, g * cg + ci, i * stride[0] + p * dil[0], j * stride[1] + q * dil[1]]
                                        * w[co, ci, p, q])
                    out[bi, co, i, j] = acc + (b[co] if b is not None else 0.0)
    return out


CONV_CASES: list[Any] = [
    # x shape, w shape, bias, attrs, (stride, pads, dilation, groups) for the reference
    ((1, 2, 5, 5), (3, 2, 3, 3), False, {}, ((1, 1), (0, 0, 0, 0), (1, 1), 1)),
    ((2, 4, 6, 5), (4, 2, 3, 3), True, {"stride": 2, "padding": 1, "groups": 2},
     ((2, 2), (1, 1, 1, 1), (1, 1), 2)),
    ((1, 3, 7, 6), (3, 1, 2, 3), True, {"stride": (1, 2), "padding": (1, 0, 2, 1), "dilation": 2, "groups": 3},
     ((1, 2), (1, 0, 2, 1), (2, 2), 3)),
    ((1, 2, 4, 4), (2, 2, 1, 1), False, {"padding": (2, 1)}, ((1, 1), (2, 1, 2, 1), (1, 1), 1)),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d(case: int, dtype: str) -> None:
    xs, ws, has_bias, attrs, (stride, pads, dil, groups) = CONV_CASES[case]
    rng = rng_for("conv", case, dtype)
    x, w = make(rng, xs, dtype, -1, 1), make(rng, ws, dtype, -1, 1)
    inputs = [x, w]
    b = None
    if has_bias:
        b = make(rng, (ws[0],), dtype)
        inputs.append(b)
    ref = ref_conv2d(wide(x), wide(w), None if b is None else wide(b), stride, pads, dil, groups)
    check(run_kernel("conv2d", inputs, attrs), ref, dtype)


def ref_pool(x: Any, k: tuple[int, int], s: tuple[int, int], pads: tuple[int, int, int, int], mode: str,
             include_pad: bool = False) -> Any:
    """Pooling one window at a time; padded cells are skipped (or counted as zeros for include_pad)."""
    n, c, h, w = x.shape
    pt, pl, pb, pr = pads
    ho = (h + pt + pb - k[0]) // s[0] + 1
    wo = (w + pl + pr - k[1]) // s[1] + 1
    out = np.zeros((n, c, ho, wo), dtype=x.dtype)
    for bi in range(n):
        for ci in range(c):
            for i in range(ho):
                for j in range(wo):
                    vals = [x[bi, ci, r, q]
                            for r in range(i * s[0] - pt, i * s[0] - pt + k[0])
                            for q in range(j * s[1] - pl, j * s[1] - pl + k[1])
                            if 0 <= r < h and 0 <= q < w]
                    if mode == "max":
                        out[bi, ci, i, j] = max(vals)
                    else:
                        out[bi, ci, i, j] = sum(vals) / (k[0] * k[1] if include_pad else len(vals))
    return out


POOL_CASES: list[Any] = [
    ({"kernel": 2}, (2, 2), (2, 2), (0, 0, 0, 0)),
    ({"kernel": 3, "stride": 1, "padding": 1}, (3, 3), (1, 1), (1, 1, 1, 1)),
    ({"kernel": (2, 3), "stride": (2, 1), "padding": (1, 0, 0, 2)}, (2, 3), (2, 1), (1, 0, 0, 2)),
]


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_max_pool2d(case: int, dtype: str) -> None:
    attrs, k, s, pads = POOL_CASES[case]
    x = make(rng_for("maxpool", case, dtype), (2, 3, 5, 6), dtype)
    if dtype in FLOAT_DTYPES:
        x = (x - 10).astype(DT[dtype])  # all negative: a zero from padding would win if padding leaked
    check(run_kernel("max_pool2d", [x], attrs), ref_pool(wide(x), k, s, pads, "max"), dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_avg_pool2d(case: int, include_pad: bool, dtype: str) -> None:
    attrs, k, s, pads = POOL_CASES[case]
    x = make(rng_for("avgpool", case, dtype), (2, 3, 5, 6), dtype)
    out = run_kernel("avg_pool2d", [x], {**attrs, "count_include_pad": include_pad})
    check(out, ref_pool(wide(x), k, s, pads, "avg", include_pad), dtype)


# --------------------------------------------------------------------------------- softmax and layernorm


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax(axis: int, dtype: str) -> None:
    x = make(rng_for("softmax", axis, dtype), (3, 4, 5), dtype, -30, 30)
    xw = wide(x)
    e = np.exp(xw - xw.max(axis=axis, keepdims=True))
    out = run_kernel("softmax", [x], {"axis": axis})
    check(out, e / e.sum(axis=axis, keepdims=True), dtype)
    np.testing.assert_allclose(out.astype(np.float64).sum(axis=axis), np.ones(e.sum(axis=axis).shape), **TOL[dtype])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("axis, n_inputs", [(-1, 1), (-1, 2), (-1, 3), (1, 3)])
def test_layernorm(axis: int, n_inputs: int, dtype: str) -> None:
    rng = rng_for("layernorm", axis, n_inputs, dtype)
    x = make(rng, (2, 3, 8), dtype, -3, 5)
    norm_shape = (3, 8) if axis == 1 else (8,)
    gamma, beta = make(rng, norm_shape, dtype), make(rng, norm_shape, dtype)
    xw = wide(x)
    axes = tuple(range(axis % 3, 3))
    mu = xw.mean(axis=axes, keepdims=True)
    var = ((xw - mu) ** 2).mean(axis=axes, keepdims=True)
    ref = (xw - mu) / np.sqrt(var + 1e-3)
    if n_inputs > 1:
        ref = ref * wide(gamma)
    if n_inputs > 2:
        ref = ref + wide(beta)
    out = run_kernel("layernorm", [x, gamma, beta][:n_inputs], {"axis": axis, "eps": 1e-3})
    check(out, ref, dtype)


# -------------------------------------------------------------------------------------------- attention


def ref_attention(q: Any, k: Any, v: Any, scale: float, mask: Any = None, causal: bool = False) -> Any:
    """Row by row: scores, mask, softmax, weighted sum of v."""
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    lq, lk = q.shape[-2], k.shape[-2]
    qb = np.broadcast_to(q, batch + q.shape[-2:])
    kb = np.broadcast_to(k, batch + k.shape[-2:])
    vb = np.broadcast_to(v, batch + v.shape[-2:])
    mb = None if mask is None else np.broadcast_to(mask, batch + (lq, lk))
    out = np.zeros(batch + (lq, v.shape[-1]))
    for idx in np.ndindex(*batch):
        for i in range(lq):
            scores = []
            for j in range(lk):
                s = float(np.dot(qb[idx][i], kb[idx][j])) * scale
                if mb is not None:
                    m = mb[idx][i, j]
                    s = (s if m else -math.inf) if mb.dtype == bool else s + float(m)
                if causal and j > i:
                    s = -math.inf
                scores.append(s)
            top = max(scores)
            weights = [math.exp(s - top) for s in scores]
            total = sum(weights)
            out[idx][i] = sum(wt / total * vb[idx][j] for j, wt in enumerate(weights))
    return out


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("variant", ["plain", "bool_mask", "float_mask", "causal", "broadcast"])
def test_attention(variant: str, dtype: str) -> None:
    rng = rng_for("attention", variant, dtype)
    qs: tuple[int, ...] = (2, 3, 4, 8)
    ks: tuple[int, ...] = (2, 3, 6, 8)
    vs: tuple[int, ...] = (2, 3, 6, 5)
    if variant == "causal":
        ks, vs = (2, 3, 4, 8), (2, 3, 4, 5)
    if variant == "broadcast":
        qs, ks, vs = (2, 3, 4, 8), (1, 3, 6, 8), (3, 6, 5)
    q, k, v = make(rng, qs, dtype), make(rng, ks, dtype), make(rng, vs, dtype)
    attrs: dict[str, Any] = {}
    mask = None
    scale = 1 / math.sqrt(8)
    if variant == "bool_mask":
        mask = rng.uniform(size=(4, 6)) > 0.4
        mask[:, 0] = True  # no fully masked row
    elif variant == "float_mask":
        mask = make(rng, (2, 1, 4, 6), dtype, -3, 0)
        attrs["scale"] = scale = 0.3
    elif variant == "causal":
        attrs["causal"] = True
    inputs = [q, k, v] + ([] if mask is None else [mask])
    out = run_kernel("attention", inputs, attrs)
    ref = ref_attention(wide(q), wide(k), wide(v), scale,
                        None if mask is None else (mask if mask.dtype == bool else wide(mask)),
                        variant == "causal")
    check(out, ref, dtype)


def test_attention_fully_masked_row_is_nan() -> None:
    q = np.ones((2, 4), dtype=np.float32)
    mask = np.array([[True, True, False], [False, False, False]])
    with np.errstate(invalid="ignore"):  # 0/0 in the fully masked row
        out = run_kernel("attention", [q, np.ones((3, 4), np.float32), np.ones((3, 2), np.float32), mask])
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))


# ------------------------------------------------------------------------------------------ data movement


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_reshape_transpose_concat(dtype: str) -> None:
    rng = rng_for("movement", dtype)
    x = make(rng, (2, 3, 4), dtype)
    out = run_kernel("reshape", [x], {"shape": [4, -1]})
    check(out, wide(x).ravel().reshape(4, 6), dtype)
    out = run_kernel("transpose", [x], {"perm": (2, 0, 1)})
    ref = np.array([[[wide(x)[a, b, c] for b in range(3)] for a in range(2)] for c in range(4)])
    check(out, ref, dtype)
    check(run_kernel("transpose", [x], {}), wide(x).transpose(2, 1, 0), dtype)
    y, z = make(rng, (2, 1, 4), dtype), make(rng, (2, 2, 4), dtype)
    out = run_kernel("concat", [x, y, z], {"axis": -2})
    ref = np.zeros((2, 6, 4))
    ref[:, 0:3], ref[:, 3:4], ref[:, 4:6] = wide(x), wide(y), wide(z)
    check(out, ref, dtype)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize(
    "attrs, index",
    [
        ({"starts": [1], "ends": [3]}, (slice(1, 3),)),
        ({"starts": [0, 5], "ends": [2**63 - 1, 1], "axes": [2, 1], "steps": [2, -2]},
         (slice(None), slice(5, 1, -2), slice(0, None, 2))),
        ({"starts": [-1], "ends": [-(2**63)], "axes": [-1], "steps": [-1]}, (slice(None), slice(None), slice(None, None, -1))),
        ({"starts": [10], "ends": [20], "axes": [0]}, (slice(4, 4),)),
    ],
)
def test_slice(attrs: dict[str, Any], index: tuple[slice, ...], dtype: str) -> None:
    x = make(rng_for("slice", dtype), (4, 6, 5), dtype)
    check(run_kernel("slice", [x], attrs), wide(x)[index], dtype)


# -------------------------------------------------------------------------------------------- reductions

REDUCE_REFS: dict[str, Callable[..., Any]] = {
    "reduce_sum": np.sum,
    "reduce_mean": np.mean,
    "reduce_max": np.max,
    "reduce_min": np.min,
}


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("name", sorted(REDUCE_REFS))
@pytest.mark.parametrize("axes, keepdims", [(None, False), (1, False), ((0, -1), True), ([], False), (None, True)])
def test_reductions(name: str, axes: Any, keepdims: bool, dtype: str) -> None:
    x = make(rng_for(name, axes, keepdims, dtype), (3, 4, 5), dtype)
    attrs: dict[str, Any] = {"keepdims": keepdims}
    if axes is not None:
        attrs["axes"] = axes
    ref_axes = None if axes is None else (tuple(axes) if isinstance(axes, (list, tuple)) else axes)
    ref = REDUCE_REFS[name](wide(x), axis=ref_axes, keepdims=keepdims)
    out_dtype = dtype
    if dtype in INT_DTYPES and name == "reduce_sum":
        out_dtype = "int32"
    if dtype in INT_DTYPES and name == "reduce_mean":
        out_dtype = "float32"
    check(run_kernel(name, [x], attrs), ref, out_dtype)


def test_int8_sum_does_not_wrap() -> None:
    x = np.full((10, 10), 127, dtype=np.int8)
    out = run_kernel("reduce_sum", [x], {"axes": [1]})
    assert out.dtype == np.int32 and out.tolist() == [1270] * 10


# --------------------------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize(
    "name, shapes, attrs, expected",
    [
        ("matmul", [(2, 3), (3, 4)], {}, 2 * 2 * 4 * 3),
        ("matmul", [(5, 2, 3), (3, 4)], {}, 5 * 48),
        ("matmul", [(2, 3), (3, 4), (4,)], {}, 48 + 8),
        ("gemm", [(4, 2), (4, 3)], {"transA": 1}, 2 * 2 * 3 * 4 + 6),
        ("gemm", [(2, 4), (3, 4), (3,)], {"transB": 1}, 48 + 6 + 12),
        # N=1, Cin=4, 5x5, Cout=6, 3x3, groups=2, pad 1 -> 5x5 out: 2*1*6*25*2*9 = 5400, + bias 150
        ("conv2d", [(1, 4, 5, 5), (6, 2, 3, 3), (6,)], {"padding": 1, "groups": 2}, 5550),
        # stride 2, no pad: 7x7 -> 3x3
        ("conv2d", [(2, 3, 7, 7), (8, 3, 3, 3)], {"stride": 2}, 2 * 2 * 8 * 9 * 3 * 9),
        ("max_pool2d", [(2, 3, 4, 4)], {"kernel": 2}, 2 * 3 * 4 * 4),
        ("avg_pool2d", [(1, 1, 5, 5)], {"kernel": 3, "stride": 1}, 9 * 9),
        ("softmax", [(3, 4)], {}, 60),
        ("layernorm", [(2, 5), (5,), (5,)], {}, 80),
        # batch 2: 2 * (2*4*6*8 + 2*4*6*5 + 5*4*6)
        ("attention", [(2, 4, 8), (2, 6, 8), (2, 6, 5)], {}, 1488),
        ("add", [(3, 1), (1, 4)], {}, 12),
        ("gelu", [(10,)], {}, 90),
        ("sigmoid", [(10,)], {}, 40),
        ("relu", [(2, 5)], {}, 10),
        ("reduce_sum", [(3, 4)], {"axes": 1}, 12),
        ("reduce_mean", [(3, 4)], {"axes": 1}, 15),
        ("reshape", [(3, 4)], {"shape": (12,)}, 0),
        ("transpose", [(3, 4)], {}, 0),
        ("concat", [(3, 4), (3, 4)], {}, 0),
        ("slice", [(3, 4)], {"starts": [0], "ends": [1]}, 0),
    ],
)
def test_flops(name: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any], expected: int) -> None:
    assert kernel_flops(name, shapes, attrs) == expected
    assert get_kernel(name).flops(shapes, attrs) == expected


def test_flops_validate_shapes_too() -> None:
    with pytest.raises(KernelError, match="inner dimensions"):
        kernel_flops("matmul", [(2, 3), (4, 5)])
    with pytest.raises(KernelError, match="non-negative"):
        kernel_flops("add", [(2, -3), (3,)])


# ------------------------------------------------------------------------------------------------ errors

F32 = np.float32


def _a(*shape: int, dtype: Any = F32) -> Any:
    return np.ones(shape, dtype=dtype)


ERROR_CASES: list[tuple[str, list[Any], Any, list[str]]] = [
    ("conv2d", [_a(1, 2, 5, 5), _a(3, 2, 3, 3)], {"stride": -1}, ["conv2d", "'stride'", "-1", "accepted", ">= 1"]),
    ("conv2d", [_a(1, 2, 5, 5), _a(3, 2, 3, 3)], {"strides": 2}, ["unknown attribute 'strides'", "stride, padding"]),
    ("conv2d", [_a(1, 4, 5, 5), _a(3, 2, 3, 3)], {"groups": 2}, ["'groups'=2", "divisor", "Cout=3"]),
    ("conv2d", [_a(1, 3, 5, 5), _a(4, 2, 3, 3)], {}, ["conv2d", "(4, 2, 3, 3)", "Cin/groups = 3"]),
    ("conv2d", [_a(1, 2, 2, 2), _a(3, 2, 3, 3)], {}, ["conv2d", "window", "larger than the padded input"]),
    ("conv2d", [_a(1, 2, 5, 5), _a(3, 2, 3, 3), _a(2)], {}, ["bias", "(3,)", "(2,)"]),
    ("conv2d", [_a(1, 2, 5, 5), _a(3, 2, 3, 3)], {"padding": (1, 2, 3)}, ["'padding'=(1, 2, 3)", "top, left"]),
    ("conv2d", [_a(2, 5, 5), _a(3, 2, 3, 3)], {}, ["conv2d", "4-D NCHW", "(2, 5, 5)"]),
    ("transpose", [_a(2, 3, 4)], {"perm": (0, 0, 1)}, ["transpose", "'perm'=(0, 0, 1)", "permutation of 0..2"]),
    ("transpose", [_a(2, 3, 4)], {"perm": "012"}, ["'perm'='012'", "sequence of ints"]),
    ("matmul", [_a(2, 3), _a(4, 5)], {}, ["matmul", "(2, 3)", "(4, 5)", "K=3", "K=4"]),
    ("matmul", [_a(2, 3), _a(3, 5), _a(2, 5, 1)], {}, ["bias", "(2, 5, 1)", "(2, 5)"]),
    ("matmul", [_a(2, 3, dtype=np.int8), _a(3, 5, dtype=np.int8), _a(5)], {}, ["bias", "float32", "int8, int32"]),
    ("gemm", [_a(2, 3), _a(2, 3)], {}, ["gemm", "inner dimensions"]),
    ("gemm", [_a(2, 3), _a(3, 2)], {"transA": 2}, ["'transA'=2", "True/False or 0/1"]),
    ("gemm", [_a(2, 3), _a(3, 2)], {"alpha": float("nan")}, ["'alpha'=nan", "finite float"]),
    ("add", [_a(2, 3), _a(4,)], {}, ["add", "(2, 3)", "(4,)", "broadcast"]),
    ("add", [_a(2, 3), _a(2, 3, dtype=np.float16)], {}, ["add", "float32", "float16", "share one dtype"]),
    ("add", [_a(2, 3), [1.0, 2.0, 3.0]], {}, ["add", "input 1", "list", "expected an array"]),
    ("add", [_a(2, 3)], {}, ["add", "takes 2 input(s)", "got 1"]),
    ("add", [_a(2, 3), _a(2, 3)], {"axis": 0}, ["add", "unknown attribute 'axis'", "takes no attributes"]),
    ("div", [_a(2, dtype=np.int8), _a(2, dtype=np.int8)], {}, ["div", "int8", "float32, float16, bfloat16"]),
    ("softmax", [_a(2, dtype=np.int32)], {}, ["softmax", "int32", "float32, float16, bfloat16"]),
    ("softmax", [_a(2, 3)], {"axis": 2}, ["softmax", "'axis'=2", "[-2, 1]"]),
    ("layernorm", [_a(2, 3, dtype=np.int8)], {}, ["layernorm", "int8", "accepted dtypes"]),
    ("layernorm", [_a(2, 3), _a(2)], {}, ["layernorm", "gamma", "(2,)", "(3,)"]),
    ("layernorm", [_a(2, 3)], {"eps": -1.0}, ["'eps'=-1.0", ">= 0"]),
    ("attention", [_a(2, 4, dtype=np.int8)] * 3, {}, ["attention", "int8", "accepted dtypes"]),
    ("attention", [_a(2, 4), _a(3, 5), _a(3, 2)], {}, ["attention", "(2, 4)", "(3, 5)", "last dimension"]),
    ("attention", [_a(2, 4), _a(3, 4), _a(3, 2), _a(3, 3, dtype=np.int32)], {}, ["mask", "(3, 3)", "(2, 3)"]),
    ("attention", [_a(2, 4), _a(3, 4), _a(3, 2), _a(2, 3, dtype=np.int32)], {}, ["mask", "int32", "bool"]),
    ("max_pool2d", [_a(1, 1, 4, 4)], {}, ["max_pool2d", "'kernel'=None", "required"]),
    ("max_pool2d", [_a(1, 1, 4, 4)], {"kernel": 2, "padding": 2}, ["'padding'=2", "smaller than the kernel"]),
    ("avg_pool2d", [_a(1, 1, 4, 4)], {"kernel": 0}, ["avg_pool2d", "'kernel'=0", ">= 1"]),
    ("reshape", [_a(2, 3)], {"shape": (4, -1)}, ["reshape", "'shape'=(4, -1)", "6 elements"]),
    ("reshape", [_a(2, 3)], {"shape": (-1, -1)}, ["reshape", "at most one -1"]),
    ("reshape", [_a(2, 3)], {}, ["reshape", "'shape'=None", "required"]),
    ("concat", [_a(2, 3), _a(2, 4)], {}, ["concat", "(2, 4)", "(2, 3)", "axis 0"]),
    ("concat", [], {}, ["concat", "at least 1", "got 0"]),
    ("slice", [_a(4, 3)], {"starts": [0], "ends": [2], "steps": [0]}, ["slice", "'steps'=[0]", "non-zero"]),
    ("slice", [_a(4, 3)], {"starts": [0, 0], "ends": [2, 2], "axes": [1, -1]}, ["'axes'=[1, -1]", "distinct"]),
    ("slice", [_a(4, 3)], {"starts": [0], "ends": [2, 3]}, ["'ends'=[2, 3]", "as many entries as starts"]),
    ("reduce_sum", [_a(2, 3)], {"axes": 2}, ["reduce_sum", "'axes'=2", "[-2, 1]"]),
    ("reduce_max", [_a(2, 0)], {"axes": 1}, ["reduce_max", "empty axis", "(2, 0)"]),
    ("reduce_mean", [_a(2, 3)], {"keepdims": "yes"}, ["'keepdims'='yes'", "True/False"]),
    ("exp", [_a(2, dtype=np.float64)], {}, ["exp", "float64", "accepted dtypes: float32"]),
    ("relu", [_a(2)], [("a", 1)], ["relu", "attrs must be a mapping", "list"]),
]


@pytest.mark.parametrize("case", range(len(ERROR_CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_errors_name_kernel_attribute_value_and_accepted(case: int) -> None:
    name, inputs, attrs, fragments = ERROR_CASES[case]
    with pytest.raises(KernelError) as info:
        run_kernel(name, inputs, attrs)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    assert isinstance(info.value, ValueError)


def test_kernel_object_is_callable_and_frozen() -> None:
    k = get_kernel("relu")
    x = np.array([-1.0, 2.0], dtype=np.float32)
    assert k(np, [x]).tolist() == [0.0, 2.0]
    assert k.fn(np, [x], {}).tolist() == [0.0, 2.0]
    with pytest.raises(AttributeError):
        k.name = "other"  # type: ignore[misc]


def test_zero_d_results_are_arrays() -> None:
    out = run_kernel("add", [np.array(1.5, np.float32), np.array(2.0, np.float32)])
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float32 and float(out) == 3.5
    out = run_kernel("reduce_sum", [np.ones((2, 2), np.float16)])
    assert isinstance(out, np.ndarray) and out.dtype == np.float16 and float(out) == 4.0
