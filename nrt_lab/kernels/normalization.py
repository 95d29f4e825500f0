"""softmax and layernorm (floats only; float16/bfloat16 compute in float32 and are cast back).

softmax subtracts the maximum along the axis before ``exp`` so large logits never overflow. layernorm
normalizes over the dimensions from ``axis`` to the last (ONNX LayerNormalization), with the biased variance.

FLOPs: softmax 5 per element (max, subtract, exp, sum, divide); layernorm 8 per element (mean, subtract,
square, mean, add eps + rsqrt amortized, multiply, scale, shift).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nrt_lab.kernels._common import (
    FLOAT_DTYPES,
    Attrs,
    TensorSpec,
    check_dtype_names,
    check_dtypes,
    check_inputs,
    check_shapes,
    check_specs,
    finish,
    normalize_axis,
    num_elements,
    shape_of,
    upcast,
)
from nrt_lab.kernels.errors import KernelError

__all__ = [
    "softmax",
    "layernorm",
    "softmax_flops",
    "layernorm_flops",
    "stable_softmax",
    "softmax_infer",
    "layernorm_infer",
    "SOFTMAX_DTYPES",
    "LAYERNORM_DTYPES",
]

SOFTMAX_DTYPES = FLOAT_DTYPES
LAYERNORM_DTYPES = FLOAT_DTYPES
_SOFTMAX_ATTRS = ("axis",)
_LAYERNORM_ATTRS = ("axis", "eps")
_LN_NAMES = ("x", "gamma", "beta")


def stable_softmax(xp: Any, x: Any, axis: int) -> Any:
    """Numerically stable softmax of a float32 array along ``axis`` (max subtracted before exp)."""
    if x.shape[axis] == 0:  # nothing to normalize (and a max over nothing has no value)
        return x
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)  # a row of -inf stays -inf - 0 (-> NaN after 0/0, as in PyTorch)
    e = xp.exp(x - m)
    return e / xp.sum(e, axis=axis, keepdims=True)


def softmax(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """exp(x) / sum(exp(x)) along ``axis`` (default -1), numerically stable."""
    a = Attrs("softmax", attrs, _SOFTMAX_ATTRS)
    (x,) = check_inputs("softmax", inputs, 1, 1, ("x",))
    check_dtypes("softmax", [x], SOFTMAX_DTYPES, ("x",))
    axis = _softmax_axis(a, shape_of(x))
    return finish(xp, stable_softmax(xp, upcast(xp, x), axis), x.dtype)


def _softmax_axis(a: Attrs, shape: tuple[int, ...]) -> int:
    if len(shape) == 0:
        raise KernelError("kernel 'softmax': input x is 0-D; accepted: an array with at least one dimension")
    return normalize_axis("softmax", "axis", a.get_int("axis", -1), len(shape))


def softmax_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """5 FLOPs per element: max, subtract, exp, sum, divide."""
    a = Attrs("softmax", attrs, _SOFTMAX_ATTRS)
    (x,) = check_shapes("softmax", input_shapes, 1, 1, ("x",))
    _softmax_axis(a, x)
    return 5 * num_elements(x)


def _layernorm_axis(a: Attrs, shapes: Sequence[tuple[int, ...]]) -> int:
    x = shapes[0]
    if len(x) == 0:
        raise KernelError("kernel 'layernorm': input x is 0-D; accepted: an array with at least one dimension")
    axis = normalize_axis("layernorm", "axis", a.get_int("axis", -1), len(x))
    if a.get_float("eps", 1e-5) < 0:
        raise a.error("eps", a.raw("eps"), "a finite float >= 0")
    norm_shape = x[axis:]
    for i, s in enumerate(shapes[1:], start=1):
        if s != norm_shape:
            raise KernelError(
                f"kernel 'layernorm': input {i} ({_LN_NAMES[i]}) has shape {s}, but x {x} normalized from "
                f"axis {axis} needs shape {norm_shape}"
            )
    return axis


def layernorm(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """(x - mean) / sqrt(var + eps) * gamma + beta over dims ``axis``..-1; inputs x, optional gamma, beta."""
    a = Attrs("layernorm", attrs, _LAYERNORM_ATTRS)
    arrays = check_inputs("layernorm", inputs, 1, 3, _LN_NAMES)
    check_dtypes("layernorm", arrays, LAYERNORM_DTYPES, _LN_NAMES)
    axis = _layernorm_axis(a, [shape_of(t) for t in arrays])
    eps = a.get_float("eps", 1e-5)
    x = upcast(xp, arrays[0])
    axes = tuple(range(axis, x.ndim))
    mean = xp.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    var = xp.mean(centered * centered, axis=axes, keepdims=True)
    y = centered / xp.sqrt(var + eps)
    if len(arrays) > 1:
        y = y * upcast(xp, arrays[1])
    if len(arrays) > 2:
        y = y + upcast(xp, arrays[2])
    return finish(xp, y, arrays[0].dtype)


def layernorm_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """8 FLOPs per element of x."""
    a = Attrs("layernorm", attrs, _LAYERNORM_ATTRS)
    shapes = check_shapes("layernorm", input_shapes, 1, 3, _LN_NAMES)
    _layernorm_axis(a, shapes)
    return 8 * num_elements(shapes[0])


def softmax_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """The input's shape and dtype."""
    a = Attrs("softmax", attrs, _SOFTMAX_ATTRS)
    (x,), dtypes = check_specs("softmax", specs, 1, 1, ("x",))
    dt = check_dtype_names("softmax", dtypes, SOFTMAX_DTYPES, ("x",))
    _softmax_axis(a, x)
    return TensorSpec(x, dt)


def layernorm_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """x's shape and dtype."""
    a = Attrs("layernorm", attrs, _LAYERNORM_ATTRS)
    shapes, dtypes = check_specs("layernorm", specs, 1, 3, _LN_NAMES)
    dt = check_dtype_names("layernorm", dtypes, LAYERNORM_DTYPES, _LN_NAMES)
    _layernorm_axis(a, shapes)
    return TensorSpec(shapes[0], dt)
