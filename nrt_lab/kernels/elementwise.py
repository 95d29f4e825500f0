"""Elementwise kernels: add, sub, mul, div (NumPy broadcasting) and relu, gelu, tanh, sigmoid, exp.

Floats (float32/float16/bfloat16) compute in float32 and are cast back to the input dtype. Integers
(int8/int32) are accepted by add, sub, mul and relu only and stay in their dtype: add/sub/mul wrap around
on overflow (two's complement), as integer hardware does. gelu is the tanh approximation
``0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x**3)))`` (GPT-2/BERT style; erf is not available on every
backend without SciPy). sigmoid is computed as ``0.5*(1 + tanh(x/2))``, which never overflows.

FLOPs: output elements times a fixed cost per element (a transcendental counts as one): add/sub/mul/div/
relu/tanh/exp 1, sigmoid 4, gelu 9.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nrt_lab.kernels._common import (
    ALL_DTYPES,
    FLOAT_DTYPES,
    Attrs,
    TensorSpec,
    broadcast,
    check_dtype_names,
    check_dtypes,
    check_inputs,
    check_shapes,
    check_specs,
    finish,
    is_int,
    num_elements,
    shape_of,
    upcast,
)

__all__ = [
    "add",
    "sub",
    "mul",
    "div",
    "relu",
    "gelu",
    "tanh",
    "sigmoid",
    "exp",
    "BINARY_DTYPES",
    "UNARY_DTYPES",
    "OPS_PER_ELEMENT",
    "binary_flops",
    "unary_flops",
    "binary_infer",
    "unary_infer",
]

BINARY_DTYPES: dict[str, tuple[str, ...]] = {
    "add": ALL_DTYPES,
    "sub": ALL_DTYPES,
    "mul": ALL_DTYPES,
    "div": FLOAT_DTYPES,
}
UNARY_DTYPES: dict[str, tuple[str, ...]] = {
    "relu": ALL_DTYPES,
    "gelu": FLOAT_DTYPES,
    "tanh": FLOAT_DTYPES,
    "sigmoid": FLOAT_DTYPES,
    "exp": FLOAT_DTYPES,
}
OPS_PER_ELEMENT: dict[str, int] = {
    "add": 1,
    "sub": 1,
    "mul": 1,
    "div": 1,
    "relu": 1,
    "tanh": 1,
    "exp": 1,
    "sigmoid": 4,
    "gelu": 9,
}

_GELU_C = math.sqrt(2.0 / math.pi)


def _binary(kernel: str, xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any] | None,
            op: Callable[[Any, Any], Any]) -> Any:
    Attrs(kernel, attrs, ())
    a, b = check_inputs(kernel, inputs, 2, 2, ("a", "b"))
    dt = check_dtypes(kernel, [a, b], BINARY_DTYPES[kernel], ("a", "b"))
    broadcast(kernel, shape_of(a), shape_of(b))
    if is_int(dt):
        return finish(xp, op(a, b), a.dtype)
    return finish(xp, op(upcast(xp, a), upcast(xp, b)), a.dtype)


def _unary(kernel: str, xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any] | None,
           op: Callable[[Any, Any], Any]) -> Any:
    Attrs(kernel, attrs, ())
    (x,) = check_inputs(kernel, inputs, 1, 1, ("x",))
    check_dtypes(kernel, [x], UNARY_DTYPES[kernel], ("x",))
    return finish(xp, op(xp, upcast(xp, x)), x.dtype)


def add(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """a + b with broadcasting; ints wrap around on overflow."""
    return _binary("add", xp, inputs, attrs, lambda a, b: a + b)


def sub(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """a - b with broadcasting; ints wrap around on overflow."""
    return _binary("sub", xp, inputs, attrs, lambda a, b: a - b)


def mul(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """a * b with broadcasting; ints wrap around on overflow."""
    return _binary("mul", xp, inputs, attrs, lambda a, b: a * b)


def div(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """a / b with broadcasting (floats only: integer division has no single right rounding)."""
    return _binary("div", xp, inputs, attrs, lambda a, b: a / b)


def relu(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """max(x, 0), for floats and ints."""
    return _unary("relu", xp, inputs, attrs, lambda m, x: m.maximum(x, m.zeros((), dtype=x.dtype)))


def gelu(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """GELU, tanh approximation: 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))."""
    return _unary("gelu", xp, inputs, attrs,
                  lambda m, x: 0.5 * x * (1.0 + m.tanh(_GELU_C * (x + 0.044715 * (x * x * x)))))


def tanh(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Hyperbolic tangent."""
    return _unary("tanh", xp, inputs, attrs, lambda m, x: m.tanh(x))


def sigmoid(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Logistic sigmoid 1/(1+exp(-x)), computed as 0.5*(1+tanh(x/2)) so it never overflows."""
    return _unary("sigmoid", xp, inputs, attrs, lambda m, x: 0.5 * (1.0 + m.tanh(0.5 * x)))


def exp(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """e**x (overflows to inf like the hardware; the runtime's NaN/inf check reports it)."""
    return _unary("exp", xp, inputs, attrs, lambda m, x: m.exp(x))


def binary_flops(kernel: str) -> Callable[[Sequence[tuple[int, ...]], Mapping[str, Any]], int]:
    """FLOP counter for a binary elementwise kernel: broadcast output elements x ops per element."""

    def flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
        """Broadcast output elements x ops per element."""
        Attrs(kernel, attrs, ())
        a, b = check_shapes(kernel, input_shapes, 2, 2, ("a", "b"))
        return num_elements(broadcast(kernel, a, b)) * OPS_PER_ELEMENT[kernel]

    return flops


def unary_flops(kernel: str) -> Callable[[Sequence[tuple[int, ...]], Mapping[str, Any]], int]:
    """FLOP counter for a unary elementwise kernel: elements x ops per element."""

    def flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
        """Elements x ops per element."""
        Attrs(kernel, attrs, ())
        (x,) = check_shapes(kernel, input_shapes, 1, 1, ("x",))
        return num_elements(x) * OPS_PER_ELEMENT[kernel]

    return flops


def binary_infer(kernel: str) -> Callable[[Sequence[TensorSpec], Mapping[str, Any]], TensorSpec]:
    """Shape inference of a binary elementwise kernel: the broadcast shape, in the inputs' (common) dtype."""

    def infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
        """Broadcast shape, input dtype."""
        Attrs(kernel, attrs, ())
        (a, b), dtypes = check_specs(kernel, specs, 2, 2, ("a", "b"))
        dt = check_dtype_names(kernel, dtypes, BINARY_DTYPES[kernel], ("a", "b"))
        return TensorSpec(broadcast(kernel, a, b), dt)

    return infer


def unary_infer(kernel: str) -> Callable[[Sequence[TensorSpec], Mapping[str, Any]], TensorSpec]:
    """Shape inference of a unary elementwise kernel: the input's shape and dtype."""

    def infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
        """Input shape and dtype."""
        Attrs(kernel, attrs, ())
        (x,), dtypes = check_specs(kernel, specs, 1, 1, ("x",))
        return TensorSpec(x, check_dtype_names(kernel, dtypes, UNARY_DTYPES[kernel], ("x",)))

    return infer
