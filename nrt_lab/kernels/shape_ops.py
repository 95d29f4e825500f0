"""Data-movement kernels: reshape, transpose, concat, slice. Every dtype; 0 FLOPs.

reshape and transpose and slice may return views that share memory with their input (as NumPy does);
callers that mutate buffers in place must copy. slice follows ONNX Slice: ``starts``/``ends`` per axis with
Python/NumPy clamping (negative = from the end; a huge negative end with a negative step reaches index 0),
optional ``axes`` (default 0..len(starts)-1) and ``steps`` (default 1, never 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    normalize_axis,
    num_elements,
    shape_of,
)
from nrt_lab.kernels.errors import KernelError

__all__ = [
    "reshape",
    "transpose",
    "concat",
    "slice_",
    "reshape_flops",
    "transpose_flops",
    "concat_flops",
    "slice_flops",
    "SHAPE_DTYPES",
    "reshape_infer",
    "transpose_infer",
    "concat_infer",
    "slice_infer",
]

SHAPE_DTYPES = ALL_DTYPES
_MANY = 1 << 30


def _reshape_plan(a: Attrs, x: tuple[int, ...]) -> tuple[int, ...]:
    shape = a.get_required_ints("shape")
    accepted = f"a sequence of ints >= 0 with at most one -1, holding {num_elements(x)} elements like x {x}"
    if any(d < -1 for d in shape) or shape.count(-1) > 1:
        raise a.error("shape", a.raw("shape"), accepted)
    known = num_elements([d for d in shape if d != -1])
    total = num_elements(x)
    if -1 in shape:
        if known == 0 or total % known:
            raise a.error("shape", a.raw("shape"), accepted)
        shape = tuple(total // known if d == -1 else d for d in shape)
    elif known != total:
        raise a.error("shape", a.raw("shape"), accepted)
    return shape


def reshape(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """x with a new ``shape`` (one -1 is inferred); same elements in C order."""
    a = Attrs("reshape", attrs, ("shape",))
    (x,) = check_inputs("reshape", inputs, 1, 1, ("x",))
    check_dtypes("reshape", [x], SHAPE_DTYPES, ("x",))
    return xp.reshape(x, _reshape_plan(a, shape_of(x)))


def reshape_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """0: data movement."""
    a = Attrs("reshape", attrs, ("shape",))
    (x,) = check_shapes("reshape", input_shapes, 1, 1, ("x",))
    _reshape_plan(a, x)
    return 0


def _perm(a: Attrs, x: tuple[int, ...]) -> tuple[int, ...]:
    perm = a.get_ints("perm")
    if perm is None:
        return tuple(reversed(range(len(x))))
    if sorted(perm) != list(range(len(x))):
        raise a.error("perm", a.raw("perm"), f"a permutation of 0..{len(x) - 1} for the {len(x)}-D input {x}")
    return perm


def transpose(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Permute the axes of x by ``perm`` (default: reverse them)."""
    a = Attrs("transpose", attrs, ("perm",))
    (x,) = check_inputs("transpose", inputs, 1, 1, ("x",))
    check_dtypes("transpose", [x], SHAPE_DTYPES, ("x",))
    return xp.transpose(x, _perm(a, shape_of(x)))


def transpose_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """0: data movement."""
    a = Attrs("transpose", attrs, ("perm",))
    (x,) = check_shapes("transpose", input_shapes, 1, 1, ("x",))
    _perm(a, x)
    return 0


def _concat_axis(a: Attrs, shapes: Sequence[tuple[int, ...]]) -> int:
    first = shapes[0]
    if len(first) == 0:
        raise KernelError("kernel 'concat': inputs must be at least 1-D, input 0 is 0-D")
    axis = normalize_axis("concat", "axis", a.get_int("axis", 0), len(first))
    for i, s in enumerate(shapes[1:], start=1):
        if len(s) != len(first) or any(d != e for j, (d, e) in enumerate(zip(s, first, strict=True)) if j != axis):
            raise KernelError(
                f"kernel 'concat': input {i} has shape {s}, input 0 has {first}; along axis {axis} they must "
                "have the same number of dimensions and agree on every other dimension"
            )
    return axis


