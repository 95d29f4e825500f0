"""matmul, gemm and scaled dot-product attention.

matmul follows NumPy's ``matmul`` (batch dimensions broadcast, 1-D operands promoted then squeezed) with an
optional third input ``bias`` added to the result (same dtype as a and b; for integer inputs int8 or int32). For int8 inputs it accumulates in int32 and returns int32
(int8 x int8 products overflow int8 immediately; int32 is what integer matrix engines accumulate in); int32
inputs give int32. gemm is ONNX Gemm: ``alpha * A' @ B' + beta * C`` with ``transA``/``transB``. attention is
``softmax(q @ k^T * scale + mask) @ v`` along the last axis.

FLOPs: matmul ``2*M*N*K`` per batch entry (+1 per output element with bias); gemm ``2*M*N*K + M*N`` (alpha)
``+ 2*M*N`` when C is given (beta scale and add); attention ``2*Lq*Lk*D + 2*Lq*Lk*Dv + 5*Lq*Lk`` per batch
entry (the two matmuls and the softmax).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from nrt_lab.kernels._common import (
    ALL_DTYPES,
    FLOAT_DTYPES,
    INT_DTYPES,
    Attrs,
    TensorSpec,
    broadcast,
    check_dtype_names,
    check_dtypes,
    check_inputs,
    check_shapes,
    check_specs,
    dtype_name,
    finish,
    is_int,
    num_elements,
    shape_of,
    upcast,
)
from nrt_lab.kernels.errors import KernelError
from nrt_lab.kernels.normalization import stable_softmax

__all__ = [
    "matmul",
    "gemm",
    "attention",
    "matmul_flops",
    "gemm_flops",
    "attention_flops",
    "matmul_infer",
    "gemm_infer",
    "attention_infer",
    "MATMUL_DTYPES",
    "GEMM_DTYPES",
    "ATTENTION_DTYPES",
]

MATMUL_DTYPES = ALL_DTYPES
GEMM_DTYPES = FLOAT_DTYPES
ATTENTION_DTYPES = FLOAT_DTYPES

_MM_NAMES = ("a", "b", "bias")
_GEMM_NAMES = ("A", "B", "C")
_GEMM_ATTRS = ("alpha", "beta", "transA", "transB")
_ATT_NAMES = ("q", "k", "v", "mask")
_ATT_ATTRS = ("scale", "causal")


def _check_bias(kernel: str, name: str, out: tuple[int, ...], bias: tuple[int, ...]) -> None:
    fits = len(bias) <= len(out) and all(b in (1, o) for b, o in zip(reversed(bias), reversed(out), strict=False))
    if not fits:
        raise KernelError(
            f"kernel '{kernel}': {name} of shape {bias} does not broadcast to the output shape {out} "
            "(it may not add dimensions)"
        )


def _matmul_plan(shapes: Sequence[tuple[int, ...]]) -> tuple[tuple[int, ...], int, int, int, int]:
    """(output shape, batch count, M, N, K) of NumPy matmul, or a KernelError naming both shapes."""
    a, b = shapes[0], shapes[1]
    if len(a) == 0 or len(b) == 0:
        raise KernelError(f"kernel 'matmul': inputs must be at least 1-D, got shapes a={a}, b={b}")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    m, k = a2[-2], a2[-1]
    k2, n = b2[-2], b2[-1]
    if k != k2:
        raise KernelError(
            f"kernel 'matmul': inner dimensions differ: a has shape {a} (K={k}) and b has shape {b} (K={k2}); "
            "accepted: a's last dimension equal to b's second-to-last"
        )
    batch = broadcast("matmul", a2[:-2], b2[:-2])
    out = batch + ((m,) if len(a) > 1 else ()) + ((n,) if len(b) > 1 else ())
    if len(shapes) > 2:
        _check_bias("matmul", "bias", out, shapes[2])
    return out, num_elements(batch), m, n, k


def _check_bias_dtype(dt: str, bdt: str) -> None:
    """matmul's bias must have the dtype of a and b, or any integer dtype when they are integers."""
    bias_dtypes = INT_DTYPES if is_int(dt) else (dt,)
    if bdt not in bias_dtypes:
        raise KernelError(
            f"kernel 'matmul' does not accept dtype {bdt} for input 2 (bias) with {dt} a and b; "
            f"accepted bias dtypes: {', '.join(bias_dtypes)}"
        )


