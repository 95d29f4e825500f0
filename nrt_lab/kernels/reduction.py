"""Reductions reduce_sum, reduce_mean, reduce_max, reduce_min over ``axes`` with optional ``keepdims``.

``axes``: None (default) reduces every axis, an int or a sequence reduces those (an empty sequence reduces
nothing, as in NumPy). ``keepdims`` defaults to False (NumPy's default; ONNX importers pass it explicitly).
Floats: float16/bfloat16 accumulate in float32 and are cast back. Integers: reduce_sum accumulates in int32
and returns int32 (so int8 sums do not wrap at 127); reduce_mean returns float32; reduce_max/min keep the dtype.

Shape inference (:func:`reduce_infer`) gives the output shape and dtype from the same plan and dtype rule.

FLOPs: one per input element (sum, max, min); reduce_mean adds one divide per output element.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nrt_lab.kernels._common import (
    ALL_DTYPES,
    Attrs,
    TensorSpec,
    check_dtype_names,
    check_dtypes,
    check_inputs,
    check_shapes,
    check_specs,
    finish,
    is_int,
    normalize_axis,
    num_elements,
    shape_of,
    upcast,
)
from nrt_lab.kernels.errors import KernelError

__all__ = [
    "reduce_sum",
    "reduce_mean",
    "reduce_max",
    "reduce_min",
    "reduce_sum_flops",
    "reduce_mean_flops",
    "reduce_max_flops",
    "reduce_min_flops",
    "REDUCE_DTYPES",
    "reduce_infer",
]

REDUCE_DTYPES = ALL_DTYPES
_ATTRS = ("axes", "keepdims")


def _plan(kernel: str, a: Attrs, x: tuple[int, ...]) -> tuple[tuple[int, ...], bool, tuple[int, ...]]:
    """(normalized axes, keepdims, output shape)."""
    axes_in = a.get_ints("axes", allow_scalar=True)
    if axes_in is None:
        axes = tuple(range(len(x)))
    else:
        axes = tuple(normalize_axis(kernel, "axes", ax, len(x)) for ax in axes_in)
        if len(set(axes)) != len(axes):
            raise a.error("axes", a.raw("axes"), f"distinct axes of the {len(x)}-D input {x}")
    keepdims = a.get_bool("keepdims", False)
    if kernel in ("reduce_max", "reduce_min") and any(x[ax] == 0 for ax in axes):
        raise KernelError(
            f"kernel '{kernel}': cannot reduce the empty axis of shape {x} (axes {axes}): a max/min of nothing "
            "has no value; accepted: axes of non-zero length"
        )
    out = tuple(1 if i in axes else d for i, d in enumerate(x) if keepdims or i not in axes)
    return axes, keepdims, out


def _reduce(kernel: str, xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    a = Attrs(kernel, attrs, _ATTRS)
    (x,) = check_inputs(kernel, inputs, 1, 1, ("x",))
    dt = check_dtypes(kernel, [x], REDUCE_DTYPES, ("x",))
    axes, keepdims, _ = _plan(kernel, a, shape_of(x))
    if kernel == "reduce_sum":
        if is_int(dt):
            return finish(xp, xp.sum(x, axis=axes, dtype=xp.int32, keepdims=keepdims), xp.int32)
        return finish(xp, xp.sum(upcast(xp, x), axis=axes, dtype=xp.float32, keepdims=keepdims), x.dtype)
    if kernel == "reduce_mean":
        if is_int(dt):
            return finish(xp, xp.mean(x, axis=axes, dtype=xp.float32, keepdims=keepdims), xp.float32)
        return finish(xp, xp.mean(upcast(xp, x), axis=axes, dtype=xp.float32, keepdims=keepdims), x.dtype)
    fn = xp.max if kernel == "reduce_max" else xp.min
    return finish(xp, fn(upcast(xp, x), axis=axes, keepdims=keepdims), x.dtype)


def reduce_sum(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Sum over ``axes``; ints accumulate in int32 and return int32."""
    return _reduce("reduce_sum", xp, inputs, attrs)


def reduce_mean(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Mean over ``axes``; ints return float32."""
    return _reduce("reduce_mean", xp, inputs, attrs)


def reduce_max(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Maximum over ``axes`` (non-empty)."""
    return _reduce("reduce_max", xp, inputs, attrs)


def reduce_min(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Minimum over ``axes`` (non-empty)."""
    return _reduce("reduce_min", xp, inputs, attrs)


def _flops(kernel: str, input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    a = Attrs(kernel, attrs, _ATTRS)
    (x,) = check_shapes(kernel, input_shapes, 1, 1, ("x",))
    _, _, out = _plan(kernel, a, x)
    return num_elements(x) + (num_elements(out) if kernel == "reduce_mean" else 0)


def reduce_sum_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """One add per input element."""
    return _flops("reduce_sum", input_shapes, attrs)


def reduce_mean_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """One add per input element plus one divide per output element."""
    return _flops("reduce_mean", input_shapes, attrs)


def reduce_max_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """One comparison per input element."""
    return _flops("reduce_max", input_shapes, attrs)


def reduce_min_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """One comparison per input element."""
    return _flops("reduce_min", input_shapes, attrs)


def _out_dtype(kernel: str, dt: str) -> str:
    """The result dtype: int sums are int32, int means float32, everything else keeps the input dtype."""
    if is_int(dt) and kernel == "reduce_sum":
        return "int32"
    if is_int(dt) and kernel == "reduce_mean":
        return "float32"
    return dt


def reduce_infer(kernel: str) -> Callable[[Sequence[TensorSpec], Mapping[str, Any]], TensorSpec]:
    """Shape inference of ``kernel`` (one of the four reductions): output shape from ``axes``/``keepdims``."""

    def infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
        """Reduced shape; dtype by the module's integer rules."""
        a = Attrs(kernel, attrs, _ATTRS)
        (x,), dtypes = check_specs(kernel, specs, 1, 1, ("x",))
        dt = check_dtype_names(kernel, dtypes, REDUCE_DTYPES, ("x",))
        _, _, out = _plan(kernel, a, x)
        return TensorSpec(out, _out_dtype(kernel, dt))

    return infer