def concat(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Join inputs (one or more, same dtype) along ``axis`` (default 0)."""
    a = Attrs("concat", attrs, ("axis",))
    arrays = check_inputs("concat", inputs, 1, _MANY, ("x0", "x1", "..."))
    check_dtypes("concat", arrays, SHAPE_DTYPES, [f"x{i}" for i in range(len(arrays))])
    axis = _concat_axis(a, [shape_of(t) for t in arrays])
    return xp.concatenate(arrays, axis=axis)


def concat_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """0: data movement."""
    a = Attrs("concat", attrs, ("axis",))
    _concat_axis(a, check_shapes("concat", input_shapes, 1, _MANY, ("x0", "x1", "...")))
    return 0


_SLICE_ATTRS = ("starts", "ends", "axes", "steps")


def _slice_plan(a: Attrs, x: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    """(index tuple, output shape) of an ONNX-style slice of shape ``x``."""
    starts = a.get_required_ints("starts")
    ends = a.get_required_ints("ends")
    n = len(starts)
    if len(ends) != n:
        raise a.error("ends", a.raw("ends"), f"as many entries as starts ({n})")
    axes = a.get_ints("axes")
    if axes is None:
        axes = tuple(range(n))
    elif len(axes) != n:
        raise a.error("axes", a.raw("axes"), f"as many entries as starts ({n})")
    steps = a.get_ints("steps")
    if steps is None:
        steps = (1,) * n
    elif len(steps) != n or 0 in steps:
        raise a.error("steps", a.raw("steps"), f"{n} non-zero ints (one per entry of starts)")
    norm = [normalize_axis("slice", "axes", ax, len(x)) for ax in axes]
    if len(set(norm)) != len(norm):
        raise a.error("axes", a.raw("axes"), f"distinct axes of the {len(x)}-D input {x}")
    index = [slice(None)] * len(x)
    for ax, s, e, st in zip(norm, starts, ends, steps, strict=True):
        index[ax] = slice(s, e, st)
    out = tuple(len(range(d)[sl]) for d, sl in zip(x, index, strict=True))
    return tuple(index), out


def slice_(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """x[starts:ends:steps] on ``axes`` (ONNX Slice semantics, NumPy clamping)."""
    a = Attrs("slice", attrs, _SLICE_ATTRS)
    (x,) = check_inputs("slice", inputs, 1, 1, ("x",))
    check_dtypes("slice", [x], SHAPE_DTYPES, ("x",))
    index, _ = _slice_plan(a, shape_of(x))
    return x[index]


def slice_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """0: data movement."""
    a = Attrs("slice", attrs, _SLICE_ATTRS)
    (x,) = check_shapes("slice", input_shapes, 1, 1, ("x",))
    _slice_plan(a, x)
    return 0


def _one_input(kernel: str, specs: Sequence[TensorSpec]) -> tuple[tuple[int, ...], str]:
    (x,), dtypes = check_specs(kernel, specs, 1, 1, ("x",))
    return x, check_dtype_names(kernel, dtypes, SHAPE_DTYPES, ("x",))


def reshape_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """The target ``shape`` (its -1 resolved), in x's dtype."""
    a = Attrs("reshape", attrs, ("shape",))
    x, dt = _one_input("reshape", specs)
    return TensorSpec(_reshape_plan(a, x), dt)


def transpose_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """x's dimensions in ``perm`` order, in x's dtype."""
    a = Attrs("transpose", attrs, ("perm",))
    x, dt = _one_input("transpose", specs)
    return TensorSpec(tuple(x[i] for i in _perm(a, x)), dt)


def concat_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """Input 0's shape with the ``axis`` dimensions summed, in the inputs' (common) dtype."""
    a = Attrs("concat", attrs, ("axis",))
    shapes, dtypes = check_specs("concat", specs, 1, _MANY, ("x0", "x1", "..."))
    dt = check_dtype_names("concat", dtypes, SHAPE_DTYPES, [f"x{i}" for i in range(len(dtypes))])
    axis = _concat_axis(a, shapes)
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return TensorSpec(tuple(out), dt)


def slice_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """The sliced shape (NumPy clamping), in x's dtype."""
    a = Attrs("slice", attrs, _SLICE_ATTRS)
    x, dt = _one_input("slice", specs)
    return TensorSpec(_slice_plan(a, x)[1], dt)