def matmul(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """a @ b (+ bias) with NumPy matmul semantics; int8 accumulates in int32 and returns int32."""
    Attrs("matmul", attrs, ())
    arrays = check_inputs("matmul", inputs, 2, 3, _MM_NAMES)
    dt = check_dtypes("matmul", arrays[:2], MATMUL_DTYPES, _MM_NAMES)
    if len(arrays) > 2:
        _check_bias_dtype(dt, dtype_name(arrays[2].dtype))
    _matmul_plan([shape_of(t) for t in arrays])
    if is_int(dt):
        ops = [t.astype(xp.int32) for t in arrays]
        out = xp.matmul(ops[0], ops[1])
        if len(ops) > 2:
            out = out + ops[2]
        return finish(xp, out, xp.int32)
    ops = [upcast(xp, t) for t in arrays]
    out = xp.matmul(ops[0], ops[1])
    if len(ops) > 2:
        out = out + ops[2]
    return finish(xp, out, arrays[0].dtype)


def matmul_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """2*M*N*K per batch entry, plus one add per output element when a bias is given."""
    Attrs("matmul", attrs, ())
    shapes = check_shapes("matmul", input_shapes, 2, 3, _MM_NAMES)
    out, batch, m, n, k = _matmul_plan(shapes)
    return 2 * batch * m * n * k + (num_elements(out) if len(shapes) > 2 else 0)


def _gemm_plan(a: Attrs, shapes: Sequence[tuple[int, ...]]) -> tuple[int, int, int]:
    """(M, N, K) of ONNX Gemm after transposition flags, with shape checks."""
    sa, sb = shapes[0], shapes[1]
    if len(sa) != 2 or len(sb) != 2:
        raise KernelError(f"kernel 'gemm': A and B must be 2-D, got shapes A={sa}, B={sb}")
    trans_a = a.get_bool("transA", False)
    trans_b = a.get_bool("transB", False)
    m, k = (sa[1], sa[0]) if trans_a else sa
    k2, n = (sb[1], sb[0]) if trans_b else sb
    if k != k2:
        raise KernelError(
            f"kernel 'gemm': inner dimensions differ: A{'^T' if trans_a else ''} is {(m, k)} and "
            f"B{'^T' if trans_b else ''} is {(k2, n)} (transA={int(trans_a)}, transB={int(trans_b)}); "
            "accepted: K of A' equal to K of B'"
        )
    if len(shapes) > 2:
        _check_bias("gemm", "C", (m, n), shapes[2])
    a.get_float("alpha", 1.0)
    a.get_float("beta", 1.0)
    return m, n, k


def gemm(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """ONNX Gemm: alpha * A' @ B' + beta * C (A' = A^T if transA, B' = B^T if transB, C optional)."""
    a = Attrs("gemm", attrs, _GEMM_ATTRS)
    arrays = check_inputs("gemm", inputs, 2, 3, _GEMM_NAMES)
    check_dtypes("gemm", arrays, GEMM_DTYPES, _GEMM_NAMES)
    _gemm_plan(a, [shape_of(t) for t in arrays])
    ma, mb = upcast(xp, arrays[0]), upcast(xp, arrays[1])
    if a.get_bool("transA", False):
        ma = ma.T
    if a.get_bool("transB", False):
        mb = mb.T
    out = a.get_float("alpha", 1.0) * xp.matmul(ma, mb)
    if len(arrays) > 2:
        out = out + a.get_float("beta", 1.0) * upcast(xp, arrays[2])
    return finish(xp, out, arrays[0].dtype)


def gemm_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """2*M*N*K + M*N (alpha), + 2*M*N when C is given (beta scale and add)."""
    a = Attrs("gemm", attrs, _GEMM_ATTRS)
    shapes = check_shapes("gemm", input_shapes, 2, 3, _GEMM_NAMES)
    m, n, k = _gemm_plan(a, shapes)
    return 2 * m * n * k + m * n + (2 * m * n if len(shapes) > 2 else 0)


def _attention_plan(a: Attrs, shapes: Sequence[tuple[int, ...]]) -> tuple[int, int, int, int, int, float]:
    """(batch count, Lq, Lk, D, Dv, scale) with shape checks."""
    q, k, v = shapes[0], shapes[1], shapes[2]
    if len(q) < 2 or len(k) < 2 or len(v) < 2:
        raise KernelError(f"kernel 'attention': q, k, v must be at least 2-D (..., L, D), got {q}, {k}, {v}")
    lq, d = q[-2], q[-1]
    lk, dk = k[-2], k[-1]
    lv, dv = v[-2], v[-1]
    if dk != d:
        raise KernelError(f"kernel 'attention': q {q} and k {k} must have the same last dimension (D={d}, got {dk})")
    if lv != lk:
        raise KernelError(
            f"kernel 'attention': v {v} must have as many rows as k {k} (Lk={lk}, got {lv} in v's second-to-last)"
        )
    batch = broadcast("attention", q[:-2], k[:-2], v[:-2])
    if len(shapes) > 3:
        _check_bias("attention", "mask", batch + (lq, lk), shapes[3])
    if a.has("scale"):
        scale = a.get_float("scale")
    else:
        scale = 1.0 / math.sqrt(d) if d > 0 else 1.0
    a.get_bool("causal", False)
    return num_elements(batch), lq, lk, d, dv, scale


def _check_mask_dtype(mdt: str) -> str:
    """attention's mask is bool (True = attend) or a float added to the scores; returns ``mdt``."""
    if mdt != "bool" and mdt not in FLOAT_DTYPES:
        raise KernelError(
            f"kernel 'attention' does not accept dtype {mdt} for input 3 (mask); "
            f"accepted: bool (True = attend) or {', '.join(FLOAT_DTYPES)} (added to the scores)"
        )
    return mdt


def attention(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """softmax(q @ k^T * scale + mask) @ v; mask is bool (True = attend) or additive float, optional."""
    a = Attrs("attention", attrs, _ATT_ATTRS)
    arrays = check_inputs("attention", inputs, 3, 4, _ATT_NAMES)
    check_dtypes("attention", arrays[:3], ATTENTION_DTYPES, _ATT_NAMES)
    _, lq, lk, _, _, scale = _attention_plan(a, [shape_of(t) for t in arrays])
    q, k, v = (upcast(xp, t) for t in arrays[:3])
    scores = xp.matmul(q, xp.swapaxes(k, -1, -2)) * scale
    if len(arrays) > 3:
        mask = arrays[3]
        if _check_mask_dtype(dtype_name(mask.dtype)) == "bool":
            scores = xp.where(mask, scores, -math.inf)
        else:
            scores = scores + upcast(xp, mask)
    if a.get_bool("causal", False):
        keep = xp.arange(lq)[:, None] >= xp.arange(lk)[None, :]
        scores = xp.where(keep, scores, -math.inf)
    probs = stable_softmax(xp, scores, -1)
    return finish(xp, xp.matmul(probs, v), arrays[0].dtype)


def attention_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """Per batch entry: 2*Lq*Lk*D (q @ k^T) + 2*Lq*Lk*Dv (p @ v) + 5*Lq*Lk (softmax)."""
    a = Attrs("attention", attrs, _ATT_ATTRS)
    shapes = check_shapes("attention", input_shapes, 3, 4, _ATT_NAMES)
    batch, lq, lk, d, dv, _ = _attention_plan(a, shapes)
    return batch * (2 * lq * lk * d + 2 * lq * lk * dv + 5 * lq * lk)


def matmul_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """NumPy matmul's output shape; int8/int32 inputs give int32, floats keep their dtype."""
    Attrs("matmul", attrs, ())
    shapes, dtypes = check_specs("matmul", specs, 2, 3, _MM_NAMES)
    dt = check_dtype_names("matmul", dtypes[:2], MATMUL_DTYPES, _MM_NAMES)
    if len(dtypes) > 2:
        _check_bias_dtype(dt, dtypes[2])
    out, *_ = _matmul_plan(shapes)
    return TensorSpec(out, "int32" if is_int(dt) else dt)


def gemm_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """(M, N) after the transposition flags, in A's dtype."""
    a = Attrs("gemm", attrs, _GEMM_ATTRS)
    shapes, dtypes = check_specs("gemm", specs, 2, 3, _GEMM_NAMES)
    dt = check_dtype_names("gemm", dtypes, GEMM_DTYPES, _GEMM_NAMES)
    m, n, _ = _gemm_plan(a, shapes)
    return TensorSpec((m, n), dt)


def attention_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """(..., Lq, Dv) with the broadcast batch of q, k, v, in q's dtype."""
    a = Attrs("attention", attrs, _ATT_ATTRS)
    shapes, dtypes = check_specs("attention", specs, 3, 4, _ATT_NAMES)
    dt = check_dtype_names("attention", dtypes[:3], ATTENTION_DTYPES, _ATT_NAMES)
    if len(dtypes) > 3:
        _check_mask_dtype(dtypes[3])
    _attention_plan(a, shapes)
    q, k, v = shapes[0], shapes[1], shapes[2]
    return TensorSpec(broadcast("attention", q[:-2], k[:-2], v[:-2]) + (q[-2], v[-1]), dt)
