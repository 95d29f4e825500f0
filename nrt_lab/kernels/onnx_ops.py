"""Kernels with ONNX semantics (opsets 13-21), named ``onnx.<OpType>``: what the ONNX compiler lowers to.

Each op is one :class:`OnnxOp`: ``infer(shapes, dtypes, attrs) -> (shape, dtype)`` (the one shape rule, used
by the graph builder, the runtime's load check and the compiler's constant folding), ``compute(xp, arrays,
attrs)`` written once against ``xp`` (NumPy or CuPy) and ``flops(shapes, attrs)``. The wrapper made by
:func:`kernel_parts` validates the inputs with ``infer`` before computing and checks the result against it, so
a kernel never returns something its inference did not promise.

Tensor inputs that ONNX passes as constant tensors (Reshape's shape, Slice's starts/ends, Pad's pads, Resize's
scales/sizes, reduction axes, Clip's bounds, Expand's shape, Tile's repeats) are attributes here: the compiler
folds them to constants and moves them into ``attrs`` under the ONNX input's name.

Dtypes: float32, float16, bfloat16 (computed in float32, cast back once), int8/int32/int64 where the op takes
integers, and uint8, which also carries ONNX ``bool`` (NEFFs have no bool dtype): comparisons return uint8 0/1
and logical ops read any non-zero as true.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nrt_lab.kernels._common import Attrs, TensorSpec, check_specs, dtype_name, normalize_axis
from nrt_lab.kernels.errors import KernelError

__all__ = ["FLOATS", "INTS", "ONNX_DTYPES", "OnnxOp", "ONNX_OPS", "kernel_parts", "erf", "op_names"]

FLOATS: tuple[str, ...] = ("float32", "float16", "bfloat16")
INTS: tuple[str, ...] = ("int8", "int32", "int64", "uint8")
ONNX_DTYPES: tuple[str, ...] = FLOATS + INTS
_NUMERIC_SIGNED = FLOATS + ("int8", "int32", "int64")
_LOW = {"float16", "bfloat16"}

Shapes = Sequence[tuple[int, ...]]
InferFn = Callable[[str, Shapes, Sequence[str], Attrs], tuple[tuple[int, ...], str]]
ComputeFn = Callable[[Any, Sequence[Any], Attrs, tuple[tuple[int, ...], str]], Any]
FlopsFn = Callable[[Shapes, tuple[int, ...], Attrs], int]


@dataclass(frozen=True)
class OnnxOp:
    """One ONNX op: its kernel name, input arity, attributes, dtypes, inference, compute and FLOP rule."""

    op_type: str
    min_inputs: int
    max_inputs: int
    attrs: tuple[str, ...]
    dtypes: tuple[str, ...]
    infer: InferFn
    compute: ComputeFn
    flops: FlopsFn
    doc: str

    @property
    def name(self) -> str:
        """The kernel name: ``onnx.<OpType>``."""
        return f"onnx.{self.op_type}"


def _size(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)


def _up(xp: Any, a: Any) -> Any:
    return a.astype(xp.float32) if dtype_name(a.dtype) in _LOW else a


def _contig(xp: Any, a: Any) -> Any:
    """A C-contiguous array of the same shape (``ascontiguousarray`` would make a 0-d array 1-d)."""
    return xp.ascontiguousarray(a) if a.ndim else a.copy()


def _np_dtype(name: str) -> Any:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _same_dtype(kernel: str, dtypes: Sequence[str], accepted: Sequence[str], names: str = "inputs") -> str:
    for i, d in enumerate(dtypes):
        if d not in accepted:
            raise KernelError(f"kernel '{kernel}' does not accept dtype {d} (input {i}); accepted dtypes: "
                              f"{', '.join(accepted)}")
        if d != dtypes[0]:
            raise KernelError(f"kernel '{kernel}': {names} must share one dtype, input 0 is {dtypes[0]} and "
                              f"input {i} is {d}")
    return dtypes[0]


def _bcast(kernel: str, shapes: Shapes) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise KernelError(f"kernel '{kernel}': input shapes {', '.join(map(str, shapes))} do not broadcast "
                          "(ONNX multidirectional broadcasting: trailing dimensions equal or 1)") from None


def _axes(a: Attrs, key: str, ndim: int, kernel: str) -> tuple[int, ...] | None:
    raw = a.get_ints(key, allow_scalar=True)
    if raw is None:
        return None
    out = tuple(normalize_axis(kernel, key, int(x), ndim) for x in raw)
    if len(set(out)) != len(out):
        raise a.error(key, list(raw), "distinct axes")
    return out


# ------------------------------------------------------------------------------------------------ erf

def erf(xp: Any, x: Any) -> Any:
    """The error function of a float32 array, in float32 (fractional error of the fit below 1.2e-7: Numerical
    Recipes' Chebyshev fit of erfc; below 0.5 the power series, where 1 - erfc would cancel). Computed in place
    on two temporaries: GELU calls it on the widest activations of a transformer."""
    shape = x.shape
    x = x.astype(xp.float32, copy=False).reshape(-1)  # 1-D: in-place ufuncs need arrays, never 0-d scalars
    z = xp.abs(x)
    t = z * 0.5
    t += 1.0
    xp.reciprocal(t, out=t)
    out = t * 0.17087277
    out -= 0.82215223
    for c in (1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196, 1.00002368):
        out *= t
        out += c
    out *= t
    out -= 1.26551223
    z2 = z * z
    out -= z2
    xp.exp(out, out=out)
    out *= t
    xp.subtract(1.0, out, out=out)
    # Maclaurin series where 1 - erfc cancels (|x| < 0.5), evaluated in place in t, which is free now
    xp.multiply(z2, 1 / 1320, out=t)
    for c in (1 / 216, 1 / 42, 1 / 10, 1 / 3, 1.0):
        xp.subtract(c, t, out=t)
        if c != 1.0:
            t *= z2
    t *= z
    t *= 2 / math.sqrt(math.pi)
    xp.copyto(out, t, where=z < 0.5)
    xp.copysign(out, x, out=out)
    return out.reshape(shape)


# ------------------------------------------------------------------------------------------------ registry

ONNX_OPS: dict[str, OnnxOp] = {}


def _op(op_type: str, n: tuple[int, int], attrs: tuple[str, ...], dtypes: tuple[str, ...], infer: InferFn,
        flops: FlopsFn, doc: str) -> Callable[[ComputeFn], ComputeFn]:
    def register(compute: ComputeFn) -> ComputeFn:
        ONNX_OPS[op_type] = OnnxOp(op_type, n[0], n[1], attrs, dtypes, infer, compute, flops, doc)
        return compute

    return register


def _run_infer(op: OnnxOp, specs: Any, attrs: Mapping[str, Any]) -> tuple[tuple[int, ...], str]:
    kernel = op.name
    shapes, dtypes = check_specs(kernel, specs, op.min_inputs, op.max_inputs, [f"x{i}" for i in range(8)])
    a = Attrs(kernel, attrs, op.attrs)
    if op.dtypes:
        for i, d in enumerate(dtypes):
            if d not in op.dtypes:
                raise KernelError(f"kernel '{kernel}' does not accept dtype {d} (input {i}); accepted dtypes: "
                                  f"{', '.join(op.dtypes)}")
    return op.infer(kernel, shapes, dtypes, a)


def kernel_parts(op: OnnxOp) -> tuple[Callable[..., Any], Callable[..., int], Callable[..., TensorSpec]]:
    """(fn, flops, infer) of the registry's Kernel for ``op``: fn checks with infer before and after computing."""

    def infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
        shape, dtype = _run_infer(op, specs, attrs)
        return TensorSpec(shape, dtype)

    def fn(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise KernelError(f"kernel '{op.name}': inputs must be a sequence of arrays, got {type(inputs).__name__}")
        for i, x in enumerate(inputs):
            if not (hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "astype")):
                raise KernelError(f"kernel '{op.name}': input {i} is a {type(x).__name__}, expected an array")
        specs = [TensorSpec(tuple(int(d) for d in x.shape), dtype_name(x.dtype)) for x in inputs]
        out_spec = _run_infer(op, specs, attrs)
        a = Attrs(op.name, attrs, op.attrs)
        try:
            out = op.compute(xp, list(inputs), a, out_spec)
        except KernelError:
            raise
        except (ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError) as exc:
            raise KernelError(f"kernel '{op.name}' failed on inputs {[tuple(s.shape) for s in specs]}: {exc}") \
                from None
        out = xp.asarray(out)
        if dtype_name(out.dtype) != out_spec[1]:
            out = out.astype(_np_dtype(out_spec[1]) if xp is np else (xp.float32 if out_spec[1] == "bfloat16"
                                                                          else out_spec[1]))
        if tuple(int(d) for d in out.shape) != out_spec[0]:
            raise KernelError(f"kernel '{op.name}' computed shape {tuple(out.shape)} but its inference says "
                              f"{out_spec[0]} (a bug in nrt_lab: please report it)")
        return out

    def flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
        shapes = [tuple(int(d) for d in s) for s in input_shapes]
        a = Attrs(op.name, attrs, op.attrs)
        try:
            out_shape = op.infer(op.name, shapes, [op.dtypes[0] if op.dtypes else "float32"] * len(shapes), a)[0]
        except KernelError:
            out_shape = shapes[0] if shapes else ()
        return int(op.flops(shapes, out_shape, a))

    return fn, flops, infer


def _per_out(n: int) -> FlopsFn:
    return lambda shapes, out, a: n * _size(out)


def _zero(shapes: Shapes, out: tuple[int, ...], a: Attrs) -> int:
    return 0


def _per_in(n: int) -> FlopsFn:
    return lambda shapes, out, a: n * (_size(shapes[0]) if shapes else 0)


# ------------------------------------------------------------------------------------------------ elementwise

def _same_infer(accepted: tuple[str, ...]) -> InferFn:
    def infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
        return shapes[0], _same_dtype(kernel, dtypes[:1], accepted)

    return infer


_UNARY_FLOAT: dict[str, tuple[int, Callable[[Any, Any, Attrs], Any], tuple[str, ...], str]] = {
    "Relu": (1, lambda xp, x, a: xp.maximum(x, 0), (), "max(x, 0)"),
    "Sigmoid": (4, lambda xp, x, a: 0.5 * (xp.tanh(0.5 * x) + 1), (), "1/(1+exp(-x))"),
    "Tanh": (4, lambda xp, x, a: xp.tanh(x), (), "tanh(x)"),
    "Exp": (1, lambda xp, x, a: xp.exp(x), (), "exp(x)"),
    "Log": (1, lambda xp, x, a: xp.log(x), (), "log(x)"),
    "Sqrt": (1, lambda xp, x, a: xp.sqrt(x), (), "sqrt(x)"),
    "Reciprocal": (1, lambda xp, x, a: 1 / x, (), "1/x"),
    "Erf": (10, lambda xp, x, a: erf(xp, x), (), "erf(x)"),
    "Floor": (1, lambda xp, x, a: xp.floor(x), (), "floor(x)"),
    "Ceil": (1, lambda xp, x, a: xp.ceil(x), (), "ceil(x)"),
    "Round": (1, lambda xp, x, a: xp.round(x), (), "round half to even"),
    "Sin": (1, lambda xp, x, a: xp.sin(x), (), "sin(x)"),
    "Cos": (1, lambda xp, x, a: xp.cos(x), (), "cos(x)"),
    "Softplus": (3, lambda xp, x, a: xp.logaddexp(x, 0), (), "log(1+exp(x))"),
    "Softsign": (3, lambda xp, x, a: x / (1 + xp.abs(x)), (), "x/(1+|x|)"),
    "Gelu": (8, lambda xp, x, a: _gelu(xp, x, a), ("approximate",), "x*Phi(x); approximate='none'|'tanh'"),
    "HardSwish": (4, lambda xp, x, a: x * xp.clip(x / 6 + 0.5, 0, 1), (), "x*max(0,min(1,x/6+1/2))"),
    "HardSigmoid": (3, lambda xp, x, a: xp.clip(a.get_float("alpha", 0.2) * x + a.get_float("beta", 0.5), 0, 1),
                    ("alpha", "beta"), "max(0,min(1,alpha*x+beta)); alpha=0.2, beta=0.5"),
    "LeakyRelu": (2, lambda xp, x, a: xp.where(x >= 0, x, a.get_float("alpha", 0.01) * x), ("alpha",),
                  "x if x>=0 else alpha*x; alpha=0.01"),
    "Elu": (3, lambda xp, x, a: xp.where(x > 0, x, a.get_float("alpha", 1.0) * xp.expm1(xp.minimum(x, 0))),
            ("alpha",), "x if x>0 else alpha*(exp(x)-1)"),
    "Selu": (4, lambda xp, x, a: a.get_float("gamma", 1.0507009873554805) * xp.where(
        x > 0, x, a.get_float("alpha", 1.6732632423543772) * xp.expm1(xp.minimum(x, 0))), ("alpha", "gamma"),
             "gamma*(x if x>0 else alpha*(exp(x)-1))"),
    "Mish": (6, lambda xp, x, a: x * xp.tanh(xp.logaddexp(x, 0)), (), "x*tanh(softplus(x))"),
}


def _gelu(xp: Any, x: Any, a: Attrs) -> Any:
    approx = a.raw("approximate") or "none"
    if approx == "tanh":
        return 0.5 * x * (1 + xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if approx != "none":
        raise a.error("approximate", approx, "'none' or 'tanh'")
    y = erf(xp, x * (1 / math.sqrt(2)))
    y += 1.0
    y *= x
    y *= 0.5
    return y


def _register_unary_float(name: str, ops: int, f: Callable[[Any, Any, Attrs], Any], attrs: tuple[str, ...],
                          doc: str) -> None:
    def compute(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
        return f(xp, _up(xp, xs[0]), a)

    def infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
        for key in attrs:
            if key == "approximate":
                if (a.raw(key) or "none") not in ("none", "tanh"):
                    raise a.error(key, a.raw(key), "'none' or 'tanh'")
            elif a.has(key):
                a.get_float(key)
        return shapes[0], _same_dtype(kernel, dtypes[:1], FLOATS)

    _op(name, (1, 1), attrs, FLOATS, infer, _per_out(ops),
        f"onnx.{name}(x): {doc}. FLOPs: {ops} per element.")(compute)


for _name, (_ops, _f, _attrs, _doc) in _UNARY_FLOAT.items():
    _register_unary_float(_name, _ops, _f, _attrs, _doc)


@_op("Neg", (1, 1), (), _NUMERIC_SIGNED, _same_infer(_NUMERIC_SIGNED), _per_out(1), "onnx.Neg(x): -x. FLOPs: 1/el.")
def _neg(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return -_up(xp, xs[0])


@_op("Abs", (1, 1), (), ONNX_DTYPES, _same_infer(ONNX_DTYPES), _per_out(1), "onnx.Abs(x): |x|. FLOPs: 1/el.")
def _abs(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return xp.abs(_up(xp, xs[0]))


@_op("Sign", (1, 1), (), ONNX_DTYPES, _same_infer(ONNX_DTYPES), _per_out(1), "onnx.Sign(x). FLOPs: 1/el.")
def _sign(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return xp.sign(_up(xp, xs[0]))


@_op("Identity", (1, 1), (), ONNX_DTYPES, _same_infer(ONNX_DTYPES), _zero, "onnx.Identity(x): a copy. FLOPs: 0.")
def _identity(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return xs[0].copy()


@_op("Not", (1, 1), (), ("uint8",), _same_infer(("uint8",)), _per_out(1),
     "onnx.Not(x): logical not of a bool (uint8) tensor. FLOPs: 1/el.")
def _not(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return (xs[0] == 0).astype(xp.uint8)


def _clip_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    for key in ("min", "max"):
        if a.has(key):
            a.get_float(key)
    return shapes[0], dtypes[0]


@_op("Clip", (1, 1), ("min", "max"), _NUMERIC_SIGNED + ("uint8",), _clip_infer, _per_out(2),
     "onnx.Clip(x): min(max(x, min), max); attrs min, max (absent: unbounded). FLOPs: 2/el.")
def _clip(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = _up(xp, xs[0])
    lo = a.get_float("min") if a.has("min") else None
    hi = a.get_float("max") if a.has("max") else None
    if lo is not None:
        x = xp.maximum(x, xp.asarray(lo).astype(x.dtype))
    if hi is not None:
        x = xp.minimum(x, xp.asarray(hi).astype(x.dtype))
    return x


_DTYPE_NAMES = ("float32", "float16", "bfloat16", "int8", "int32", "int64", "uint8", "bool")


def _cast_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    to = a.raw("to")
    if to not in _DTYPE_NAMES:
        raise a.error("to", to, ", ".join(_DTYPE_NAMES))
    return shapes[0], "uint8" if to == "bool" else str(to)


@_op("Cast", (1, 1), ("to",), ONNX_DTYPES, _cast_infer, _zero,
     "onnx.Cast(x): to a dtype name ('bool' gives uint8 0/1, floats to ints truncate). FLOPs: 0.")
def _cast(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
    x = xs[0]
    if a.raw("to") == "bool":
        return (x != 0).astype(xp.uint8)
    if out[1] in INTS and dtype_name(x.dtype) in FLOATS:
        x = xp.trunc(_up(xp, x))
    if xp is np:
        return x.astype(_np_dtype(out[1]))
    return x.astype(xp.float32 if out[1] == "bfloat16" else out[1])


# ------------------------------------------------------------------------------------------------ binary

def _binary_infer(accepted: tuple[str, ...], result: str | None = None) -> InferFn:
    def infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
        dt = _same_dtype(kernel, dtypes, accepted)
        return _bcast(kernel, shapes), result or dt

    return infer


def _int_div(xp: Any, x: Any, y: Any) -> Any:
    q = xp.floor_divide(x, xp.where(y == 0, 1, y))
    fix = (q * y != x) & ((x < 0) != (y < 0))
    return q + fix.astype(q.dtype)  # truncate towards zero, like C and ONNX


def _pow(xp: Any, x: Any, y: Any) -> Any:
    return xp.power(x, y)


_BINARY: dict[str, tuple[Callable[[Any, Any, Any], Any], tuple[str, ...], str | None, int]] = {
    "Add": (lambda xp, x, y: x + y, ONNX_DTYPES, None, 1),
    "Sub": (lambda xp, x, y: x - y, ONNX_DTYPES, None, 1),
    "Mul": (lambda xp, x, y: x * y, ONNX_DTYPES, None, 1),
    "Div": (lambda xp, x, y: _int_div(xp, x, y) if x.dtype.kind in "iu" else x / y, ONNX_DTYPES, None, 1),
    "Pow": (_pow, FLOATS, None, 2),
    "Mod": (lambda xp, x, y: xp.mod(x, xp.where(y == 0, 1, y)), INTS, None, 1),
    "Equal": (lambda xp, x, y: x == y, ONNX_DTYPES, "uint8", 1),
    "Less": (lambda xp, x, y: x < y, ONNX_DTYPES, "uint8", 1),
    "LessOrEqual": (lambda xp, x, y: x <= y, ONNX_DTYPES, "uint8", 1),
    "Greater": (lambda xp, x, y: x > y, ONNX_DTYPES, "uint8", 1),
    "GreaterOrEqual": (lambda xp, x, y: x >= y, ONNX_DTYPES, "uint8", 1),
    "And": (lambda xp, x, y: (x != 0) & (y != 0), ("uint8",), "uint8", 1),
    "Or": (lambda xp, x, y: (x != 0) | (y != 0), ("uint8",), "uint8", 1),
    "Xor": (lambda xp, x, y: (x != 0) ^ (y != 0), ("uint8",), "uint8", 1),
    "PRelu": (lambda xp, x, y: xp.where(x >= 0, x, x * y), FLOATS, None, 2),
}


def _register_binary(name: str, f: Callable[[Any, Any, Any], Any], accepted: tuple[str, ...], result: str | None,
                     ops: int) -> None:
    def compute(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
        return f(xp, _up(xp, xs[0]), _up(xp, xs[1]))

    _op(name, (2, 2), (), accepted, _binary_infer(accepted, result), _per_out(ops),
        f"onnx.{name}(a, b): elementwise with broadcasting. FLOPs: {ops} per output element.")(compute)


for _name, (_bf, _acc, _res, _ops) in _BINARY.items():
    _register_binary(_name, _bf, _acc, _res, _ops)


def _variadic(name: str, f: Callable[[Any, Any, Any], Any], mean: bool = False) -> None:
    def compute(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
        acc = _up(xp, xs[0])
        for x in xs[1:]:
            acc = f(xp, acc, _up(xp, x))
        return acc / len(xs) if mean else acc

    accepted = FLOATS if mean else ONNX_DTYPES
    _op(name, (1, 64), (), accepted, _binary_infer(accepted), _per_out(1),
        f"onnx.{name}(x0, ...): elementwise over 1..64 inputs with broadcasting. FLOPs: 1 per output element "
        "per extra input.")(compute)


_variadic("Max", lambda xp, x, y: xp.maximum(x, y))
_variadic("Min", lambda xp, x, y: xp.minimum(x, y))
_variadic("Sum", lambda xp, x, y: x + y)
_variadic("Mean", lambda xp, x, y: x + y, mean=True)


def _where_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    if dtypes[0] != "uint8":
        raise KernelError(f"kernel '{kernel}': the condition (input 0) must be bool (uint8), got {dtypes[0]}")
    dt = _same_dtype(kernel, dtypes[1:], ONNX_DTYPES, "x and y")
    return _bcast(kernel, shapes), dt


@_op("Where", (3, 3), (), ONNX_DTYPES, _where_infer, _per_out(1),
     "onnx.Where(cond uint8, x, y): x where cond else y, with broadcasting. FLOPs: 1/el.")
def _where(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return xp.where(xs[0] != 0, xs[1], xs[2])


# ------------------------------------------------------------------------------------------------ linear algebra

def _matmul_shape(kernel: str, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if not a or not b:
        raise KernelError(f"kernel '{kernel}': inputs must be at least 1-D, got {a} and {b}")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise KernelError(f"kernel '{kernel}': inner dimensions differ: {a} @ {b}")
    batch = _bcast(kernel, [a2[:-2], b2[:-2]])
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _matmul_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS + ("int32", "int64"))
    return _matmul_shape(kernel, shapes[0], shapes[1]), dt


def _matmul_flops(shapes: Shapes, out: tuple[int, ...], a: Attrs) -> int:
    k = shapes[0][-1] if shapes and shapes[0] else 0
    return 2 * _size(out) * k


@_op("MatMul", (2, 2), (), FLOATS + ("int32", "int64"), _matmul_infer, _matmul_flops,
     "onnx.MatMul(a, b): numpy matmul semantics with batch broadcasting. FLOPs: 2*K per output element.")
def _matmul(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x, w = _up(xp, xs[0]), _up(xp, xs[1])
    if x.ndim > 2 and w.ndim == 2 and x.flags.c_contiguous:
        # (..., M, K) @ (K, N) as one (prod(...)*M, K) GEMM: BLAS does better with one tall matrix than a loop
        return xp.matmul(x.reshape(-1, x.shape[-1]), w).reshape(out[0])
    return xp.matmul(x, w)


def _gemm_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS)
    sa, sb = shapes[0], shapes[1]
    if len(sa) != 2 or len(sb) != 2:
        raise KernelError(f"kernel '{kernel}': A and B must be 2-D, got {sa} and {sb}")
    ta, tb = a.get_bool("transA", False), a.get_bool("transB", False)
    a.get_float("alpha", 1.0), a.get_float("beta", 1.0)
    m, k = (sa[1], sa[0]) if ta else sa
    k2, n = (sb[1], sb[0]) if tb else sb
    if k != k2:
        raise KernelError(f"kernel '{kernel}': inner dimensions differ: A {sa} (transA={ta}) and B {sb} "
                          f"(transB={tb})")
    if len(shapes) > 2:
        _bcast(kernel, [(m, n), shapes[2]])
        if len(_bcast(kernel, [(m, n), shapes[2]])) != 2 or _bcast(kernel, [(m, n), shapes[2]]) != (m, n):
            raise KernelError(f"kernel '{kernel}': C {shapes[2]} does not broadcast to ({m}, {n})")
    return (m, n), dt


@_op("Gemm", (2, 3), ("alpha", "beta", "transA", "transB"), FLOATS, _gemm_infer,
     lambda s, o, a: 2 * _size(o) * (s[0][0] if a.get_bool("transA", False) else s[0][1]) + 2 * _size(o),
     "onnx.Gemm(A, B[, C]): alpha*A'@B' + beta*C. FLOPs: 2*M*N*K + 2*M*N.")
def _gemm(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x, w = _up(xp, xs[0]), _up(xp, xs[1])
    if a.get_bool("transA", False):
        x = x.T
    if a.get_bool("transB", False):
        w = w.T
    y = xp.matmul(x, w)
    alpha = a.get_float("alpha", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if len(xs) > 2:
        beta = a.get_float("beta", 1.0)
        y = y + (beta * _up(xp, xs[2]) if beta != 1.0 else _up(xp, xs[2]))
    return y


def _einsum_parse(kernel: str, eq: Any, shapes: Shapes) -> tuple[list[str], str, dict[str, int]]:
    if not isinstance(eq, str) or len(eq) > 200:
        raise KernelError(f"kernel '{kernel}': attribute 'equation' must be a string, got {eq!r}")
    eq = eq.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise KernelError(f"kernel '{kernel}': equation {eq!r} has {len(terms)} operand(s) but {len(shapes)} "
                          "input(s) were given")
    letters = set(string.ascii_letters)
    dims: dict[str, int] = {}
    ell: tuple[int, ...] | None = None
    for term, shape in zip(terms, shapes, strict=True):
        named = term.replace("...", "")
        if any(c not in letters for c in named) or term.count("...") > 1:
            raise KernelError(f"kernel '{kernel}': equation {eq!r}: term {term!r} is not letters and '...'")
        n_ell = len(shape) - len(named)
        if n_ell < 0 or (n_ell and "..." not in term):
            raise KernelError(f"kernel '{kernel}': term {term!r} does not match input shape {shape}")
        before = term.index("...") if "..." in term else len(named)
        for i, c in enumerate(named):
            d = shape[i if i < before else i + n_ell]
            if dims.get(c, d) != d and d != 1 and dims[c] != 1:
                raise KernelError(f"kernel '{kernel}': index {c!r} is {dims[c]} in one input and {d} in another")
            dims[c] = max(dims.get(c, d), d)
        if "..." in term:
            part = shape[before:before + n_ell]
            ell = part if ell is None else _bcast(kernel, [ell, part])
    if not arrow:
        counts = {c: lhs.count(c) for c in set(lhs) if c in letters}
        rhs = ("..." if ell is not None else "") + "".join(sorted(c for c, k in counts.items() if k == 1))
    if any(c not in letters for c in rhs.replace("...", "")) or len(set(rhs.replace("...", ""))) != len(
            rhs.replace("...", "")):
        raise KernelError(f"kernel '{kernel}': output term {rhs!r} is not distinct letters")
    for c in rhs.replace("...", ""):
        if c not in dims:
            raise KernelError(f"kernel '{kernel}': output index {c!r} appears in no input")
    dims["..."] = 0
    return terms, rhs, {**dims, **({"#ell": len(ell)} if ell is not None else {})} | (
        {f"#e{i}": d for i, d in enumerate(ell)} if ell is not None else {})


def _einsum_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS + ("int32", "int64"))
    _, rhs, dims = _einsum_parse(kernel, a.raw("equation"), shapes)
    out: list[int] = []
    pieces = rhs.split("...")
    out += [dims[c] for c in pieces[0]]
    if len(pieces) > 1:
        out += [dims[f"#e{i}"] for i in range(dims.get("#ell", 0))]
        out += [dims[c] for c in pieces[1]]
    return tuple(out), dt


def _einsum_flops(shapes: Shapes, out: tuple[int, ...], a: Attrs) -> int:
    try:
        _, _, dims = _einsum_parse("onnx.Einsum", a.raw("equation"), shapes)
    except KernelError:
        return 0
    total = 1
    for c, d in dims.items():
        if not c.startswith("#") and c != "...":
            total *= d
    for i in range(dims.get("#ell", 0)):
        total *= dims[f"#e{i}"]
    return 2 * total


@_op("Einsum", (1, 8), ("equation",), FLOATS + ("int32", "int64"), _einsum_infer, _einsum_flops,
     "onnx.Einsum(x0, ...): Einstein summation; attr equation. FLOPs: 2 per point of the index space.")
def _einsum(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return xp.einsum(str(a.raw("equation")).replace(" ", ""), *[_up(xp, x) for x in xs], optimize=True)


# ------------------------------------------------------------------------------------------------ normalization

def _axis_infer(accepted: tuple[str, ...], default: int) -> InferFn:
    def infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
        dt = _same_dtype(kernel, dtypes[:1], accepted)
        if not shapes[0]:
            raise KernelError(f"kernel '{kernel}': input must be at least 1-D, got a scalar")
        normalize_axis(kernel, "axis", a.get_int("axis", default), len(shapes[0]))
        return shapes[0], dt

    return infer


def _softmax_core(xp: Any, x: Any, axis: int, log: bool) -> Any:
    if x.size == 0:
        return x.copy()
    m = xp.max(x, axis=axis, keepdims=True)
    e = x - m
    if log:
        return e - xp.log(xp.sum(xp.exp(e), axis=axis, keepdims=True))
    e = xp.exp(e)
    return e / xp.sum(e, axis=axis, keepdims=True)


@_op("Softmax", (1, 1), ("axis",), FLOATS, _axis_infer(FLOATS, -1), _per_out(5),
     "onnx.Softmax(x): along axis (default -1), stable. FLOPs: 5/el.")
def _softmax(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return _softmax_core(xp, _up(xp, xs[0]), a.get_int("axis", -1), False)


@_op("LogSoftmax", (1, 1), ("axis",), FLOATS, _axis_infer(FLOATS, -1), _per_out(5),
     "onnx.LogSoftmax(x): along axis (default -1), stable. FLOPs: 5/el.")
def _log_softmax(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return _softmax_core(xp, _up(xp, xs[0]), a.get_int("axis", -1), True)


def _ln_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS)
    x = shapes[0]
    if not x:
        raise KernelError(f"kernel '{kernel}': input must be at least 1-D")
    axis = normalize_axis(kernel, "axis", a.get_int("axis", -1), len(x))
    a.get_float("epsilon", 1e-5)
    for i, s in enumerate(shapes[1:], start=1):
        try:
            b = np.broadcast_shapes(x[axis:], s)
        except ValueError:
            b = None
        if b != x[axis:]:
            raise KernelError(f"kernel '{kernel}': input {i} {s} does not broadcast to the normalized shape "
                              f"{x[axis:]}")
    return x, dt


@_op("LayerNormalization", (2, 3), ("axis", "epsilon", "stash_type"), FLOATS, _ln_infer, _per_out(8),
     "onnx.LayerNormalization(x, scale[, bias]) over axis..-1. attrs axis=-1, epsilon=1e-5. FLOPs: 8/el.")
def _layer_norm(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = _up(xp, xs[0])
    axes = tuple(range(normalize_axis("onnx.LayerNormalization", "axis", a.get_int("axis", -1), x.ndim), x.ndim))
    mean = xp.mean(x, axis=axes, keepdims=True)
    d = x - mean
    var = xp.mean(d * d, axis=axes, keepdims=True)
    y = d / xp.sqrt(var + a.get_float("epsilon", 1e-5)) * _up(xp, xs[1])
    return y + _up(xp, xs[2]) if len(xs) > 2 else y


def _bn_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS)
    x = shapes[0]
    if len(x) < 2:
        raise KernelError(f"kernel '{kernel}': X must be at least 2-D (N, C, ...), got {x}")
    a.get_float("epsilon", 1e-5)
    for i, s in enumerate(shapes[1:], start=1):
        if s != (x[1],):
            raise KernelError(f"kernel '{kernel}': input {i} must have shape ({x[1]},), got {s}")
    return x, dt


@_op("BatchNormalization", (5, 5), ("epsilon", "momentum", "training_mode"), FLOATS, _bn_infer, _per_out(2),
     "onnx.BatchNormalization(X, scale, B, mean, var), inference mode. attrs epsilon=1e-5. FLOPs: 2/el.")
def _batch_norm(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    if a.get_bool("training_mode", False):
        raise a.error("training_mode", a.raw("training_mode"), "0 (inference)")
    x = _up(xp, xs[0])
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    scale, bias, mean, var = (_up(xp, t).reshape(shape) for t in xs[1:])
    inv = scale / xp.sqrt(var + a.get_float("epsilon", 1e-5))
    return x * inv + (bias - mean * inv)


def _inorm_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS)
    x = shapes[0]
    if len(x) < 3 or shapes[1] != (x[1],) or shapes[2] != (x[1],):
        raise KernelError(f"kernel '{kernel}': needs x (N, C, ...) and scale, B of shape (C,), got {shapes}")
    a.get_float("epsilon", 1e-5)
    return x, dt


@_op("InstanceNormalization", (3, 3), ("epsilon",), FLOATS, _inorm_infer, _per_out(8),
     "onnx.InstanceNormalization(x, scale, B). FLOPs: 8/el.")
def _instance_norm(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = _up(xp, xs[0])
    axes = tuple(range(2, x.ndim))
    mean = xp.mean(x, axis=axes, keepdims=True)
    var = xp.mean((x - mean) ** 2, axis=axes, keepdims=True)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    y = (x - mean) / xp.sqrt(var + a.get_float("epsilon", 1e-5))
    return y * _up(xp, xs[1]).reshape(shape) + _up(xp, xs[2]).reshape(shape)


# ------------------------------------------------------------------------------------------------ conv / pool

@dataclass(frozen=True)
class _Win:
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]  # begins then ends
    out: tuple[int, ...]


def _window(kernel_name: str, a: Attrs, spatial: tuple[int, ...], kshape: tuple[int, ...], ceil: bool) -> _Win:
    n = len(spatial)
    strides = a.get_ints("strides") or (1,) * n
    dil = a.get_ints("dilations") or (1,) * n
    if len(strides) != n or len(dil) != n or any(s < 1 for s in strides) or any(d < 1 for d in dil):
        raise a.error("strides/dilations", (strides, dil), f"{n} ints >= 1")
    auto = a.raw("auto_pad") or "NOTSET"
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise a.error("auto_pad", auto, "NOTSET, VALID, SAME_UPPER or SAME_LOWER")
    span = tuple(d * (k - 1) + 1 for d, k in zip(dil, kshape, strict=True))
    if auto == "NOTSET":
        pads = a.get_ints("pads") or (0,) * (2 * n)
        if len(pads) != 2 * n or any(p < 0 for p in pads):
            raise a.error("pads", list(pads), f"{2 * n} ints >= 0 (begins then ends)")
    elif auto == "VALID":
        pads = (0,) * (2 * n)
    else:
        begins, ends = [], []
        for size, s, sp in zip(spatial, strides, span, strict=True):
            total = max(0, (-(-size // s) - 1) * s + sp - size)
            small, big = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else big)
            ends.append(big if auto == "SAME_UPPER" else small)
        pads = tuple(begins + ends)
    out = []
    for i in range(n):
        full = spatial[i] + pads[i] + pads[i + n] - span[i]
        if full < 0:
            raise KernelError(f"kernel '{kernel_name}': the window {span[i]} on spatial axis {i} is larger than "
                              f"the padded input {spatial[i] + pads[i] + pads[i + n]}")
        o = (-(-full // strides[i]) if ceil else full // strides[i]) + 1
        if ceil and (o - 1) * strides[i] >= spatial[i] + pads[i]:
            o -= 1  # the last window must start inside the input or its left padding
        out.append(o)
    return _Win(tuple(kshape), tuple(strides), tuple(dil), tuple(pads), tuple(out))


def _taps(xp: Any, x: Any, win: _Win, pad_value: float, extra_end: tuple[int, ...] = ()) -> Any:
    """(N, C, K, *out): one strided view per kernel tap (im2col without pixel loops)."""
    n = len(win.kernel)
    ends = [win.pads[n + i] + (extra_end[i] if extra_end else 0) for i in range(n)]
    if any(win.pads[:n]) or any(ends):
        x = xp.pad(x, ((0, 0), (0, 0)) + tuple((win.pads[i], ends[i]) for i in range(n)), mode="constant",
                   constant_values=pad_value)
    views = []
    for tap in itertools.product(*(range(k) for k in win.kernel)):
        index = (slice(None), slice(None)) + tuple(
            slice(t * d, t * d + s * (o - 1) + 1, s)
            for t, d, s, o in zip(tap, win.dilations, win.strides, win.out, strict=True))
        views.append(x[index])
    return xp.stack(views, axis=2)


_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _conv_plan(kernel: str, shapes: Shapes, a: Attrs) -> tuple[_Win, int]:
    x, w = shapes[0], shapes[1]
    if len(x) < 3 or len(w) != len(x):
        raise KernelError(f"kernel '{kernel}': X (N, C, ...) and W (M, C/group, ...) of equal rank >= 3 needed, "
                          f"got {x} and {w}")
    group = a.get_int("group", 1, min_value=1)
    if min(w) < 1:
        raise KernelError(f"kernel '{kernel}': W {w} is empty; accepted: at least one filter, channel and tap")
    if x[1] % group or w[0] % group or w[1] * group != x[1]:
        raise KernelError(f"kernel '{kernel}': X {x}, W {w} and group={group} disagree (need C = W[1]*group and "
                          "M divisible by group)")
    ks = a.get_ints("kernel_shape")
    if ks is not None and tuple(ks) != w[2:]:
        raise a.error("kernel_shape", list(ks), f"W's spatial shape {list(w[2:])}")
    if len(shapes) > 2 and shapes[2] != (w[0],):
        raise KernelError(f"kernel '{kernel}': B must have shape ({w[0]},), got {shapes[2]}")
    return _window(kernel, a, x[2:], w[2:], False), group


def _conv_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS)
    win, _ = _conv_plan(kernel, shapes, a)
    return (shapes[0][0], shapes[1][0]) + win.out, dt


def _conv_flops(shapes: Shapes, out: tuple[int, ...], a: Attrs) -> int:
    w = shapes[1] if len(shapes) > 1 else ()
    return 2 * _size(out) * _size(w[1:]) + (_size(out) if len(shapes) > 2 else 0)


@_op("Conv", (2, 3), _CONV_ATTRS, FLOATS, _conv_infer, _conv_flops,
     "onnx.Conv(X, W[, B]): N-d convolution with group, dilations, pads, strides, auto_pad. "
     "FLOPs: 2*out*(C/group)*prod(kernel) (+ out with B).")
def _conv(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x, w = _up(xp, xs[0]), _up(xp, xs[1])
    win, g = _conv_plan("onnx.Conv", [tuple(x.shape), tuple(w.shape)], a)
    nb, c = x.shape[0], x.shape[1]
    m = w.shape[0]
    k = _size(win.kernel)
    pixels = _size(win.out)
    if k == 1 and not any(win.pads) and all(s == 1 for s in win.strides) and g == 1:
        y = xp.matmul(w.reshape(m, c), x.reshape(nb, c, pixels)).reshape((nb, m) + win.out)
    else:
        cols = _taps(xp, x, win, 0.0)  # (N, C, K, *out)
        cols = cols.reshape(nb, g, (c // g) * k, pixels)
        wg = w.reshape(g, m // g, (c // g) * k)
        y = xp.matmul(wg[None], cols).reshape((nb, m) + win.out)
    if len(xs) > 2:
        y = y + _up(xp, xs[2]).reshape((1, m) + (1,) * len(win.out))
    return y


def _convt_plan(kernel: str, shapes: Shapes, a: Attrs) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...],
                                                                 tuple[int, ...], int, tuple[int, ...]]:
    x, w = shapes[0], shapes[1]
    if len(x) < 3 or len(w) != len(x):
        raise KernelError(f"kernel '{kernel}': X (N, C, ...) and W (C, M/group, ...) of equal rank needed")
    n = len(x) - 2
    group = a.get_int("group", 1, min_value=1)
    if w[0] != x[1] or x[1] % group:
        raise KernelError(f"kernel '{kernel}': W {w} must have W[0] = C = {x[1]}, divisible by group={group}")
    if min(w) < 1:
        raise KernelError(f"kernel '{kernel}': W {w} is empty; accepted: at least one filter, channel and tap")
    strides = a.get_ints("strides") or (1,) * n
    dil = a.get_ints("dilations") or (1,) * n
    opad = a.get_ints("output_padding") or (0,) * n
    if len(strides) != n or len(dil) != n or len(opad) != n:
        raise a.error("strides/dilations/output_padding", (strides, dil, opad), f"{n} ints each")
    span = tuple(d * (k - 1) + 1 for d, k in zip(dil, w[2:], strict=True))
    full = tuple((x[2 + i] - 1) * strides[i] + span[i] + opad[i] for i in range(n))
    oshape = a.get_ints("output_shape")
    auto = a.raw("auto_pad") or "NOTSET"
    if oshape is not None:
        oshape = tuple(oshape[-n:])
        total = [full[i] - oshape[i] for i in range(n)]
        if any(t < 0 for t in total):
            raise a.error("output_shape", list(oshape), f"at most {list(full)}")
        if auto == "SAME_LOWER":
            pads = tuple([t - t // 2 for t in total] + [t // 2 for t in total])
        else:
            pads = tuple([t // 2 for t in total] + [t - t // 2 for t in total])
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [full[i] - x[2 + i] * strides[i] for i in range(n)]
        total = [max(t, 0) for t in total]
        if auto == "SAME_UPPER":
            pads = tuple([t // 2 for t in total] + [t - t // 2 for t in total])
        else:
            pads = tuple([t - t // 2 for t in total] + [t // 2 for t in total])
    else:
        pads = a.get_ints("pads") or (0,) * (2 * n)
        if len(pads) != 2 * n or any(p < 0 for p in pads):
            raise a.error("pads", list(pads), f"{2 * n} ints >= 0")
    out = tuple(full[i] - pads[i] - pads[i + n] for i in range(n))
    if any(o < 1 for o in out):
        raise KernelError(f"kernel '{kernel}': output spatial shape {out} is empty")
    if len(shapes) > 2 and shapes[2] != (w[1] * group,):
        raise KernelError(f"kernel '{kernel}': B must have shape ({w[1] * group},), got {shapes[2]}")
    return tuple(strides), tuple(dil), tuple(pads), tuple(opad), group, out


def _convt_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS)
    *_, group, out = _convt_plan(kernel, shapes, a)
    return (shapes[0][0], shapes[1][1] * group) + out, dt


@_op("ConvTranspose", (2, 3), _CONV_ATTRS + ("output_padding", "output_shape"), FLOATS, _convt_infer,
     lambda s, o, a: 2 * _size(s[0]) * _size(s[1][1:]) if len(s) > 1 else 0,
     "onnx.ConvTranspose(X, W[, B]): N-d transposed convolution. FLOPs: 2*X elements*(M/group)*prod(kernel).")
def _conv_transpose(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x, w = _up(xp, xs[0]), _up(xp, xs[1])
    strides, dil, pads, opad, g, oshape = _convt_plan("onnx.ConvTranspose", [tuple(x.shape), tuple(w.shape)], a)
    n = x.ndim - 2
    nb, c = x.shape[0], x.shape[1]
    mg = w.shape[1]
    ks = w.shape[2:]
    full = tuple((x.shape[2 + i] - 1) * strides[i] + dil[i] * (ks[i] - 1) + 1 + opad[i] for i in range(n))
    y = xp.zeros((nb, g, mg) + full, dtype=x.dtype)
    xg = x.reshape((nb, g, c // g) + x.shape[2:])
    wg = w.reshape((g, c // g, mg) + ks)
    spatial = "".join(string.ascii_uppercase[i] for i in range(n))
    for tap in itertools.product(*(range(k) for k in ks)):
        contrib = xp.einsum(f"ngc{spatial},gcm->ngm{spatial}", xg, wg[(slice(None), slice(None), slice(None)) + tap])
        index = (slice(None),) * 3 + tuple(
            slice(t * d, t * d + s * (x.shape[2 + i] - 1) + 1, s)
            for i, (t, d, s) in enumerate(zip(tap, dil, strides, strict=True)))
        y[index] += contrib
    y = y.reshape((nb, g * mg) + full)
    y = y[(slice(None), slice(None)) + tuple(slice(pads[i], pads[i] + oshape[i]) for i in range(n))]
    if len(xs) > 2:
        y = y + _up(xp, xs[2]).reshape((1, g * mg) + (1,) * n)
    return y


_POOL_ATTRS = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides", "storage_order",
               "count_include_pad")


def _pool_plan(kernel: str, shape: tuple[int, ...], a: Attrs) -> _Win:
    if len(shape) < 3:
        raise KernelError(f"kernel '{kernel}': X must be (N, C, ...) with at least one spatial axis, got {shape}")
    ks = a.get_required_ints("kernel_shape")
    if len(ks) != len(shape) - 2 or any(k < 1 for k in ks):
        raise a.error("kernel_shape", list(ks), f"{len(shape) - 2} ints >= 1")
    if a.get_int("storage_order", 0) != 0:
        raise a.error("storage_order", a.raw("storage_order"), "0 (row major)")
    return _window(kernel, a, shape[2:], tuple(ks), a.get_bool("ceil_mode", False))


def _pool_infer(accepted: tuple[str, ...]) -> InferFn:
    def infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
        dt = _same_dtype(kernel, dtypes, accepted)
        a.get_bool("count_include_pad", False)
        win = _pool_plan(kernel, shapes[0], a)
        return shapes[0][:2] + win.out, dt

    return infer


def _pool_flops(shapes: Shapes, out: tuple[int, ...], a: Attrs) -> int:
    ks = a.get_ints("kernel_shape") or ()
    return _size(out) * _size(ks)


def _ceil_extra(x: Any, win: _Win) -> tuple[int, ...]:
    n = len(win.kernel)
    extra = []
    for i in range(n):
        need = (win.out[i] - 1) * win.strides[i] + win.dilations[i] * (win.kernel[i] - 1) + 1
        have = x.shape[2 + i] + win.pads[i] + win.pads[i + n]
        extra.append(max(0, need - have))
    return tuple(extra)


@_op("MaxPool", (1, 1), _POOL_ATTRS, FLOATS + ("int8", "uint8"), _pool_infer(FLOATS + ("int8", "uint8")),
     _pool_flops, "onnx.MaxPool(X): N-d, pads, strides, dilations, ceil_mode, auto_pad. FLOPs: prod(kernel)/out.")
def _max_pool(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = xs[0]
    win = _pool_plan("onnx.MaxPool", tuple(x.shape), a)
    low = float("-inf") if x.dtype.kind == "f" or dtype_name(x.dtype) == "bfloat16" else int(np.iinfo(x.dtype).min)
    x = _up(xp, x)
    return xp.max(_taps(xp, x, win, low, _ceil_extra(x, win)), axis=2)


@_op("AveragePool", (1, 1), _POOL_ATTRS, FLOATS, _pool_infer(FLOATS), _pool_flops,
     "onnx.AveragePool(X): N-d, pads, strides, ceil_mode, count_include_pad=0, auto_pad. FLOPs: prod(kernel)/out.")
def _avg_pool(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = _up(xp, xs[0])
    win = _pool_plan("onnx.AveragePool", tuple(x.shape), a)
    extra = _ceil_extra(x, win)
    total = xp.sum(_taps(xp, x, win, 0.0, extra), axis=2)
    ones = xp.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
    if a.get_bool("count_include_pad", False):
        n = len(win.kernel)
        ones = xp.pad(ones, ((0, 0), (0, 0)) + tuple((win.pads[i], win.pads[i + n]) for i in range(n)),
                      constant_values=1.0)
        plain = _Win(win.kernel, win.strides, win.dilations, (0,) * (2 * n), win.out)
        count = xp.sum(_taps(xp, ones, plain, 0.0, extra), axis=2)
    else:
        count = xp.sum(_taps(xp, ones, win, 0.0, extra), axis=2)
    return total / count


def _global_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS)
    if len(shapes[0]) < 3:
        raise KernelError(f"kernel '{kernel}': X must be (N, C, ...) with a spatial axis, got {shapes[0]}")
    if kernel == "onnx.GlobalMaxPool" and 0 in shapes[0][2:]:
        raise KernelError(f"kernel '{kernel}': X {shapes[0]} has an empty spatial axis")
    return shapes[0][:2] + (1,) * (len(shapes[0]) - 2), dt


@_op("GlobalAveragePool", (1, 1), (), FLOATS, _global_infer, _per_in(1),
     "onnx.GlobalAveragePool(X): mean over spatial axes, kept as 1. FLOPs: input elements.")
def _gap(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = _up(xp, xs[0])
    return xp.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


@_op("GlobalMaxPool", (1, 1), (), FLOATS, _global_infer, _per_in(1),
     "onnx.GlobalMaxPool(X): max over spatial axes, kept as 1. FLOPs: input elements.")
def _gmp(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = _up(xp, xs[0])
    return xp.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)


# ------------------------------------------------------------------------------------------------ reductions

def _reduce_axes(kernel: str, shape: tuple[int, ...], a: Attrs) -> tuple[int, ...]:
    axes = _axes(a, "axes", max(len(shape), 1), kernel) if shape else (
        () if a.get_ints("axes", allow_scalar=True) in (None, (), (0,), (-1,)) else None)
    if axes is None and shape:
        return () if a.get_bool("noop_with_empty_axes", False) else tuple(range(len(shape)))
    if not axes and shape:
        return () if a.get_bool("noop_with_empty_axes", False) else tuple(range(len(shape)))
    return axes or ()


def _reduce_infer(accepted: tuple[str, ...], result: str | None = None) -> InferFn:
    def infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
        dt = _same_dtype(kernel, dtypes, accepted)
        shape = shapes[0]
        axes = _reduce_axes(kernel, shape, a)
        keep = a.get_bool("keepdims", True)
        if kernel in ("onnx.ReduceMax", "onnx.ReduceMin", "onnx.ReduceLogSumExp") and any(
                shape[i] == 0 for i in axes):
            raise KernelError(f"kernel '{kernel}': cannot reduce an empty axis of {shape}")
        out = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else tuple(
            d for i, d in enumerate(shape) if i not in axes)
        return out, result or dt

    return infer


_REDUCE_ATTRS = ("axes", "keepdims", "noop_with_empty_axes")


def _register_reduce(name: str, f: Callable[[Any, Any, tuple[int, ...], bool], Any], accepted: tuple[str, ...],
                     ops: int) -> None:
    def compute(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
        x = _up(xp, xs[0])
        axes = _reduce_axes(f"onnx.{name}", tuple(x.shape), a)
        if not axes:
            return x.copy()
        return f(xp, x, axes, a.get_bool("keepdims", True))

    _op(name, (1, 1), _REDUCE_ATTRS, accepted, _reduce_infer(accepted), _per_in(ops),
        f"onnx.{name}(x): attrs axes (default all), keepdims=1, noop_with_empty_axes=0. FLOPs: {ops} per input "
        "element.")(compute)


_register_reduce("ReduceSum", lambda xp, x, ax, k: xp.sum(x, axis=ax, keepdims=k), ONNX_DTYPES, 1)
_register_reduce("ReduceMean", lambda xp, x, ax, k: xp.mean(x, axis=ax, keepdims=k), FLOATS + ("int32", "int64"), 1)
_register_reduce("ReduceMax", lambda xp, x, ax, k: xp.max(x, axis=ax, keepdims=k), ONNX_DTYPES, 1)
_register_reduce("ReduceMin", lambda xp, x, ax, k: xp.min(x, axis=ax, keepdims=k), ONNX_DTYPES, 1)
_register_reduce("ReduceProd", lambda xp, x, ax, k: xp.prod(x, axis=ax, keepdims=k), ONNX_DTYPES, 1)
_register_reduce("ReduceL2", lambda xp, x, ax, k: xp.sqrt(xp.sum(x * x, axis=ax, keepdims=k)), FLOATS, 2)
_register_reduce("ReduceL1", lambda xp, x, ax, k: xp.sum(xp.abs(x), axis=ax, keepdims=k),
                 FLOATS + ("int32", "int64"), 2)
_register_reduce("ReduceSumSquare", lambda xp, x, ax, k: xp.sum(x * x, axis=ax, keepdims=k),
                 FLOATS + ("int32", "int64"), 2)
_register_reduce("ReduceLogSumExp", lambda xp, x, ax, k: _logsumexp(xp, x, ax, k), FLOATS, 4)


def _logsumexp(xp: Any, x: Any, axes: tuple[int, ...], keep: bool) -> Any:
    m = xp.max(x, axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    y = xp.log(xp.sum(xp.exp(x - m), axis=axes, keepdims=True)) + m
    return y if keep else xp.squeeze(y, axis=axes)


def _arg_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    _same_dtype(kernel, dtypes, ONNX_DTYPES)
    shape = shapes[0]
    if not shape:
        raise KernelError(f"kernel '{kernel}': input must be at least 1-D")
    axis = normalize_axis(kernel, "axis", a.get_int("axis", 0), len(shape))
    if shape[axis] == 0:
        raise KernelError(f"kernel '{kernel}': axis {axis} of {shape} is empty")
    a.get_bool("select_last_index", False)
    keep = a.get_bool("keepdims", True)
    out = tuple(1 if i == axis else d for i, d in enumerate(shape)) if keep else shape[:axis] + shape[axis + 1:]
    return out, "int64"


def _argext(xp: Any, x: Any, a: Attrs, f: str) -> Any:
    axis = a.get_int("axis", 0) % x.ndim
    x = _up(xp, x)
    if a.get_bool("select_last_index", False):
        flipped = xp.flip(x, axis=axis)
        idx = x.shape[axis] - 1 - getattr(xp, f)(flipped, axis=axis)
    else:
        idx = getattr(xp, f)(x, axis=axis)
    if a.get_bool("keepdims", True):
        idx = xp.expand_dims(idx, axis)
    return idx.astype(xp.int64)


@_op("ArgMax", (1, 1), ("axis", "keepdims", "select_last_index"), ONNX_DTYPES, _arg_infer, _per_in(1),
     "onnx.ArgMax(x) -> int64. attrs axis=0, keepdims=1, select_last_index=0. FLOPs: input elements.")
def _argmax(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return _argext(xp, xs[0], a, "argmax")


@_op("ArgMin", (1, 1), ("axis", "keepdims", "select_last_index"), ONNX_DTYPES, _arg_infer, _per_in(1),
     "onnx.ArgMin(x) -> int64. attrs axis=0, keepdims=1, select_last_index=0. FLOPs: input elements.")
def _argmin(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return _argext(xp, xs[0], a, "argmin")


# ------------------------------------------------------------------------------------------------ shape ops

_MAX_ELEMENTS = 1 << 40


def _check_out(kernel: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if any(d < 0 for d in shape) or _size(shape) > _MAX_ELEMENTS:
        raise KernelError(f"kernel '{kernel}': output shape {shape} is negative or too large "
                          f"(at most {_MAX_ELEMENTS} elements)")
    return shape


def _reshape_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    target = list(a.get_required_ints("shape"))
    allowzero = a.get_bool("allowzero", False)
    x = shapes[0]
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(x):
                raise a.error("shape", target, f"a 0 (copy) only where the input {x} has that axis")
            target[i] = x[i]
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise a.error("shape", target, "dims >= 0 with at most one -1")
    known = _size([d for d in target if d != -1])
    if -1 in target:
        if known == 0 or _size(x) % known:
            raise a.error("shape", target, f"a shape with {_size(x)} elements (input {x})")
        target[target.index(-1)] = _size(x) // known
    if _size(target) != _size(x):
        raise a.error("shape", target, f"a shape with {_size(x)} elements (input {x})")
    return tuple(target), dtypes[0]


@_op("Reshape", (1, 1), ("shape", "allowzero"), ONNX_DTYPES, _reshape_infer, _zero,
     "onnx.Reshape(x): attrs shape (0 copies, one -1 inferred), allowzero=0. FLOPs: 0.")
def _reshape(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
    return xs[0].reshape(out[0])


def _flatten_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    x = shapes[0]
    axis = a.get_int("axis", 1)
    if not -len(x) <= axis <= len(x):
        raise a.error("axis", axis, f"an int in [{-len(x)}, {len(x)}]")
    if axis < 0:
        axis += len(x)
    return (_size(x[:axis]), _size(x[axis:])), dtypes[0]


@_op("Flatten", (1, 1), ("axis",), ONNX_DTYPES, _flatten_infer, _zero,
     "onnx.Flatten(x): to 2-D at axis (default 1). FLOPs: 0.")
def _flatten(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
    return xs[0].reshape(out[0])


def _transpose_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    x = shapes[0]
    perm = a.get_ints("perm")
    perm = tuple(reversed(range(len(x)))) if perm is None else perm
    if sorted(perm) != list(range(len(x))):
        raise a.error("perm", list(perm), f"a permutation of 0..{len(x) - 1}")
    return tuple(x[p] for p in perm), dtypes[0]


@_op("Transpose", (1, 1), ("perm",), ONNX_DTYPES, _transpose_infer, _zero,
     "onnx.Transpose(x): attr perm (default reversed). FLOPs: 0.")
def _transpose(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    perm = a.get_ints("perm")
    return _contig(xp, xp.transpose(xs[0], perm))


def _concat_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, ONNX_DTYPES)
    x = shapes[0]
    if not x:
        raise KernelError(f"kernel '{kernel}': inputs must be at least 1-D")
    axis = normalize_axis(kernel, "axis", a.get_int("axis"), len(x))
    total = 0
    for s in shapes:
        if len(s) != len(x) or s[:axis] + s[axis + 1:] != x[:axis] + x[axis + 1:]:
            raise KernelError(f"kernel '{kernel}': shapes {list(shapes)} differ outside axis {axis}")
        total += s[axis]
    return x[:axis] + (total,) + x[axis + 1:], dt


@_op("Concat", (1, 1024), ("axis",), ONNX_DTYPES, _concat_infer, _zero,
     "onnx.Concat(x0, ...): along attr axis (required). FLOPs: 0.")
def _concat(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return xp.concatenate(list(xs), axis=a.get_int("axis"))


def _slices(kernel: str, x: tuple[int, ...], a: Attrs) -> tuple[slice, ...]:
    starts = a.get_required_ints("starts")
    ends = a.get_required_ints("ends")
    axes = a.get_ints("axes")
    axes = tuple(range(len(starts))) if axes is None else axes
    steps = a.get_ints("steps") or (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise a.error("starts/ends/axes/steps", (starts, ends, axes, steps), "sequences of one length")
    index = [slice(None)] * len(x)
    seen = set()
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        ax = normalize_axis(kernel, "axes", ax, len(x))
        if ax in seen or st == 0:
            raise a.error("axes/steps", (axes, steps), "distinct axes and non-zero steps")
        seen.add(ax)
        d = x[ax]
        s = min(max(s + d if s < 0 else s, 0 if st > 0 else -1), d if st > 0 else d - 1)
        e = min(max(e + d if e < 0 else e, 0 if st > 0 else -1), d if st > 0 else d - 1)
        index[ax] = slice(s, e if e >= 0 else None, st)
    return tuple(index)


def _slice_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    x = shapes[0]
    index = _slices(kernel, x, a)
    return tuple(len(range(*sl.indices(d))) for sl, d in zip(index, x, strict=True)), dtypes[0]


@_op("Slice", (1, 1), ("starts", "ends", "axes", "steps"), ONNX_DTYPES, _slice_infer, _zero,
     "onnx.Slice(x): attrs starts, ends, axes, steps (clamped like ONNX). FLOPs: 0.")
def _slice(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return _contig(xp, xs[0][_slices("onnx.Slice", tuple(xs[0].shape), a)])


def _gather_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    x, idx = shapes[0], shapes[1]
    if dtypes[1] not in ("int32", "int64"):
        raise KernelError(f"kernel '{kernel}': indices must be int32 or int64, got {dtypes[1]}")
    if not x:
        raise KernelError(f"kernel '{kernel}': data must be at least 1-D")
    axis = normalize_axis(kernel, "axis", a.get_int("axis", 0), len(x))
    return x[:axis] + idx + x[axis + 1:], dtypes[0]


@_op("Gather", (2, 2), ("axis",), ONNX_DTYPES, _gather_infer, _zero,
     "onnx.Gather(data, indices int32/int64): along attr axis=0, negative indices from the end. FLOPs: 0.")
def _gather(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x, idx = xs
    axis = a.get_int("axis", 0) % x.ndim
    d = x.shape[axis]
    idx = idx.astype(xp.int64)
    if idx.size and (int(idx.min()) < -d or int(idx.max()) >= d):
        raise KernelError(f"kernel 'onnx.Gather': an index is out of range for axis {axis} of size {d}")
    return xp.take(x, xp.where(idx < 0, idx + d, idx), axis=axis)


def _squeeze_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    x = shapes[0]
    axes = _axes(a, "axes", len(x), kernel) if x else None
    if axes is None:
        return tuple(d for d in x if d != 1), dtypes[0]
    for ax in axes:
        if x[ax] != 1:
            raise a.error("axes", list(axes), f"axes of size 1 in {x}")
    return tuple(d for i, d in enumerate(x) if i not in axes), dtypes[0]


@_op("Squeeze", (1, 1), ("axes",), ONNX_DTYPES, _squeeze_infer, _zero,
     "onnx.Squeeze(x): drop axes of size 1 (attr axes, default all). FLOPs: 0.")
def _squeeze(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
    return xs[0].reshape(out[0])


def _unsqueeze_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    x = shapes[0]
    n = len(x) + len(a.get_required_ints("axes"))
    axes = _axes(a, "axes", n, kernel) or ()
    it = iter(x)
    return tuple(1 if i in axes else next(it) for i in range(n)), dtypes[0]


@_op("Unsqueeze", (1, 1), ("axes",), ONNX_DTYPES, _unsqueeze_infer, _zero,
     "onnx.Unsqueeze(x): insert axes of size 1 (attr axes, required). FLOPs: 0.")
def _unsqueeze(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
    return xs[0].reshape(out[0])


def _expand_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    target = a.get_required_ints("shape")
    if any(d < 0 for d in target):
        raise a.error("shape", list(target), "dims >= 0")
    return _check_out(kernel, _bcast(kernel, [shapes[0], tuple(target)])), dtypes[0]


@_op("Expand", (1, 1), ("shape",), ONNX_DTYPES, _expand_infer, _zero,
     "onnx.Expand(x): broadcast to attr shape (bidirectional). FLOPs: 0.")
def _expand(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
    return _contig(xp, xp.broadcast_to(xs[0], out[0]))


def _tile_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    reps = a.get_required_ints("repeats")
    x = shapes[0]
    if len(reps) != len(x) or any(r < 0 for r in reps):
        raise a.error("repeats", list(reps), f"{len(x)} ints >= 0")
    return _check_out(kernel, tuple(d * r for d, r in zip(x, reps, strict=True))), dtypes[0]


@_op("Tile", (1, 1), ("repeats",), ONNX_DTYPES, _tile_infer, _zero, "onnx.Tile(x): attr repeats. FLOPs: 0.")
def _tile(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return xp.tile(xs[0], a.get_required_ints("repeats"))


def _pad_plan(kernel: str, x: tuple[int, ...], a: Attrs) -> tuple[int, ...]:
    pads = a.get_required_ints("pads")
    axes = a.get_ints("axes")
    axes = tuple(range(len(x))) if axes is None else tuple(normalize_axis(kernel, "axes", ax, len(x)) for ax in axes)
    if len(pads) != 2 * len(axes):
        raise a.error("pads", list(pads), f"{2 * len(axes)} ints (begins then ends)")
    full = [0] * (2 * len(x))
    for i, ax in enumerate(axes):
        full[ax], full[ax + len(x)] = pads[i], pads[i + len(axes)]
    mode = a.raw("mode") or "constant"
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise a.error("mode", mode, "constant, reflect, edge or wrap")
    return tuple(full)


def _pad_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    x = shapes[0]
    pads = _pad_plan(kernel, x, a)
    if a.has("constant_value"):
        a.get_float("constant_value")
    out = tuple(d + pads[i] + pads[i + len(x)] for i, d in enumerate(x))
    mode = a.raw("mode") or "constant"
    if mode != "constant" and any(p > 0 and (d == 0 or (mode == "reflect" and p >= d))
                                  for i, d in enumerate(x) for p in (pads[i], pads[i + len(x)])):
        raise a.error("pads", list(pads), f"pads smaller than the axis for mode {mode}")
    return _check_out(kernel, out), dtypes[0]


@_op("Pad", (1, 1), ("pads", "mode", "constant_value", "axes"), ONNX_DTYPES, _pad_infer, _zero,
     "onnx.Pad(x): attrs pads (negative crops), mode constant|reflect|edge|wrap, constant_value. FLOPs: 0.")
def _pad(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = xs[0]
    n = x.ndim
    pads = _pad_plan("onnx.Pad", tuple(x.shape), a)
    crop = tuple(slice(max(-pads[i], 0), x.shape[i] - max(-pads[i + n], 0)) for i in range(n))
    x = x[crop]
    width = tuple((max(pads[i], 0), max(pads[i + n], 0)) for i in range(n))
    mode = a.raw("mode") or "constant"
    if mode == "constant":
        value = a.get_float("constant_value", 0.0) if a.has("constant_value") else 0
        return xp.pad(x, width, mode="constant", constant_values=value)
    return xp.pad(x, width, mode=mode)


def _shape_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    n = len(shapes[0])
    start, end = a.get_int("start", 0), a.get_int("end", n)
    start, end = (min(max(v + n if v < 0 else v, 0), n) for v in (start, end))
    return (max(end - start, 0),), "int64"


@_op("Shape", (1, 1), ("start", "end"), ONNX_DTYPES, _shape_infer, _zero,
     "onnx.Shape(x) -> int64 dims (attrs start, end). FLOPs: 0.")
def _shape(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    n = xs[0].ndim
    start, end = a.get_int("start", 0), a.get_int("end", n)
    start, end = (min(max(v + n if v < 0 else v, 0), n) for v in (start, end))
    return xp.asarray(tuple(xs[0].shape)[start:end], dtype=xp.int64).reshape(-1)


def _size_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    return (), "int64"


@_op("Size", (1, 1), (), ONNX_DTYPES, _size_infer, _zero, "onnx.Size(x) -> int64 element count. FLOPs: 0.")
def _size_op(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    return xp.asarray(xs[0].size, dtype=xp.int64)


def _cos_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    if dtypes[0] != "int64" or len(shapes[0]) != 1:
        raise KernelError(f"kernel '{kernel}': input must be a 1-D int64 shape")
    target = a.get_required_ints("shape")
    if len(target) != shapes[0][0]:
        raise a.error("shape", list(target), f"{shapes[0][0]} dims (the input's length)")
    dt = a.raw("dtype") or "float32"
    if dt not in _DTYPE_NAMES:
        raise a.error("dtype", dt, ", ".join(_DTYPE_NAMES))
    a.get_float("value", 0.0)
    return _check_out(kernel, tuple(target)), "uint8" if dt == "bool" else str(dt)


@_op("ConstantOfShape", (1, 1), ("shape", "value", "dtype"), ("int64",), _cos_infer, _zero,
     "onnx.ConstantOfShape(shape int64): attrs shape (the folded input), value=0.0, dtype. FLOPs: 0.")
def _constant_of_shape(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
    dt = _np_dtype(out[1]) if xp is np else (xp.float32 if out[1] == "bfloat16" else out[1])
    return xp.full(out[0], a.get_float("value", 0.0), dtype=dt)


def _range_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS + ("int32", "int64"))
    if any(s != () for s in shapes):
        raise KernelError(f"kernel '{kernel}': start, limit and delta must be scalars, got {list(shapes)}")
    n = a.get_int("count", min_value=0)
    return _check_out(kernel, (n,)), dt


@_op("Range", (3, 3), ("count",), FLOATS + ("int32", "int64"), _range_infer, _per_out(1),
     "onnx.Range(start, limit, delta): attr count (elements, folded by the compiler). FLOPs: 1/el.")
def _range(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
    start, delta = _up(xp, xs[0]), _up(xp, xs[2])
    return start + xp.arange(out[0][0]).astype(start.dtype) * delta


# ------------------------------------------------------------------------------------------------ resize

_COORD = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn",
          "half_pixel_symmetric")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize_plan(kernel: str, x: tuple[int, ...], a: Attrs) -> tuple[tuple[int, ...], tuple[float, ...]]:
    mode = a.raw("mode") or "nearest"
    if mode not in ("nearest", "linear"):
        raise a.error("mode", mode, "nearest or linear (cubic is not supported)")
    coord = a.raw("coordinate_transformation_mode") or "half_pixel"
    if coord not in _COORD:
        raise a.error("coordinate_transformation_mode", coord, ", ".join(_COORD))
    if (a.raw("nearest_mode") or "round_prefer_floor") not in _NEAREST:
        raise a.error("nearest_mode", a.raw("nearest_mode"), ", ".join(_NEAREST))
    if a.raw("keep_aspect_ratio_policy") not in (None, "stretch"):
        raise a.error("keep_aspect_ratio_policy", a.raw("keep_aspect_ratio_policy"), "stretch")
    axes = a.get_ints("axes")
    axes = tuple(range(len(x))) if axes is None else tuple(normalize_axis(kernel, "axes", v, len(x)) for v in axes)
    sizes = a.get_ints("sizes")
    scales_raw = a.raw("scales")
    if sizes is not None:
        if len(sizes) != len(axes) or any(s < 1 for s in sizes):
            raise a.error("sizes", list(sizes), f"{len(axes)} ints >= 1")
        out = list(x)
        scales = [1.0] * len(x)
        for ax, s in zip(axes, sizes, strict=True):
            out[ax] = s
            scales[ax] = s / x[ax] if x[ax] else 1.0
        return tuple(out), tuple(scales)
    if not isinstance(scales_raw, (list, tuple)) or len(scales_raw) != len(axes) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < s < 1e6 for s in scales_raw):
        raise a.error("scales", scales_raw, f"{len(axes)} positive numbers (or sizes)")
    out = list(x)
    full = [1.0] * len(x)
    for ax, s in zip(axes, scales_raw, strict=True):
        out[ax] = int(math.floor(x[ax] * float(s)))
        full[ax] = float(s)
    return _check_out(kernel, tuple(out)), tuple(full)


def _resize_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    if a.has("cubic_coeff_a"):
        a.get_float("cubic_coeff_a")
    if a.has("extrapolation_value"):
        a.get_float("extrapolation_value")
    a.get_bool("exclude_outside", False)
    if a.get_int("antialias", 0):
        raise a.error("antialias", a.raw("antialias"), "0 (antialiasing is not supported)")
    return _resize_plan(kernel, shapes[0], a)[0], dtypes[0]


def _source_coords(xp: Any, coord: str, n_out: int, n_in: int, scale: float) -> Any:
    o = xp.arange(n_out, dtype=xp.float64)
    if coord == "asymmetric":
        return o / scale
    if coord == "align_corners":
        return o * (n_in - 1) / (n_out - 1) if n_out > 1 else o * 0
    if coord == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if n_out > 1 else o * 0
    if coord == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    if coord == "half_pixel_symmetric":
        adj = n_out / (scale * n_in)
        center = n_in / 2
        offset = center * (1 - adj)
        return offset + (o + 0.5) / scale - 0.5
    return (o + 0.5) / scale - 0.5


@_op("Resize", (1, 1), ("mode", "coordinate_transformation_mode", "nearest_mode", "scales", "sizes", "axes",
                        "cubic_coeff_a", "exclude_outside", "extrapolation_value", "keep_aspect_ratio_policy",
                        "antialias"),
     FLOATS + ("int8", "uint8"), _resize_infer, _per_out(4),
     "onnx.Resize(x): mode nearest|linear, coordinate_transformation_mode, nearest_mode; attrs scales or sizes "
     "(folded inputs). FLOPs: 4/el.")
def _resize(xp: Any, xs: Sequence[Any], a: Attrs, out: tuple[tuple[int, ...], str]) -> Any:
    x = xs[0]
    orig = x.dtype
    y = _up(xp, x).astype(xp.float32) if x.dtype.kind in "iu" else _up(xp, x)
    shape, scales = _resize_plan("onnx.Resize", tuple(x.shape), a)
    mode = a.raw("mode") or "nearest"
    coord = a.raw("coordinate_transformation_mode") or "half_pixel"
    nmode = a.raw("nearest_mode") or "round_prefer_floor"
    for ax in range(x.ndim):
        n_in, n_out = x.shape[ax], shape[ax]
        if n_in == n_out and scales[ax] == 1.0:
            continue
        src = _source_coords(xp, coord, n_out, n_in, scales[ax])
        if mode == "nearest":
            if nmode == "round_prefer_floor":
                idx = xp.ceil(src - 0.5)
            elif nmode == "round_prefer_ceil":
                idx = xp.floor(src + 0.5)
            elif nmode == "floor":
                idx = xp.floor(src)
            else:
                idx = xp.ceil(src)
            idx = xp.clip(idx, 0, n_in - 1).astype(xp.int64)
            y = xp.take(y, idx, axis=ax)
        else:
            src = xp.clip(src, 0, n_in - 1)
            lo = xp.floor(src).astype(xp.int64)
            hi = xp.minimum(lo + 1, n_in - 1)
            w = (src - lo).astype(y.dtype)
            bshape = [1] * x.ndim
            bshape[ax] = n_out
            w = w.reshape(bshape)
            y = xp.take(y, lo, axis=ax) * (1 - w) + xp.take(y, hi, axis=ax) * w
    if orig.kind in "iu":
        y = xp.clip(xp.round(y), np.iinfo(orig).min, np.iinfo(orig).max).astype(orig)
    return y


def op_names() -> list[str]:
    """The ONNX op types with a kernel here."""
    return sorted(ONNX_OPS)


def _lrn_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    dt = _same_dtype(kernel, dtypes, FLOATS)
    if len(shapes[0]) < 3:
        raise KernelError(f"kernel '{kernel}': X must be (N, C, ...) with a spatial axis, got {shapes[0]}")
    a.get_int("size", min_value=1)
    a.get_float("alpha", 1e-4), a.get_float("beta", 0.75), a.get_float("bias", 1.0)
    return shapes[0], dt


@_op("LRN", (1, 1), ("size", "alpha", "beta", "bias"), FLOATS, _lrn_infer,
     lambda s, o, a: (a.get_int("size", 1) + 4) * _size(o),
     "onnx.LRN(X): local response normalization across channels; attrs size (required), alpha=1e-4, "
     "beta=0.75, bias=1. FLOPs: size+4 per element.")
def _lrn(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = _up(xp, xs[0])
    size = a.get_int("size", min_value=1)
    c = x.shape[1]
    sq = x * x
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = xp.pad(sq, ((0, 0), (lo, hi)) + ((0, 0),) * (x.ndim - 2))
    csum = xp.cumsum(padded, axis=1)
    csum = xp.concatenate([xp.zeros_like(csum[:, :1]), csum], axis=1)
    window = csum[:, size:size + c] - csum[:, :c]
    base = a.get_float("bias", 1.0) + a.get_float("alpha", 1e-4) / size * window
    return x / base ** a.get_float("beta", 0.75)


def _trilu_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    if len(shapes[0]) < 2:
        raise KernelError(f"kernel '{kernel}': input must be at least 2-D, got {shapes[0]}")
    a.get_bool("upper", True)
    a.get_int("k", 0)
    return shapes[0], dtypes[0]


@_op("Trilu", (1, 1), ("upper", "k"), ONNX_DTYPES, _trilu_infer, _zero,
     "onnx.Trilu(x): upper (default) or lower triangle of the last two axes; attr k (the folded input). FLOPs: 0.")
def _trilu(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    k = a.get_int("k", 0)
    return xp.triu(xs[0], k) if a.get_bool("upper", True) else xp.tril(xs[0], k)


def _cumsum_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    if not shapes[0]:
        raise KernelError(f"kernel '{kernel}': input must be at least 1-D")
    normalize_axis(kernel, "axis", a.get_int("axis"), len(shapes[0]))
    a.get_bool("exclusive", False), a.get_bool("reverse", False)
    return shapes[0], _same_dtype(kernel, dtypes, FLOATS + ("int32", "int64"))


@_op("CumSum", (1, 1), ("axis", "exclusive", "reverse"), FLOATS + ("int32", "int64"), _cumsum_infer, _per_out(1),
     "onnx.CumSum(x): running sum along attr axis (the folded input); exclusive=0, reverse=0. FLOPs: 1/el.")
def _cumsum(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x = _up(xp, xs[0])
    axis = a.get_int("axis") % x.ndim
    if a.get_bool("reverse", False):
        x = xp.flip(x, axis=axis)
    y = xp.cumsum(x, axis=axis, dtype=x.dtype)
    if a.get_bool("exclusive", False):
        y = y - x
    return xp.flip(y, axis=axis) if a.get_bool("reverse", False) else y


def _gather_elements_infer(kernel: str, shapes: Shapes, dtypes: Sequence[str], a: Attrs) -> tuple[tuple[int, ...], str]:
    x, idx = shapes[0], shapes[1]
    if dtypes[1] not in ("int32", "int64"):
        raise KernelError(f"kernel '{kernel}': indices must be int32 or int64, got {dtypes[1]}")
    if not x or len(idx) != len(x):
        raise KernelError(f"kernel '{kernel}': data {x} and indices {idx} must have the same rank >= 1")
    axis = normalize_axis(kernel, "axis", a.get_int("axis", 0), len(x))
    if any(i > d for n, (i, d) in enumerate(zip(idx, x, strict=True)) if n != axis):
        raise KernelError(f"kernel '{kernel}': indices {idx} are larger than data {x} outside axis {axis}")
    return idx, dtypes[0]


@_op("GatherElements", (2, 2), ("axis",), ONNX_DTYPES, _gather_elements_infer, _zero,
     "onnx.GatherElements(data, indices): take_along_axis on attr axis=0, negative indices from the end. FLOPs: 0.")
def _gather_elements(xp: Any, xs: Sequence[Any], a: Attrs, out: Any) -> Any:
    x, idx = xs
    axis = a.get_int("axis", 0) % x.ndim
    d = x.shape[axis]
    idx = idx.astype(xp.int64)
    if idx.size and (d == 0 or int(idx.min()) < -d or int(idx.max()) >= d):
        raise KernelError(f"kernel 'onnx.GatherElements': an index is out of range for axis {axis} of size {d}")
    idx = xp.where(idx < 0, idx + d, idx)
    if idx.shape != x.shape:
        x = x[tuple(slice(0, n) if i != axis else slice(None) for i, n in enumerate(idx.shape))]
    return xp.take_along_axis(x, idx, axis=axis)
